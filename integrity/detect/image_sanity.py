"""Image sanity: images too small, blank or oddly shaped to teach anything.

``score_image_sanity`` joins each pair to its image's statistics (``pixels.image_stats``): ``image_min_side``, ``image_aspect`` (long side /
short side) and ``image_pixel_std`` (grey-level standard deviation; ~0 for a blank image).
Needs no model. Cost: one decode per distinct image (~1-5 ms each), O(pairs) joins.
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from integrity.detect.pairs import IMAGE_READS
from integrity.detect.registry import Detector, Flaw, Threshold, register


def score_image_sanity(pairs: pl.DataFrame, stats: pl.DataFrame) -> pl.DataFrame:
    """Columns image_min_side, image_aspect, image_pixel_std (null for text-only pairs)."""
    measured = stats.select("image_sha256", "image_width", "image_height", "image_pixel_std")
    joined = pairs.select("image_sha256").join(measured, on="image_sha256", how="left",
                                               maintain_order="left")
    short = pl.min_horizontal("image_width", "image_height")
    long = pl.max_horizontal("image_width", "image_height")
    return joined.select(
        image_min_side=short,
        image_aspect=(long / short).cast(pl.Float32),
        image_pixel_std="image_pixel_std",
    )


class ImageDefect(BaseModel):
    """``signals.image_defect``: images too small, too elongated or blank to teach anything."""

    model_config = ConfigDict(extra="forbid")
    min_side: int = Field(32, ge=1)
    max_aspect: float = Field(4.0, ge=1.0)
    min_pixel_std: float = Field(2.0, ge=0.0)


register(Detector(
    name="image_sanity",
    reads=("image_sha256", *IMAGE_READS),
    description="image size, aspect ratio and pixel spread",
    columns={"image_min_side": "lower", "image_aspect": "higher", "image_pixel_std": "lower"},
    score=lambda context: score_image_sanity(context.pairs, context.image_stats()),
    flaws=(Flaw(
        "image_defect", ImageDefect,
        description="an image too small, too elongated or blank",
        flag=lambda s, col: (col("image_min_side") < s.min_side)
        | (col("image_aspect") > s.max_aspect) | (col("image_pixel_std") < s.min_pixel_std),
    ),),
    thresholds=(Threshold("image_pixel_std", "signals.image_defect.min_pixel_std", "<",
                          "image_defect"),
                Threshold("image_min_side", "signals.image_defect.min_side", "<", "image_defect")),
))
