"""Grounding: does the image support the answer at all (CLIP image-text similarity)?

Measures, per image-text pair (null for text-only pairs):
- ``grounding_cos``: cosine between the image embedding and the answer embedding.
- ``grounding_margin``: that cosine minus the mean cosine of the same answer with
  ``negatives`` other images of the frame (the same source). Raw CLIP cosines drift with text
  length and style; the margin asks "does THIS image fit the answer better than others do?".
- ``grounding_min_sentence_cos``: for long answers (more than SHORT_ANSWER_WORDS words), the
  weakest sentence's cosine with the image: one invented sentence in a long description.
Needs an Encoder. Cost: one image encode per distinct image and one text encode per distinct
answer / sentence (both cached by hash), plus n x negatives dot products.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from integrity.encoder import Encoder, split_sentences


def _column(values: np.ndarray, rows: np.ndarray, height: int) -> pl.Series:
    full = np.full(height, np.nan, dtype=np.float32)
    full[rows] = values
    return pl.Series(full).fill_nan(None)


def image_matrix(pairs: pl.DataFrame, encoder: Encoder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows with an image, each row's index into the matrix, the distinct image embeddings)."""
    rows = np.flatnonzero(pairs["image_sha256"].is_not_null().to_numpy())
    with_image = pairs[rows].select("image_sha256", "image_uri")
    distinct = with_image.unique("image_sha256", maintain_order=True).with_row_index("position")
    embeddings = encoder.encode_images(distinct["image_uri"].to_list(),
                                       distinct["image_sha256"].to_list())
    positions = with_image.join(distinct.select("image_sha256", "position"), on="image_sha256",
                                how="left", maintain_order="left")["position"]
    return rows, positions.to_numpy().astype(np.int64), embeddings


def score_grounding(pairs: pl.DataFrame, *, encoder: Encoder, negatives: int = 8,
                    seed: int = 0, image_embeddings=None) -> pl.DataFrame:
    """Columns grounding_cos, grounding_margin, grounding_min_sentence_cos (one row per pair).

    ``image_embeddings``: ``image_matrix(pairs, encoder)`` when the caller already has it.
    """
    height = pairs.height
    rows, image_of_row, images = image_embeddings or image_matrix(pairs, encoder)
    if len(rows) == 0:
        empty = pl.Series([None] * height, dtype=pl.Float32)
        return pl.DataFrame({"grounding_cos": empty, "grounding_margin": empty,
                             "grounding_min_sentence_cos": empty})
    answers = encoder.encode_texts(pairs["answer"].gather(rows).to_list())
    own = np.einsum("nd,nd->n", images[image_of_row], answers)

    # Other images of the frame: a random sample per pair, never the pair's own image.
    rng = np.random.default_rng(seed)
    count = len(images)
    if count > 1:
        offsets = rng.integers(1, count, size=(len(rows), min(negatives, count - 1)))
        others = (image_of_row[:, None] + offsets) % count
        mismatched = np.einsum("nkd,nd->nk", images[others], answers).mean(axis=1)
        margin = own - mismatched
    else:
        margin = np.full(len(rows), np.nan, dtype=np.float32)

    long_mask = ~pairs["short_answer"].gather(rows).to_numpy()
    long_rows, long_images = rows[long_mask], image_of_row[long_mask]
    min_sentence = np.full(len(long_rows), np.inf, dtype=np.float32)
    if len(long_rows):
        sentences = [split_sentences(text) or [text] for text in pairs["answer"].gather(long_rows)]
        owner = np.repeat(np.arange(len(long_rows)), [len(s) for s in sentences])
        vectors = encoder.encode_texts([s for group in sentences for s in group])
        cos = np.einsum("nd,nd->n", images[long_images[owner]], vectors)
        np.minimum.at(min_sentence, owner, cos)
    return pl.DataFrame({
        "grounding_cos": _column(own, rows, height),
        "grounding_margin": _column(margin, rows, height),
        "grounding_min_sentence_cos": _column(min_sentence, long_rows, height),
    })
