"""Grounding: does the image support the answer at all (CLIP image-text similarity)?

Measures, per image-text pair (null for text-only pairs):
- ``grounding_cos``: cosine between the image embedding and the answer embedding.
- ``grounding_margin``: that cosine minus the mean cosine of the same answer with
  ``negatives`` other images of the frame (the same source). Raw CLIP cosines drift with text
  length and style; the margin asks "does THIS image fit the answer better than others do?".
- ``grounding_min_sentence_cos``: for long answers (more than SHORT_ANSWER_WORDS words), the
  weakest sentence's cosine with the image: one invented sentence in a long description.
- ``grounding_shuffled_cos``: the same answer's cosine with the image of another pair that asks
  the same question and answers differently (the pair shuffled; null where none does): how
  often the matched pair wins is the model's fit to the source (``policy.model_fit_verdict``,
  the blocking scored_sft_model_fit check).
Needs an Encoder. Cost: one image encode per distinct image and one text encode per distinct
answer / sentence (both cached by hash), plus n x negatives dot products.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from integrity.detect.embeddings import (
    GATHER_BYTES,
    distinct_texts,
    image_matrix,
    pair_column,
    row_dots,
)
from integrity.detect.pairs import IMAGE_READS
from integrity.detect.registry import Detector, Threshold, register
from integrity.detect.encoder import Encoder
from integrity.detect.text import split_sentences

# Pairs scored at once: the (rows, negatives, dim) gather of mismatched images is bounded to
# BLOCK_BYTES, a cache-sized block (1,024 pairs at 8 negatives of 128 dims; 65,536 pairs of
# 768 dims took 1.6 GB, and 16,384 of 128 twice the time of 1,024).
BLOCK_BYTES = GATHER_BYTES


def shuffled_partners(pairs: pl.DataFrame, rows: np.ndarray, image_of_row: np.ndarray, *,
                      seed: int = 0) -> np.ndarray:
    """For each image pair (``rows``): the image of another pair asking the same question with a
    different answer about a different image (the pair shuffled), or -1 where none exists. A
    model that fits the data prefers each answer's own image to its partner's."""
    frame = pl.DataFrame({
        "at": np.arange(len(rows)), "image": image_of_row,
        "question": pairs["question_norm"].gather(rows),
        "answer": pairs["answer_norm"].gather(rows),
    }).with_columns(order=pl.col("at").hash(seed)).sort("question", "order")
    candidates = []
    for offset in (1, -1, 2, -2, 3, -3):
        # Sorted by question, a shift that lands on the same question is a shift within it
        # (one pass over the frame, not a window per question).
        same = pl.col("question").shift(-offset).eq_missing(pl.col("question"))
        other = pl.when(same).then(pl.col("image").shift(-offset))
        differs = (pl.when(same).then(pl.col("answer").shift(-offset)) != pl.col("answer")) & (
            other != pl.col("image"))
        candidates.append(pl.when(differs).then(other))
    # The nearest offset that qualifies: one coalesce, not a when/otherwise nested six deep
    # (each level repeated the one below it: 64 copies of the first).
    found = frame.select("at", partner=pl.coalesce(candidates)).sort("at")["partner"]
    return found.fill_null(-1).to_numpy().astype(np.int64)


def score_grounding(pairs: pl.DataFrame, *, encoder: Encoder, negatives: int = 8,
                    seed: int = 0, image_embeddings=None,
                    storage_options: dict | None = None) -> pl.DataFrame:
    """Columns grounding_cos, grounding_margin, grounding_min_sentence_cos (one row per pair).

    ``image_embeddings``: ``image_matrix(pairs, encoder)`` when the caller already has it;
    otherwise the images are read with ``storage_options`` (fsspec, for s3:// uris).
    """
    height = pairs.height
    rows, image_of_row, images = image_embeddings or image_matrix(
        pairs, encoder, storage_options=storage_options)
    if len(rows) == 0:
        empty = pl.Series([None] * height, dtype=pl.Float32)
        return pl.DataFrame({"grounding_cos": empty, "grounding_margin": empty,
                             "grounding_min_sentence_cos": empty,
                             "grounding_shuffled_cos": empty})
    answer_of_row, answers = distinct_texts(pairs["answer"].gather(rows), encoder)
    # Other images of the frame: a random sample per pair, never the pair's own image.
    rng = np.random.default_rng(seed)
    count = len(images)
    offsets = rng.integers(1, count, size=(len(rows), min(negatives, count - 1))) \
        if count > 1 else None
    own = np.empty(len(rows), dtype=np.float32)
    margin = np.full(len(rows), np.nan, dtype=np.float32)
    block_rows = max(1, BLOCK_BYTES // (4 * (max(1, negatives) + 1) * images.shape[1]))
    for start in range(0, len(rows), block_rows):  # bounded memory: (block, negatives, dim)
        block = slice(start, start + block_rows)
        answer = answers[answer_of_row[block]]
        own[block] = np.einsum("nd,nd->n", images[image_of_row[block]], answer)
        if offsets is not None:
            others = (image_of_row[block, None] + offsets[block]) % count
            margin[block] = own[block] - np.einsum("nkd,nd->nk", images[others],
                                                   answer).mean(axis=1)
    partner = shuffled_partners(pairs, rows, image_of_row, seed=seed)
    shuffled = np.full(len(rows), np.nan, dtype=np.float32)
    has = partner >= 0
    shuffled[has] = row_dots(images, partner[has], answers, answer_of_row[has])

    long_mask = ~pairs["short_answer"].gather(rows).to_numpy()
    long_rows, long_images = rows[long_mask], image_of_row[long_mask]
    min_sentence = np.full(len(long_rows), np.inf, dtype=np.float32)
    if len(long_rows):
        sentences = [split_sentences(text) or [text] for text in pairs["answer"].gather(long_rows)]
        owner = np.repeat(np.arange(len(long_rows)), [len(s) for s in sentences])
        sentence_of_row, vectors = distinct_texts(
            pl.Series([s for group in sentences for s in group], dtype=pl.String), encoder)
        np.minimum.at(min_sentence, owner,
                      row_dots(images, long_images[owner], vectors, sentence_of_row))
    return pl.DataFrame({
        "grounding_cos": pair_column(own, rows, height),
        "grounding_margin": pair_column(margin, rows, height),
        "grounding_min_sentence_cos": pair_column(min_sentence, long_rows, height),
        "grounding_shuffled_cos": pair_column(shuffled, rows, height),
    })


register(Detector(
    name="grounding",
    reads=("question", "answer", "question_norm", "answer_norm", "short_answer", *IMAGE_READS),
    description="image-answer similarity against mismatched images of the same source",
    columns={"grounding_cos": "lower", "grounding_margin": "lower",
             "grounding_min_sentence_cos": "lower", "grounding_shuffled_cos": "higher"},
    score=lambda context: score_grounding(context.pairs, encoder=context.encoder,
                                          image_embeddings=context.image_embeddings(),
                                          storage_options=context.storage_options),
    needs_encoder=True,
    # Weak grounding is evidence of answers not written from the pixels; the audited grounding
    # check bounds how many kept rows fall under this cut.
    thresholds=(Threshold("grounding_margin", "audit.weak_grounding_margin", "<",
                          "caption_derived"),),
    histograms=("grounding_cos",),
))
