"""Blind answerability: is the answer predictable without the image?

Measures, per image-text pair (null for text-only rows, which have no image to be blind to):
- ``blind_question_states``: how strongly the text the model is given (system turn and the
  turns up to the question) states the answer's claim: 1.0 when a claim word is there
  ("There are two shapes. How many shapes are there?"), else the probability the source
  gives the claim word beside the question's words (``claims.stated``: "These crimson shapes,
  what color are they?" states "red" once the source's captions show crimson means red). A
  question that also names an alternative ("Is it red or blue?") offers a choice and states
  nothing. An answer without claim words states itself when all its words are in the question.
- ``blind_prior``: the probability a text-only model gives the answer's claim from the
  question alone, trained out-of-fold on the source itself: character 3-5-grams of the
  question, multinomial naive Bayes over the most frequent claims, five folds split by image so
  no image's own rows teach it. A question whose answer barely depends on the image ("What
  color is the background?" -> white, in any wording the source repeats) scores near 1; a
  question the pixels decide scores about one over the number of its answers. N-grams seen
  with fewer than two images are ignored, so a copy of a row cannot teach its own answer.
Needs no model. Cost: one sparse hashing pass over the questions and five naive Bayes fits,
O(pairs); the claim words and translation shared with the leakage detector.
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from integrity.detect.claims import CLAIMS_READS, stated, wilson_lower
from integrity.detect.pairs import CLAIM_KEY_READS, PLAIN_LABEL_READS, claim_keys, plain_label
from integrity.detect.registry import Detector, Flaw, Threshold, register
from integrity.detect.text import normalise, tokens

def question_states(pairs: pl.DataFrame, claims) -> pl.Series:
    """blind_question_states for every pair (null for text-only pairs)."""
    said = stated(claims.translation, claims.words, claims.context)
    # A question naming another answer to the same question offers a choice.
    offered = claims.words.join(claims.paradigm, on="word").explode("alternatives").join(
        claims.context.ids, on="pair_row").join(
        claims.context.tokens.rename({"token": "alternatives"}), on=["text_id", "alternatives"],
        how="semi").select("pair_row", "word").unique().with_columns(choice=pl.lit(True))
    best = said.join(offered, on=["pair_row", "word"], how="left").with_columns(
        stated=pl.when(pl.col("choice")).then(0.0).otherwise("stated")).group_by("pair_row").agg(
        pl.col("stated").max())
    literal = (pl.col("answer_tokens").list.set_difference(pl.col("prompt_tokens"))
               .list.len() == 0) & (pl.col("answer_tokens").list.len() > 0)
    frame = pairs.select("image_sha256", literal=literal).with_row_index("pair_row").with_columns(
        pl.col("pair_row").cast(pl.Int64))
    return frame.join(best, on="pair_row", how="left", maintain_order="left").select(
        pl.when(pl.col("image_sha256").is_not_null())
        .then(pl.coalesce("stated", pl.col("literal").cast(pl.Float64)))
        .cast(pl.Float32).alias("blind_question_states"))["blind_question_states"]


def text_only_prior(frame: pl.DataFrame) -> pl.Series:
    """Leave-one-image-out P(label | question) for each row of ``frame`` (image_sha256,
    question, label): for every clue of its question (``question_features``), the share of
    the other images asked with that clue whose label is this row's, taken at the lower end of
    its Wilson interval (PRIOR_Z); the row's prior is its most telling clue. Null for unlabelled
    rows."""
    # The sets counted depend only on each row's (image, question, label), and a row's prior
    # only on its (question, label): both are computed once per distinct value (datasets
    # repeat their questions, and the rows of an image repeat them), then joined back.
    labelled = frame.filter(pl.col("label").is_not_null()).select(
        "image_sha256", "question", "label").unique()
    distinct = labelled.select(pl.col("question").unique()).with_columns(
        clue=question_clues(pl.col("question")))
    clues = labelled.join(distinct, on="question", nulls_equal=True).explode("clue").drop_nulls(
        "clue")
    per_clue = clues.select("image_sha256", "clue").unique().group_by("clue").len("n_clue")
    per_label = clues.select("image_sha256", "clue", "label").unique().group_by(
        "clue", "label").len("n_hit")
    # The row's own image counts once in both: leave it out.
    prior = (clues.select("question", "label", "clue").unique()
             .join(per_clue, on="clue").join(per_label, on=["clue", "label"])
             .with_columns(p=wilson_lower(pl.col("n_hit") - 1, pl.col("n_clue") - 1, PRIOR_Z))
             .group_by("question", "label").agg(pl.col("p").max()))
    return frame.join(prior, on=["question", "label"], how="left", maintain_order="left",
                      nulls_equal=True)["p"]


# The prior is a lower bound at about 84% (one-sided): two other images asked a wording and
# both got this answer reads 0.67, one reads 0.5, a hundred spread over six answers ~0.13.
PRIOR_Z = 1.0


def question_clues(question: pl.Expr) -> pl.Expr:
    """What a text-only model may read off a question: its content words, adjacent pairs of
    them, and the whole normalised question (a wording repeated verbatim is its own clue)."""
    words = tokens(question)
    pairs_of_words = words.list.eval(
        pl.concat_str(pl.element(), pl.element().shift(-1), separator=" ")).list.drop_nulls()
    return pl.concat_list(words, pairs_of_words, pl.lit("= ") + normalise(question))


def score_blind(pairs: pl.DataFrame, *, claims, claim: pl.Series | None = None) -> pl.DataFrame:
    """Columns blind_question_states, blind_prior (one row per pair); ``claim``: the pairs'
    ``claim_keys`` when the caller has them."""
    claim = claim_keys(pairs, claims and claims.paradigm) if claim is None else claim
    frame = pairs.select("image_sha256", "question", label=pl.when(
        plain_label() & pl.col("image_sha256").is_not_null()).then(claim))
    return pl.DataFrame({
        "blind_question_states": question_states(pairs, claims),
        "blind_prior": text_only_prior(frame).cast(pl.Float32),
    })


class BlindAnswerable(BaseModel):
    """``signals.blind_answerable``: when a pair is answerable without its image."""

    model_config = ConfigDict(extra="forbid")
    question_states_min: float = Field(0.5, ge=0.0, le=1.0)
    prior_min: float = Field(0.6, ge=0.0, le=1.0)


register(Detector(
    name="blind",
    reads=("image_sha256", "question", "prompt_tokens", *CLAIMS_READS, *CLAIM_KEY_READS,
           *PLAIN_LABEL_READS),
    description="the answer is predictable from the question alone",
    columns={"blind_question_states": "higher", "blind_prior": "higher"},
    score=lambda context: score_blind(context.pairs, claims=context.claims(),
                                      claim=context.claim_keys()),
    flaws=(Flaw(
        "blind_answerable", BlindAnswerable,
        description="answerable without the image",
        flag=lambda s, col: (col("blind_question_states") >= s.question_states_min)
        | (col("blind_prior") >= s.prior_min),
    ),),
    thresholds=(Threshold("blind_question_states",
                          "signals.blind_answerable.question_states_min", ">=",
                          "blind_answerable"),
                Threshold("blind_prior", "signals.blind_answerable.prior_min", ">=",
                          "blind_answerable")),
))
