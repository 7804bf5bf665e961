"""Contradictions: the same image + question labelled with different short answers.

Measures, per pair:
- ``contra_answers``: how many distinct short answers the (image, question) group has.
- ``contra_conflict``: the group holds more than one distinct plain short label (no prose, no
  hedging), i.e. annotators (or a caption-fed generator) disagree on a fact about the pixels.
Needs no model. Cost: one group-by, O(pairs).
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from integrity.detect.pairs import divergent_group
from integrity.detect.registry import Detector, Flaw, register


def score_contradiction(pairs: pl.DataFrame) -> pl.DataFrame:
    """Columns contra_answers, contra_conflict (one row per pair)."""
    answers, plain_labels = divergent_group()
    return pairs.select(
        contra_answers=answers.cast(pl.Int64),
        contra_conflict=(answers > 1) & plain_labels,
    )


class Contradiction(BaseModel):
    """``signals.contradiction``: conflicting plain labels for the same image and question."""

    model_config = ConfigDict(extra="forbid")
    min_distinct_answers: int = Field(2, ge=2)


register(Detector(
    name="contradiction",
    description="the same image and question labelled with different plain answers",
    columns={"contra_answers": "higher", "contra_conflict": "any"},
    score=lambda context: score_contradiction(context.pairs),
    flaws=(Flaw(
        "contradiction", Contradiction, action="review", blocking_none_kept=True,
        description="conflicting labels for the same image and question",
        flag=lambda s, col: col("contra_conflict")
        & (col("contra_answers") >= s.min_distinct_answers),
    ),),
))
