"""Embeddings detectors share: one vector per distinct image and per distinct text of a
source, and a pair-level column filled from them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from integrity.detect.encoder import Encoder


# Bytes of vectors gathered at once where each row reads its own: a block stays in cache (a
# million rows' (rows, dim) gathers at once took 3x the time, and gigabytes of memory).
GATHER_BYTES = 4 * 2**20


def rows_per_block(row_bytes: int) -> int:
    """How many rows of ``row_bytes`` gathered vectors fit in GATHER_BYTES."""
    return max(1, GATHER_BYTES // max(1, row_bytes))


def row_dots(left: np.ndarray, left_rows: np.ndarray, right: np.ndarray,
             right_rows: np.ndarray) -> np.ndarray:
    """``left[left_rows[i]] . right[right_rows[i]]`` for every i, a cache-sized block at once."""
    dots = np.empty(len(left_rows), dtype=np.float32)
    step = rows_per_block(2 * left.itemsize * left.shape[1])
    for start in range(0, len(left_rows), step):
        block = slice(start, start + step)
        dots[block] = np.einsum("nd,nd->n", left[left_rows[block]], right[right_rows[block]])
    return dots


def pair_column(values: np.ndarray, rows: np.ndarray, height: int) -> pl.Series:
    full = np.full(height, np.nan, dtype=np.float32)
    full[rows] = values
    return pl.Series(full).fill_nan(None)


def distinct_texts(texts: pl.Series, encoder: Encoder) -> tuple[np.ndarray, np.ndarray]:
    """(each text's row in the matrix, the embeddings of the distinct texts): a million pairs
    with a few thousand distinct answers cost a few thousand vectors, not a million."""
    frame = pl.DataFrame({"text": texts})
    distinct = frame.unique("text", maintain_order=True).with_row_index("position")
    index = frame.join(distinct, on="text", how="left", maintain_order="left",
                       nulls_equal=True)["position"]
    return index.to_numpy().astype(np.int64), encoder.encode_texts(distinct["text"].to_list())


def image_matrix(pairs: pl.DataFrame, encoder: Encoder, *, storage_options: dict | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows with an image, each row's index into the matrix, the distinct image embeddings).

    ``storage_options`` go to fsspec for s3:// image uris (the source's).
    """
    rows = np.flatnonzero(pairs["image_sha256"].is_not_null().to_numpy())
    with_image = pairs.select("image_sha256", "image_uri")[rows]  # not every column gathered
    distinct = with_image.unique("image_sha256", maintain_order=True).with_row_index("position")
    embeddings = encoder.encode_images(distinct["image_uri"].to_list(),
                                       distinct["image_sha256"].to_list(),
                                       storage_options=storage_options)
    positions = with_image.join(distinct.select("image_sha256", "position"), on="image_sha256",
                                how="left", maintain_order="left")["position"]
    return rows, positions.to_numpy().astype(np.int64), embeddings
