"""Caption leakage: the answer follows the row's caption/metadata, not the pixels.

Measures, per image pair with a caption (null otherwise):
- ``leak_answer_in_caption``: the short answer (or its plural) is a word of the caption.
- ``leak_caption_overlap``: share of the answer's words (3+ letters) found in the caption.
- ``leak_score``: caption support x image disagreement = overlap x (1 - answer_support_prob):
  high when the caption says it and the image does not (``caption_derived``).
Needs the answer_support columns. Cost: string ops, O(pairs).
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from integrity.detect.pairs import contains_word, normalise
from integrity.detect.registry import Detector, Flaw, Threshold, register


def score_caption_leakage(pairs: pl.DataFrame, support: pl.DataFrame) -> pl.DataFrame:
    """Columns leak_answer_in_caption, leak_caption_overlap, leak_score (one row per pair)."""
    caption = pl.col("caption_norm")
    words = pl.col("answer_norm").str.split(" ").list.eval(
        pl.element().filter(pl.element().str.len_chars() >= 3)
    )
    caption_words = caption.str.split(" ")
    overlap = (
        words.list.set_intersection(caption_words).list.len() / words.list.len()
    ).fill_nan(None)
    in_caption = pl.col("short_answer") & pl.col("answer_in_caption")
    applicable = pl.col("caption").is_not_null() & pl.col("image_sha256").is_not_null()
    frame = pairs.select("caption", "image_sha256", "answer_norm", "short_answer").with_columns(
        support.select("answer_support_prob"), caption_norm=normalise(pl.col("caption")))
    frame = frame.with_columns(
        answer_in_caption=contains_word(frame["caption_norm"], frame["answer_norm"]))
    return frame.select(
        leak_answer_in_caption=pl.when(applicable).then(in_caption),
        leak_caption_overlap=pl.when(applicable).then(
            pl.when(pl.col("short_answer")).then(in_caption.cast(pl.Float64)).otherwise(overlap)
        ),
    ).with_columns(
        leak_score=pl.col("leak_caption_overlap") * (1 - frame["answer_support_prob"])
    )


class CaptionDerived(BaseModel):
    """``signals.caption_derived``: the answer follows the caption and the pixels disagree."""

    model_config = ConfigDict(extra="forbid")
    leak_score_min: float = Field(0.5, ge=0.0, le=1.0)


register(Detector(
    name="caption_leakage",
    description="the answer follows the row's caption or metadata, not its pixels",
    columns={"leak_answer_in_caption": "any", "leak_caption_overlap": "higher",
             "leak_score": "higher"},
    score=lambda context: score_caption_leakage(context.pairs, context.output("answer_support")),
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
