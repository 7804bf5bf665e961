"""Image sanity: images too small, blank or oddly shaped to teach anything.

``image_stats`` decodes each distinct image once (threads; JPEG draft mode) and measures its
size, pixel spread and a 16x16 RGB thumbnail signature (used by duplicates.py for near copies).
``score_image_sanity`` joins those to pairs: ``image_min_side``, ``image_aspect`` (long side /
short side) and ``image_pixel_std`` (grey-level standard deviation; ~0 for a blank image).
Needs no model. Cost: one decode per distinct image (~1-5 ms each), O(pairs) joins.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import fsspec
import numpy as np
import polars as pl
from PIL import Image

from integrity.images import image_threads

# 16x16 RGB: coarse enough to ignore re-encoding and small shifts, fine enough to tell
# different layouts of the same objects apart.
THUMB_SIDE = 16
THUMB_DIM = THUMB_SIDE * THUMB_SIDE * 3


def read_bytes(uri: str, storage_options: dict) -> bytes:
    """The bytes at ``uri``: a local path is read directly (fsspec's resolution costs more than
    reading a small image), anything else through fsspec."""
    if "://" not in uri:
        with open(uri, "rb") as handle:
            return handle.read()
    fs, path = fsspec.core.url_to_fs(uri, **storage_options)
    with fs.open(path, "rb") as handle:
        return handle.read()


def map_images(read, uris: list[str], *, workers: int | None = None) -> list:
    """``read`` applied to every uri, in order, by ``image_threads`` threads (or ``workers``)."""
    workers = workers or image_threads(any("://" in uri for uri in uris))
    if workers == 1:
        return [read(uri) for uri in uris]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(read, uris))


def _stats(uri: str, storage_options: dict) -> tuple[int, int, float, np.ndarray]:
    data = read_bytes(uri, storage_options)
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        image.draft("RGB", (64, 64))
        rgb = image.convert("RGB")
        grey = np.asarray(rgb.convert("L").resize((64, 64)), dtype=np.float32)
        thumb = np.asarray(rgb.resize((THUMB_SIDE, THUMB_SIDE), Image.BILINEAR), dtype=np.float32)
    return width, height, float(grey.std()), thumb.reshape(-1)


def image_stats(uris: list[str], sha256: list[str], *, storage_options: dict | None = None,
                workers: int | None = None) -> pl.DataFrame:
    """One row per distinct sha256: image_width, image_height, image_pixel_std, image_thumb."""
    distinct = dict(zip(sha256, uris, strict=True))
    stats = map_images(lambda uri: _stats(uri, storage_options or {}), list(distinct.values()),
                       workers=workers)
    columns = list(zip(*stats, strict=True)) if stats else [[], [], [], []]
    thumbs = np.stack(columns[3]) if stats else np.zeros((0, THUMB_DIM), dtype=np.float32)
    return pl.DataFrame(
        {"image_sha256": list(distinct), "image_width": columns[0], "image_height": columns[1],
         "image_pixel_std": columns[2]},
        schema={"image_sha256": pl.String, "image_width": pl.Int32, "image_height": pl.Int32,
                "image_pixel_std": pl.Float32},
    ).with_columns(image_thumb=pl.Series(thumbs, dtype=pl.Array(pl.Float32, THUMB_DIM)))


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
