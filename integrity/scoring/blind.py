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

from integrity.scoring.pairs import contains_word


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
