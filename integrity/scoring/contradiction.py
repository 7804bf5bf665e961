"""Contradictions: the same image + question labelled with different short answers.

Measures, per pair:
- ``contra_answers``: how many distinct short answers the (image, question) group has.
- ``contra_conflict``: the group holds more than one distinct plain short label (no prose, no
  hedging), i.e. annotators (or a caption-fed generator) disagree on a fact about the pixels.
Needs no model. Cost: one group-by, O(pairs).
"""

from __future__ import annotations

import polars as pl

from integrity.scoring.preference import divergent_group


def score_contradiction(pairs: pl.DataFrame) -> pl.DataFrame:
    """Columns contra_answers, contra_conflict (one row per pair)."""
    answers, plain_labels = divergent_group()
    return pairs.select(
        contra_answers=answers.cast(pl.Int64),
        contra_conflict=(answers > 1) & plain_labels,
    )
