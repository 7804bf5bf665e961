"""Contradictions: the same image and context labelled with different plain answers.

Measures, per pair:
- ``contra_answers``: how many distinct claims the plain labels of its context group make (a
  context: same images, same system turn and turns up to the question; a claim:
  ``pairs.claim_key``, so "Two.", "two" and "There are two shapes." are one claim).
- ``contra_conflict``: the group's plain labels (unhedged, a few content words) make more than
  one claim: annotators (or a caption-fed generator) disagree on a fact about the pixels.
Needs no model. Cost: one group-by, O(pairs).
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from integrity.detect.pairs import (
    CLAIM_KEY_READS,
    CONTEXT_KEY_READS,
    PLAIN_LABEL_READS,
    claim_keys,
    context_key,
    plain_label,
)
from integrity.detect.registry import Detector, Flaw, register


def score_contradiction(pairs: pl.DataFrame, *, claims=None,
                        claim: pl.Series | None = None) -> pl.DataFrame:
    """Columns contra_answers, contra_conflict (one row per pair); ``claim``: the pairs'
    ``claim_keys`` when the caller has them."""
    group = context_key()
    if claim is None:
        claim = claim_keys(pairs, claims and claims.paradigm)
    keyed = pairs.with_columns(claim=claim, plain=plain_label())
    claims_in_group = pl.col("claim").filter(pl.col("plain")).n_unique().over(group)
    return keyed.select(
        contra_answers=pl.col("claim").n_unique().over(group).cast(pl.Int64),
        contra_conflict=pl.col("plain").all().over(group) & (claims_in_group > 1),
    )


class Contradiction(BaseModel):
    """``signals.contradiction``: conflicting plain labels for the same image and question."""

    model_config = ConfigDict(extra="forbid")
    min_distinct_answers: int = Field(2, ge=2)


register(Detector(
    name="contradiction",
    reads=(*CONTEXT_KEY_READS, *CLAIM_KEY_READS, *PLAIN_LABEL_READS),
    description="the same image and question labelled with different plain answers",
    columns={"contra_answers": "higher", "contra_conflict": "any"},
    score=lambda context: score_contradiction(context.pairs, claim=context.claim_keys()),
    flaws=(Flaw(
        "contradiction", Contradiction, action="review", blocking_none_kept=True,
        description="conflicting labels for the same image and question",
        flag=lambda s, col: col("contra_conflict")
        & (col("contra_answers") >= s.min_distinct_answers),
    ),),
))
