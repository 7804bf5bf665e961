"""Caption and metadata leakage: the answer says what the row's text says, not what its pixels show.

The row's text is everything it carries besides the pixels: every string of its metadata at any
depth and under any key, the words of its image file names, its system turn and the turns up to
the question (a caption pasted into the prompt). For each claim of the answer
(``answer_support``), ``claims.stated`` measures how strongly that text states the claim word:
1.0 when the word is there (after normalisation: plurals, number words), else the probability
the source itself gives the word beside the text's words (a caption saying "crimson" states
"red" when the source's answers beside "crimson" captions say red).

- ``leak_text_support``: how strongly the row's text states the leaking claim.
- ``leak_score``: the largest, over the answer's claims, of stated x (1 - the pixels' support
  for the claim): high only when the text says it and the image does not.
- ``leak_claim``: the claim word behind ``leak_score``.
An answer without claim words is compared word by word: the share of its content words
(beyond the question's) found in the metadata and file names, times (1 - its grounding-based
support). Needs answer_support's claim-level supports. Cost: polars joins, O(pairs x claims x
text words).
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from integrity.detect.claims import CLAIMS_READS, stated
from integrity.detect.registry import Detector, Flaw, Threshold, register


def score_caption_leakage(pairs: pl.DataFrame, claims, per_claim: pl.DataFrame,
                          support: pl.DataFrame) -> pl.DataFrame:
    """Columns leak_text_support, leak_score, leak_claim (one row per pair)."""
    said = stated(claims.translation, per_claim.select("pair_row", "word"), claims.context,
                  claims.outside)
    worst = (per_claim.join(said, on=["pair_row", "word"], how="left")
             .with_columns(leak=pl.col("stated") * (1 - pl.col("support")))
             .sort("pair_row", "leak", descending=[False, True])
             .group_by("pair_row", maintain_order=True).first())
    beyond = pl.col("answer_tokens").list.set_difference(pl.col("question_tokens"))
    outside = pl.col("outside_tokens")
    word_share = (beyond.list.set_intersection(outside).list.len()
                  / beyond.list.len()).fill_nan(None)
    frame = pairs.select("image_sha256", "answer_tokens", "question_tokens", "outside_tokens") \
        .with_row_index("pair_row").with_columns(
            pl.col("pair_row").cast(pl.Int64),
            support.select("answer_support_prob").to_series(),
            word_share=word_share)
    return frame.join(worst.select("pair_row", "word", "stated", "leak"), on="pair_row", how="left",
                      maintain_order="left").select(
        leak_text_support=pl.when(pl.col("image_sha256").is_not_null())
        .then(pl.coalesce("stated", "word_share")).cast(pl.Float32),
        leak_score=pl.when(pl.col("image_sha256").is_not_null()).then(pl.coalesce(
            "leak", pl.col("word_share") * (1 - pl.col("answer_support_prob")))).cast(pl.Float32),
        leak_claim=pl.col("word"),
    )


class CaptionDerived(BaseModel):
    """``signals.caption_derived``: the answer follows text about the image, not its pixels."""

    model_config = ConfigDict(extra="forbid")
    leak_score_min: float = Field(0.5, ge=0.0, le=1.0)


register(Detector(
    name="caption_leakage",
    reads=("image_sha256", "question_tokens", "answer_tokens", "outside_tokens", *CLAIMS_READS),
    description="the answer follows the row's caption or metadata, not its pixels",
    columns={"leak_text_support": "higher", "leak_score": "higher", "leak_claim": "first"},
    score=lambda context: score_caption_leakage(
        context.pairs, context.claims(), context.shared("claim_support", lambda: None),
        context.output("answer_support")),
    needs_encoder=True,
    after=("answer_support",),
    flaws=(Flaw(
        "caption_derived", CaptionDerived, needs=("leak_score",),
        description="an answer written from text about the image, not from its pixels",
        flag=lambda s, col: col("leak_score") >= s.leak_score_min,
    ),),
    thresholds=(Threshold("leak_score", "signals.caption_derived.leak_score_min", ">=",
                          "caption_derived"),),
))
