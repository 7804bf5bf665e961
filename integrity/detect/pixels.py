"""What detectors read of the pixels: each distinct image decoded once (threads where decoding
dominates; JPEG draft mode) for its size, grey-level spread and a 16x16 RGB thumbnail
signature (duplicates.py finds near-copy candidates with it); images read whole are kept,
within a budget, for the near-copy verification (``Decoded``). Cost: ~0.3-5 ms per image.
"""

from __future__ import annotations

import threading

import numpy as np
import polars as pl
from PIL import Image

from integrity.ingest.images import map_images, opened_image

# 16x16 RGB: coarse enough to ignore re-encoding and small shifts, fine enough to tell
# different layouts of the same objects apart.
THUMB_SIDE = 16
THUMB_DIM = THUMB_SIDE * THUMB_SIDE * 3


# Full-size RGB pixels image_stats keeps for the near-copy verification (``decoded``), so an
# image whose statistics read it whole is not decoded again; beyond this, images are.
DECODED_BUDGET = 256 * 2**20


class Decoded:
    """Images decoded whole, by sha256, up to ``budget`` bytes (safe to fill from threads)."""

    def __init__(self, budget: int = DECODED_BUDGET) -> None:
        self.budget = budget
        self.pixels: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def keep(self, sha256: str, rgb: Image.Image) -> None:
        pixels = np.asarray(rgb)
        with self._lock:
            if pixels.nbytes <= self.budget:
                self.budget -= pixels.nbytes
                self.pixels[sha256] = pixels

    def get(self, sha256: str) -> np.ndarray | None:
        return self.pixels.get(sha256)


def _stats(uri: str, sha256: str, storage_options: dict,
           decoded: Decoded | None) -> tuple[int, int, float, np.ndarray]:
    with opened_image(uri, sha256=sha256, storage_options=storage_options) as image:
        width, height = image.size
        image.draft("RGB", (64, 64))
        rgb = image.convert("RGB")
        grey = np.asarray(rgb.convert("L").resize((64, 64)), dtype=np.float32)
        thumb = np.asarray(rgb.resize((THUMB_SIDE, THUMB_SIDE), Image.BILINEAR), dtype=np.float32)
    if decoded is not None and rgb.size == (width, height):  # whole: the draft changed nothing
        decoded.keep(sha256, rgb)
    return width, height, float(grey.std()), thumb.reshape(-1)


def image_stats(uris: list[str], sha256: list[str], *, storage_options: dict | None = None,
                workers: int | None = None, decoded: Decoded | None = None) -> pl.DataFrame:
    """One row per distinct sha256: image_width, image_height, image_pixel_std, image_thumb.
    ``decoded``: where the images read whole are kept for a later reader (within its budget)."""
    distinct = dict(zip(sha256, uris, strict=True))
    stats = map_images(lambda item: _stats(item[1], item[0], storage_options or {}, decoded),
                       list(distinct.items()), workers=workers)
    columns = list(zip(*stats, strict=True)) if stats else [[], [], [], []]
    thumbs = np.stack(columns[3]) if stats else np.zeros((0, THUMB_DIM), dtype=np.float32)
    return pl.DataFrame(
        {"image_sha256": list(distinct), "image_width": columns[0], "image_height": columns[1],
         "image_pixel_std": columns[2]},
        schema={"image_sha256": pl.String, "image_width": pl.Int32, "image_height": pl.Int32,
                "image_pixel_std": pl.Float32},
    ).with_columns(image_thumb=pl.Series(thumbs, dtype=pl.Array(pl.Float32, THUMB_DIM)))
