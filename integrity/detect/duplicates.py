"""Duplicates: the same example twice, and near copies of the same image.

Measures, per pair:
- ``dup_exact_size``: rows sharing this row's images (by sha256) and normalised dialog; > 1
  means exact duplicates (re-weighting the same example without new information).
- ``dup_is_copy``: this row is a later exact copy (not the group's first row), or its image is
  the larger-sha256 side of a near-copy pair above ``near_copy_sim``: what an audit may drop
  while keeping one original.
- ``dup_near_image_sim``: similarity of this pair's image to its closest OTHER distinct image
  of the frame, and ``dup_near_image_of`` that image's sha256. Two stages: candidates are the
  ``candidates`` nearest images by a 16x16 thumbnail signature (``candidate_neighbours``:
  exact blocked matrix products up to 8192 images, an inverted file of k-means cells above);
  each candidate pair is then verified at ``side`` px by the best
  normalised cross-correlation over shifts of up to ``radius`` px (FFT), so re-encoded,
  brightened or slightly shifted copies score ~1.0 while different pictures of similar things
  (a circle where the other has a square) stay clearly below.
- ``dup_eval_overlap``: the image or the normalised question also appears in an eval set.
Needs no model. Cost: O(pairs) group-bys, O(images^1.5 x 768) multiply-adds for candidates
and a decode + FFT per image with a close candidate (about twice, in chunks of MAX_SPECTRA).
"""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import scipy.fft
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from integrity.detect.clusters import spherical_kmeans
from integrity.detect.pixels import map_images, read_bytes
from integrity.detect.registry import Detector, Flaw, Threshold, register

# Spectra held at once while verifying near-copy candidates (each side^2 x 3 complex64).
MAX_SPECTRA = 1024
# Candidate search: exact up to this many distinct images, an inverted file above.
EXACT_SEARCH_MAX = 8192
CELL_PROBES = 3
CELL_FIT_SAMPLE = 65_536
CELL_ITERATIONS = 10


def nearest_neighbours(vectors: np.ndarray, k: int = 1, *,
                       block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each row of L2-normalised ``vectors``: the ``k`` most similar OTHER rows.

    Returns (indices, cosines), both (n, k), best first. Blocked ``vectors[i:j] @ vectors.T``
    keeps memory at block x n. With fewer than k other rows, k shrinks to n - 1.
    """
    count = len(vectors)
    k = min(k, count - 1)
    indices = np.zeros((count, max(k, 0)), dtype=np.int64)
    cosines = np.zeros((count, max(k, 0)), dtype=np.float32)
    if k <= 0:
        return indices, cosines
    for start in range(0, count, block):
        similarity = vectors[start:start + block] @ vectors.T
        rows = np.arange(similarity.shape[0])
        similarity[rows, rows + start] = -np.inf  # not its own neighbour
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        top_cos = np.take_along_axis(similarity, top, axis=1)
        order = np.argsort(-top_cos, axis=1)
        indices[start:start + block] = np.take_along_axis(top, order, axis=1)
        cosines[start:start + block] = np.take_along_axis(top_cos, order, axis=1)
    return indices, cosines


def _cells(vectors: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(a cell per row, the cells' centroids): spherical k-means with about sqrt(n) cells,
    fitted on a sample and assigned to every row in blocks."""
    rng = np.random.default_rng(seed)
    count = len(vectors)
    sample = vectors[rng.choice(count, size=min(count, CELL_FIT_SAMPLE), replace=False)]
    _, centroids = spherical_kmeans(sample, round(np.sqrt(count)), seed=seed,
                                    iterations=CELL_ITERATIONS)
    return np.concatenate([np.argmax(vectors[start:start + 8192] @ centroids.T, axis=1)
                           for start in range(0, count, 8192)]), centroids


def candidate_neighbours(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """(indices, cosines, order): each row's ``k`` most similar other rows, best first, and an
    order of the rows that keeps likely neighbours together.

    Up to EXACT_SEARCH_MAX rows the search is exact (``nearest_neighbours``, O(n^2)). Above,
    it is an inverted file: rows are split into about sqrt(n) cells by k-means, and each cell's
    rows are compared only with the rows of the CELL_PROBES cells nearest to it (itself first),
    O(n^1.5). A near copy is nearly the same vector as its original, so they share a cell; the
    rows of a cell follow each other in ``order``.
    """
    count = len(vectors)
    if count <= EXACT_SEARCH_MAX:
        return (*nearest_neighbours(vectors, k), np.arange(count))
    cells, centroids = _cells(vectors)
    probes = np.argsort(-(centroids @ centroids.T), axis=1)[:, :CELL_PROBES]
    members = [np.flatnonzero(cells == cell) for cell in range(len(centroids))]
    k = min(k, count - 1)
    indices = np.zeros((count, k), dtype=np.int64)
    cosines = np.full((count, k), -np.inf, dtype=np.float32)
    for cell, queries in enumerate(members):
        if not len(queries):
            continue
        pool = np.concatenate([members[other] for other in probes[cell]])
        similarity = vectors[queries] @ vectors[pool].T
        similarity[pool[None, :] == queries[:, None]] = -np.inf  # not its own neighbour
        width = min(k, len(pool) - 1)
        if width <= 0:
            continue
        top = np.argpartition(-similarity, width - 1, axis=1)[:, :width]
        top_cos = np.take_along_axis(similarity, top, axis=1)
        best = np.argsort(-top_cos, axis=1)
        indices[queries, :width] = pool[np.take_along_axis(top, best, axis=1)]
        cosines[queries, :width] = np.take_along_axis(top_cos, best, axis=1)
    return indices, cosines, np.argsort(cells, kind="stable")


def signatures(thumbs: np.ndarray) -> np.ndarray:
    """Centred, L2-normalised thumbnails: cosine then ignores overall brightness."""
    centred = thumbs - thumbs.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.where(norms == 0, 1, norms)


def _spectra(uris: list[str], *, side: int, storage_options: dict) -> np.ndarray:
    """FFTs (n, 3, side, side // 2 + 1) of the images at side x side RGB, each centred and
    scaled to unit norm; channels first, so every 2-D transform runs over contiguous memory."""
    def load(uri: str) -> np.ndarray:
        with Image.open(io.BytesIO(read_bytes(uri, storage_options))) as image:
            return np.asarray(image.convert("RGB").resize((side, side), Image.BILINEAR))

    pixels = np.ascontiguousarray(
        np.stack(map_images(load, uris)).transpose(0, 3, 1, 2), dtype=np.float32)
    pixels -= pixels.mean(axis=(1, 2, 3), keepdims=True)
    pixels /= np.maximum(np.sqrt((pixels**2).sum(axis=(1, 2, 3), keepdims=True)), 1e-9)
    return scipy.fft.rfft2(pixels, axes=(2, 3), workers=-1)


def aligned_similarity(spectra: np.ndarray, left: np.ndarray, right: np.ndarray, *,
                       side: int, radius: int, batch: int = 256) -> np.ndarray:
    """Best normalised cross-correlation of image pairs (left[i], right[i]) over shifts <= radius.

    The correlation summed over channels is the inverse transform of the channel-summed
    cross-spectrum (the transform is linear): one inverse FFT per pair, not one per channel.
    """
    shifts = np.r_[0:radius + 1, -radius:0]
    best = np.empty(len(left), dtype=np.float32)
    for start in range(0, len(left), batch):
        product = (spectra[left[start:start + batch]]
                   * np.conj(spectra[right[start:start + batch]])).sum(axis=1)
        correlation = scipy.fft.irfft2(product, s=(side, side), axes=(1, 2), workers=-1)
        window = correlation[:, shifts][:, :, shifts]
        best[start:start + batch] = window.reshape(len(window), -1).max(axis=1)
    return best


def verify_pairs(left: np.ndarray, right: np.ndarray, image_uris: list[str], *, side: int,
                 radius: int, storage_options: dict,
                 max_spectra: int = MAX_SPECTRA) -> np.ndarray:
    """aligned_similarity of every candidate pair (left[i], right[i]) of ``image_uris``.

    A pair and its mirror are verified once (the score is symmetric). Pairs go in chunks whose
    images number at most ``max_spectra``; a chunk's spectra are computed, used and dropped, so
    memory stays at max_spectra x side^2 x 3 complex values (~0.2 GB at the defaults) whatever
    the number of images, at the price of decoding an image again in each chunk that needs it.
    """
    low, high = np.minimum(left, right), np.maximum(left, right)
    unique, back = np.unique(np.stack([low, high], axis=1), axis=0, return_inverse=True)
    scores = np.empty(len(unique), dtype=np.float32)
    start = 0
    while start < len(unique):
        # The longest run of pairs (in order of their first image) within the spectra budget.
        end, seen = start, set()
        while end < len(unique) and len(seen | set(unique[end])) <= max_spectra:
            seen.update(unique[end])
            end += 1
        chunk = unique[start:end]
        involved = np.unique(chunk)
        slot = {image: position for position, image in enumerate(involved)}
        spectra = _spectra([image_uris[i] for i in involved], side=side,
                           storage_options=storage_options)
        scores[start:end] = aligned_similarity(
            spectra, np.array([slot[i] for i in chunk[:, 0]]),
            np.array([slot[i] for i in chunk[:, 1]]), side=side, radius=radius)
        start = end
    return scores[back.reshape(-1)]


def near_duplicate_images(stats: pl.DataFrame, uris: dict[str, str], *, candidates: int = 3,
                          floor: float = 0.8, side: int = 128, radius: int = 4,
                          storage_options: dict | None = None) -> pl.DataFrame:
    """image_sha256 -> dup_near_image_sim, dup_near_image_of (the verified closest other image)."""
    shas = stats["image_sha256"].to_list()
    count = len(shas)
    top, top_cos, order = candidate_neighbours(signatures(stats["image_thumb"].to_numpy()),
                                               candidates)
    keep = top_cos >= floor
    left = np.repeat(np.arange(count), top.shape[1])[keep.reshape(-1)]
    right = top.reshape(-1)[keep.reshape(-1)]
    similarity = np.full(count, np.nan, dtype=np.float32)
    neighbour = np.full(count, -1, dtype=np.int64)
    if len(left):
        # Verified in ``order`` (neighbours together), so a spectra chunk serves many pairs.
        rank = np.empty(count, dtype=np.int64)
        rank[order] = np.arange(count)
        ranked_uris = [uris[shas[i]] for i in order]
        verified = verify_pairs(rank[left], rank[right], ranked_uris, side=side,
                                radius=radius, storage_options=storage_options or {})
        order = np.lexsort((-verified, left))  # per image, best verified candidate first
        first = np.unique(left[order], return_index=True)[1]
        similarity[left[order][first]] = verified[order][first]
        neighbour[left[order][first]] = right[order][first]
    return pl.DataFrame({
        "image_sha256": shas,
        "dup_near_image_sim": similarity,
        "dup_near_image_of": [shas[i] if i >= 0 else None for i in neighbour],
    }, schema={"image_sha256": pl.String, "dup_near_image_sim": pl.Float32,
               "dup_near_image_of": pl.String}).with_columns(pl.col("dup_near_image_sim").fill_nan(None))


def score_duplicates(pairs: pl.DataFrame, stats: pl.DataFrame, *,
                     eval_images: set[str] | None = None,
                     eval_questions: set[str] | None = None,
                     near_copy_sim: float = 0.98,
                     storage_options: dict | None = None) -> pl.DataFrame:
    """Columns dup_exact_size, dup_is_copy, dup_near_image_sim, dup_near_image_of,
    dup_eval_overlap."""
    uris = dict(pairs.select("image_sha256", "image_uri").drop_nulls().iter_rows())
    nearest = near_duplicate_images(stats, uris, storage_options=storage_options)
    eval_images, eval_questions = eval_images or set(), eval_questions or set()
    return (
        pairs.select("image_sha256", "image_key", "dialog_norm", "question_norm", "example_id")
        .join(nearest, on="image_sha256", how="left", maintain_order="left")
        .select(
            dup_exact_size=pl.col("example_id").n_unique().over("image_key", "dialog_norm")
            .cast(pl.Int64),
            dup_is_copy=(pl.col("example_id")
                         != pl.col("example_id").first().over("image_key", "dialog_norm"))
            | ((pl.col("dup_near_image_sim") >= near_copy_sim)
               & (pl.col("image_sha256") > pl.col("dup_near_image_of"))).fill_null(False),
            dup_near_image_sim="dup_near_image_sim",
            dup_near_image_of="dup_near_image_of",
            dup_eval_overlap=pl.col("image_sha256").is_in(list(eval_images))
            | pl.col("question_norm").is_in(list(eval_questions)),
        )
    )


class Duplicate(BaseModel):
    """``signals.duplicate``: exact copies and near copies of an image."""

    model_config = ConfigDict(extra="forbid")
    exact: bool = True
    near_image_sim_min: float = Field(0.98, ge=0.0, le=1.0)


register(Detector(
    name="duplicates",
    description="the same example twice, near copies of an image, eval-set overlap",
    columns={"dup_exact_size": "higher", "dup_is_copy": "any", "dup_near_image_sim": "higher",
             "dup_near_image_of": "first", "dup_eval_overlap": "any"},
    score=lambda context: score_duplicates(
        context.pairs, context.image_stats(), eval_images=context.eval_images,
        eval_questions=context.eval_questions, storage_options=context.storage_options),
    flaws=(Flaw(
        "duplicate", Duplicate,
        description="a copy of another example (one original of each group is kept)",
        flag=lambda s, col: ((col("dup_exact_size") > 1) & s.exact)
        | (col("dup_near_image_sim") >= s.near_image_sim_min),
        acts_on=lambda s, col: col("dup_is_copy"),
    ),),
    thresholds=(Threshold("dup_near_image_sim", "signals.duplicate.near_image_sim_min", ">=",
                          "duplicate"),),
))
