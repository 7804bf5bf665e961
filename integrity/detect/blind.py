"""Blind answerability: is the answer predictable from the question alone?

Measures, per image-text pair (null for text-only rows, which have no image to be blind to):
- ``blind_answer_in_question``: the short answer (or its plural) is a word of the question.
- ``blind_prior``: P(answer | normalised question) over the whole frame, the MMMU-Pro/MMStar
  idea made cheap: a question whose answer is (nearly) constant needs no pixels.
- ``blind_prior_support``: how many pairs ask that normalised question (a prior over 3 pairs
  means little; the policy sets the minimum).
Needs no model; dataset-wide statistics via window expressions. Cost: O(pairs), seconds per
million pairs.
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from integrity.detect.pairs import contains_word
from integrity.detect.registry import Detector, Flaw, Threshold, register


def score_blind(pairs: pl.DataFrame) -> pl.DataFrame:
    """Columns blind_answer_in_question, blind_prior, blind_prior_support (one row per pair)."""
    image = pl.col("modality") == "image-text"
    in_question = pl.col("short_answer") & pl.lit(
        contains_word(pairs["question_norm"], pairs["answer_norm"]))
    support = pl.len().over("question_norm", "modality")
    prior = pl.len().over("question_norm", "modality", "answer_norm") / support
    return pairs.select(
        blind_answer_in_question=pl.when(image).then(in_question),
        blind_prior=pl.when(image).then(prior),
        blind_prior_support=pl.when(image).then(support.cast(pl.Int64)),
    )


class BlindAnswerable(BaseModel):
    """``signals.blind_answerable``: when a pair is answerable without its image."""

    model_config = ConfigDict(extra="forbid")
    answer_in_question: bool = True
    prior_min: float = Field(0.9, ge=0.0, le=1.0)
    prior_support_min: int = Field(5, ge=1)


register(Detector(
    name="blind",
    description="the answer is predictable from the question alone",
    columns={"blind_answer_in_question": "any", "blind_prior": "higher",
             "blind_prior_support": "higher"},
    score=lambda context: score_blind(context.pairs),
    flaws=(Flaw(
        "blind_answerable", BlindAnswerable,
        description="answerable without the image",
        flag=lambda s, col: (col("blind_answer_in_question") & s.answer_in_question)
        | ((col("blind_prior") >= s.prior_min) & (col("blind_prior_support") >= s.prior_support_min)),
    ),),
    thresholds=(Threshold("blind_prior", "signals.blind_answerable.prior_min", ">=",
                          "blind_answerable"),),
))
