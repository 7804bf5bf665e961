"""Duplicates: the same example twice, and near copies of the same image.

Measures, per pair:
- ``dup_exact_size``: rows sharing this row's images (by sha256) and normalised dialog; > 1
  means exact duplicates (re-weighting the same example without new information).
- ``dup_exact_first``: this row is the first of its exact group (the one an audit keeps).
- ``dup_near_image_sim``: similarity of this pair's image to its closest OTHER distinct image
  of the frame, and ``dup_near_image_of`` that image's sha256. Two stages: candidates are the
  ``candidates`` nearest images by a 16x16 thumbnail signature (``candidate_neighbours``:
  exact blocked matrix products up to 8192 images, an inverted file of k-means cells above);
  each candidate pair is then verified a little above the images' own size (Lanczos, slightly
  blurred; ``verify_geometry``) by the best normalised cross-correlation over shifts of a few
  source pixels (FFT), so copies
  re-encoded (JPEG 60-95 with 4:2:0 chroma, WebP), resized (0.8-1.0), cropped by a few pixels
  or shifted score about 0.96-1.0, while different pictures of similar things (a small circle
  where the other has a small square) stay below.
- ``dup_image_rows``: how many examples use this pair's image bytes, whatever their dialogs
  (reported; the same image under several different dialogs is normal, under hundreds is not).
- ``dup_text_sim``: Jaccard similarity of this example's dialog (content words and adjacent
  word pairs) with the most similar other example over the same images (or another text-only
  one), found by MinHash LSH (``minhash.py``); ``dup_text_of`` that example, ``dup_text_later``
  whether it comes earlier (so this one is the copy). Templated copies ("Please answer: ...",
  one word swapped) score high; another question about the same image scores low.
- ``dup_eval_overlap``: the image or the normalised question also appears in an eval set.
The policy decides what counts as a copy (``signals.duplicate``) and what eval overlap does
(``audit.actions.eval_overlap``). Needs no model. Cost: O(pairs) group-bys, O(images^1.5 x 768) multiply-adds for candidates
and a decode + FFT per image with a close candidate (the FFTs in chunks of SPECTRA_BUDGET, the
decodes kept up to PIXEL_BUDGET, so once; an image the statistics decoded whole is read from
there, ``pixels.Decoded``, not decoded again).
"""

from __future__ import annotations


import numpy as np
import polars as pl
import scipy.fft
from PIL import Image, ImageFilter
from pydantic import BaseModel, ConfigDict, Field

from integrity.detect.clusters import spherical_kmeans
from integrity.ingest.images import load_rgb, map_images
from integrity.detect.minhash import near_duplicate_texts
from integrity.detect.pairs import IMAGE_READS
from integrity.detect.registry import Detector, Flaw, Threshold, register

# Bytes of spectra held at once while verifying near-copy candidates (each image's is
# 3 x side x (side // 2 + 1) complex64): 290 images at 192 px, 4,600 at 48 px. Small: an
# image two chunks need costs a second FFT (microseconds), not a second decode.
SPECTRA_BUDGET = 128 * 2**20
# Bytes of decoded, resized pixels kept across spectra chunks (3 x side x side uint8, a
# quarter of a spectrum): 4,800 images at 192 px, 77,000 at 48 px are decoded once however
# many chunks need them.
PIXEL_BUDGET = 512 * 2**20
# Verification compares candidate pairs at 1.5x the images' typical short side, at most
# VERIFY_SIDE px, blurred by VERIFY_BLUR source px, over shifts of up to VERIFY_SHIFT of the
# side (6 px at 192 px: 4 px of a 128 px source).
VERIFY_SIDE = 192
VERIFY_UPSAMPLE = 1.5
VERIFY_BLUR = 0.53
VERIFY_SHIFT = 0.031
# A text-only dialog needs at least this many distinct words to be called a near copy.
MIN_TEXT_SHINGLES = 8
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


def verify_geometry(stats: pl.DataFrame) -> tuple[int, int, float]:
    """(side, radius, blur) for verifying the images of ``stats``: a side a little finer than
    their typical short side (so shifts align to a fraction of a source pixel; 32 px sources
    are not blown up to 192), the shift radius and blur in that side's pixels."""
    if not {"image_width", "image_height"} <= set(stats.columns) or stats.is_empty():
        return VERIFY_SIDE, round(VERIFY_SHIFT * VERIFY_SIDE), VERIFY_BLUR * VERIFY_UPSAMPLE
    short = float(stats.select(pl.min_horizontal("image_width", "image_height")).to_series()
                  .median())
    side = int(np.clip(round(short * VERIFY_UPSAMPLE / 8) * 8, 32, VERIFY_SIDE))
    return side, max(2, round(VERIFY_SHIFT * side)), VERIFY_BLUR * side / max(short, 1.0)


def _pixels(images: list[tuple], *, side: int, storage_options: dict,
            blur: float = VERIFY_BLUR * VERIFY_UPSAMPLE, decoded=None) -> list[np.ndarray]:
    """The images at side x side RGB (uint8), resampled with Lanczos (a copy saved smaller is
    restored smoothly, not in blocks) to a side finer than most sources (``verify_geometry``),
    so the shift search aligns to a fraction of a source pixel, then blurred by ``blur`` px:
    what re-encoding changes (JPEG blocks, 4:2:0 chroma, resampling) lives below that scale;
    what makes two pictures different does not. ``decoded``: images decoded whole already
    (``pixels.Decoded``), read from there."""
    def load(image: tuple) -> np.ndarray:
        sha256, uri, *options = image  # (sha256, uri[, its own storage options])
        whole = decoded.get(sha256) if decoded is not None else None
        rgb = Image.fromarray(whole) if whole is not None else load_rgb(
            uri, sha256=sha256, storage_options=options[0] if options else storage_options)
        resized = rgb.resize((side, side), Image.LANCZOS)
        return np.asarray(resized.filter(ImageFilter.GaussianBlur(blur)))

    return map_images(load, images)


def _spectra(pixels: list[np.ndarray]) -> np.ndarray:
    """FFTs (n, 3, side, side // 2 + 1) of ``_pixels``, each image centred and scaled to unit
    norm; channels first, so every 2-D transform runs over contiguous memory."""
    stacked = np.ascontiguousarray(np.stack(pixels).transpose(0, 3, 1, 2), dtype=np.float32)
    stacked -= stacked.mean(axis=(1, 2, 3), keepdims=True)
    stacked /= np.maximum(np.sqrt((stacked**2).sum(axis=(1, 2, 3), keepdims=True)), 1e-9)
    return scipy.fft.rfft2(stacked, axes=(2, 3), workers=-1)


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


def verify_pairs(left: np.ndarray, right: np.ndarray, images: list[tuple], *,
                 side: int, radius: int, storage_options: dict,
                 blur: float = VERIFY_BLUR * VERIFY_UPSAMPLE,
                 budget: int = SPECTRA_BUDGET, pixel_budget: int = PIXEL_BUDGET,
                 decoded=None) -> np.ndarray:
    """aligned_similarity of every candidate pair (left[i], right[i]) of ``images`` ((sha256,
    uri) pairs, or (sha256, uri, storage options) for images of several sources: each read is
    checked against the hash ingest recorded).

    A pair and its mirror are verified once (the score is symmetric). Pairs go in chunks whose
    spectra fit in ``budget`` bytes; a chunk's spectra are computed, used and dropped, so memory
    stays within the budget whatever the number of images. The decoded pixels of the first
    images read are kept up to ``pixel_budget`` bytes, so an image two chunks need is decoded
    once (beyond that budget it is decoded again by each chunk that needs it).
    """
    max_spectra = max(2, budget // (3 * side * (side // 2 + 1) * 8))
    max_kept = pixel_budget // (3 * side * side)
    kept: dict[int, np.ndarray] = {}
    low, high = np.minimum(left, right), np.maximum(left, right)
    unique, back = np.unique(np.stack([low, high], axis=1), axis=0, return_inverse=True)
    scores = np.empty(len(unique), dtype=np.float32)
    start = 0
    while start < len(unique):
        # The longest run of pairs (in order of their first image) within the spectra budget.
        end, seen = start, set()
        while end < len(unique):
            pair = set(unique[end].tolist()) - seen
            if len(seen) + len(pair) > max_spectra:
                break
            seen |= pair
            end += 1
        chunk = unique[start:end]
        involved = np.unique(chunk).tolist()
        missing = [i for i in involved if i not in kept]
        read = dict(zip(missing, _pixels([images[i] for i in missing], side=side,
                                         storage_options=storage_options, blur=blur,
                                         decoded=decoded)))
        for image in missing[:max(0, max_kept - len(kept))]:
            kept[image] = read[image]
        slot = {image: position for position, image in enumerate(involved)}
        spectra = _spectra([kept[i] if i in kept else read[i] for i in involved])
        del read
        scores[start:end] = aligned_similarity(
            spectra, np.array([slot[i] for i in chunk[:, 0]]),
            np.array([slot[i] for i in chunk[:, 1]]), side=side, radius=radius)
        start = end
    return scores[back.reshape(-1)]


def near_duplicate_images(stats: pl.DataFrame, uris: dict[str, str], *, candidates: int = 3,
                          floor: float = 0.8, storage_options: dict | None = None,
                          decoded=None) -> pl.DataFrame:
    """image_sha256 -> dup_near_image_sim, dup_near_image_of (the verified closest other image).
    ``decoded``: images decoded whole already (``pixels.Decoded``)."""
    shas = stats["image_sha256"].to_list()
    side, radius, blur = verify_geometry(stats)
    count = len(shas)
    top, top_cos, order = candidate_neighbours(signatures(stats["image_thumb"].to_numpy()),
                                               candidates)
    keep = top_cos >= floor
    left = np.repeat(np.arange(count), top.shape[1])[keep.reshape(-1)]
    right = top.reshape(-1)[keep.reshape(-1)]
    # Both ways: a copy may not be among its original's nearest thumbnails while the original
    # is among the copy's; the pair's verified score belongs to both (verified once).
    left, right = np.concatenate([left, right]), np.concatenate([right, left])
    similarity = np.full(count, np.nan, dtype=np.float32)
    neighbour = np.full(count, -1, dtype=np.int64)
    if len(left):
        # Verified in ``order`` (neighbours together), so a spectra chunk serves many pairs.
        rank = np.empty(count, dtype=np.int64)
        rank[order] = np.arange(count)
        ranked = [(shas[i], uris[shas[i]]) for i in order]
        verified = verify_pairs(rank[left], rank[right], ranked, side=side,
                                radius=radius, storage_options=storage_options or {}, blur=blur,
                                decoded=decoded)
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


def dialog_shingles(pairs: pl.DataFrame, hashed=lambda words: words.hash(seed=3)
                    ) -> pl.DataFrame:
    """(row, shingle): each example's dialog as its content words (``text.tokens``), plus its
    answers' words marked as answers (``=word``), each hashed by ``hashed`` (a Series of words
    -> UInt64; by default polars' hash, stable within one run only); ``row`` is the example's
    position in order of first appearance. Words, not word sequences: a templated copy inserts
    and swaps words ("Please answer: ...", image -> picture) but keeps its answers, which count
    twice. Each distinct question's and answer's words are hashed once and rows gather integer
    lists, not a string per word (9.4M of them at 1M rows)."""
    texts = []
    for kind, tokens in (("question", "question_tokens"), ("answer", "answer_tokens")):
        distinct = pairs.select(text=kind, word=tokens).unique("text")
        words = distinct.explode("word").drop_nulls("word")
        if kind == "answer":  # an answer's words count twice: as words and as answer words
            words = pl.concat([words, words.with_columns(
                word=pl.concat_str(pl.lit("="), pl.col("word")))])
        texts.append((kind, words))
    vocabulary = pl.concat([words["word"] for _, words in texts]).unique()
    code = pl.DataFrame({"word": vocabulary, "hash": hashed(vocabulary).cast(pl.UInt64)})
    rows = pairs.select("example_row", "question", "answer")
    for kind, words in texts:
        lists = words.join(code, on="word").group_by("text").agg(pl.col("hash"))
        rows = rows.join(lists.rename({"text": kind, "hash": f"{kind}_hash"}), on=kind,
                         how="left", maintain_order="left")
    return rows.group_by("example_row", maintain_order=True).agg(
        *(pl.col(name).list.explode(keep_nulls=False, empty_as_null=False)
          for name in ("question_hash", "answer_hash")),
    ).with_row_index("row").select(
        pl.col("row").cast(pl.Int64),
        shingle=pl.concat_list("question_hash", "answer_hash"),
    ).explode("shingle").drop_nulls("shingle")


# The QA pairs' columns the near-copy dialog search reads (``dialog_shingles`` among them).
NEAR_DIALOG_READS = ("example_row", "example_id", "image_key", "question", "answer",
                     "question_tokens", "answer_tokens")


def near_duplicate_dialogs(pairs: pl.DataFrame) -> pl.DataFrame:
    """example_id -> dup_text_sim, dup_text_of (the most similar other example with the same
    images, or another text-only one) and dup_text_later (that example comes first)."""
    examples = pairs.filter(pl.col("example_row").is_first_distinct()).select(
        "example_id", "image_key")
    shingles = dialog_shingles(pairs)
    # A text-only dialog of a few words ("What is 34 minus 17? 17.") shares most of its words
    # with unrelated ones: only exact copies of such rows count.
    text_only = examples.with_row_index("row").filter(pl.col("image_key") == "")["row"]
    short = shingles.filter(pl.col("row").is_in(text_only.cast(pl.Int64).implode())).group_by(
        "row").len().filter(pl.col("len") < MIN_TEXT_SHINGLES)["row"]
    shingles = shingles.filter(~pl.col("row").is_in(short.implode()))
    found = near_duplicate_texts(shingles, examples["image_key"].fill_null(""))
    indexed = examples.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    return indexed.join(found, on="row", how="left", maintain_order="left").join(
        indexed.select(text_of="row", dup_text_of="example_id"), on="text_of", how="left",
        maintain_order="left").select(
        "example_id",
        dup_text_sim=pl.col("text_sim"),
        dup_text_of="dup_text_of",
        dup_text_later=pl.col("text_of") < pl.col("row"),
    )


def near_images(context) -> pl.DataFrame:
    """``near_duplicate_images`` of the context's images, shared."""
    def compute() -> pl.DataFrame:
        nearest = near_duplicate_images(context.image_stats(), image_uris(context.pairs),
                                        storage_options=context.storage_options,
                                        decoded=context.decoded_images())
        context.decoded_images().pixels.clear()  # verified: nothing else reads them
        return nearest

    return context.shared("near_images", compute)


def near_dialogs(context) -> pl.DataFrame:
    """``near_duplicate_dialogs`` of the context's pairs, shared (only the columns it reads
    are held while it runs, in the background, while the others are let go)."""
    return context.shared("near_dialogs", lambda: near_duplicate_dialogs(
        context.pairs.select(NEAR_DIALOG_READS)))


def _near_copies(context) -> None:
    """Both near-copy searches, started in the background: they read no detector's columns,
    and the images' decoding (mostly under the GIL) overlaps the text detectors (mostly not)."""
    near_images(context)
    near_dialogs(context)


def image_uris(pairs: pl.DataFrame) -> dict[str, str]:
    return dict(pairs.select("image_sha256", "image_uri").drop_nulls().iter_rows())


def score_duplicates(pairs: pl.DataFrame, stats: pl.DataFrame, *,
                     eval_images: set[str] | None = None,
                     eval_questions: set[str] | None = None,
                     storage_options: dict | None = None,
                     nearest: pl.DataFrame | None = None,
                     texts: pl.DataFrame | None = None) -> pl.DataFrame:
    """Columns dup_exact_size, dup_exact_first, dup_near_image_sim, dup_near_image_of,
    dup_image_rows, dup_text_sim, dup_text_of, dup_text_later, dup_eval_overlap.
    ``nearest`` and ``texts``: ``near_duplicate_images`` of ``stats`` and
    ``near_duplicate_dialogs`` of ``pairs`` when the caller has them already."""
    if nearest is None:
        nearest = near_duplicate_images(stats, image_uris(pairs),
                                        storage_options=storage_options)
    if texts is None:
        texts = near_duplicate_dialogs(pairs)
    eval_images, eval_questions = eval_images or set(), eval_questions or set()
    exact_group = ["image_key", "dialog_norm"]
    return (
        pairs.select("image_sha256", "image_key", "dialog_norm", "question_norm", "example_id")
        .join(nearest, on="image_sha256", how="left", maintain_order="left")
        .join(texts, on="example_id", how="left", maintain_order="left")
        .select(
            dup_exact_size=pl.col("example_id").n_unique().over(exact_group).cast(pl.Int64),
            dup_exact_first=pl.col("example_id") == pl.col("example_id").first().over(
                exact_group),
            dup_near_image_sim="dup_near_image_sim",
            dup_near_image_of="dup_near_image_of",
            dup_image_rows=pl.when(pl.col("image_sha256").is_not_null()).then(
                pl.col("example_id").n_unique().over("image_sha256")).cast(pl.Int64),
            dup_text_sim="dup_text_sim",
            dup_text_of="dup_text_of",
            dup_text_later="dup_text_later",
            dup_eval_overlap=pl.col("image_sha256").is_in(list(eval_images))
            | pl.col("question_norm").is_in(list(eval_questions)),
        )
    )


class Duplicate(BaseModel):
    """``signals.duplicate``: what counts as a copy of another example."""

    model_config = ConfigDict(extra="forbid")
    exact: bool = True
    # Verified similarity of two images above which one is a near copy of the other.
    near_image_sim_min: float = Field(0.955, ge=0.0, le=1.0)
    # Jaccard similarity of two dialogs over the same images (or both text-only) above which
    # one is a templated copy of the other.
    text_sim_min: float = Field(0.7, ge=0.0, le=1.0)


class EvalOverlap(BaseModel):
    """``signals.eval_overlap``: a row sharing an image or a question with an eval set."""

    model_config = ConfigDict(extra="forbid")


def _is_copy(s: Duplicate, col) -> pl.Expr:
    """The rows a duplicate action removes: later exact copies, the larger-hash side of a near
    image copy, the later of two near-identical dialogs; never the one original kept."""
    near = (col("dup_near_image_sim") >= s.near_image_sim_min) & (
        col("image_sha256") > col("dup_near_image_of"))
    text = (col("dup_text_sim") >= s.text_sim_min) & col("dup_text_later")
    return (~col("dup_exact_first") & s.exact) | near.fill_null(False) | text.fill_null(False)


register(Detector(
    name="duplicates",
    reads=("image_sha256", "image_key", "dialog_norm", "question_norm", "example_id",
           *IMAGE_READS, *NEAR_DIALOG_READS),
    description="the same example twice, near copies of an image or a dialog, eval-set overlap",
    columns={"dup_exact_size": "higher", "dup_exact_first": "lower",
             "dup_near_image_sim": "higher", "dup_near_image_of": "first",
             "dup_image_rows": "higher", "dup_text_sim": "higher", "dup_text_of": "first",
             "dup_text_later": "any", "dup_eval_overlap": "any"},
    score=lambda context: score_duplicates(
        context.pairs, context.image_stats(), eval_images=context.eval_images,
        eval_questions=context.eval_questions, storage_options=context.storage_options,
        nearest=near_images(context), texts=near_dialogs(context)),
    prefetch=_near_copies,
    flaws=(
        Flaw("duplicate", Duplicate,
             description="a copy of another example (one original of each group is kept)",
             flag=lambda s, col: ((col("dup_exact_size") > 1) & s.exact)
             | (col("dup_near_image_sim") >= s.near_image_sim_min)
             | (col("dup_text_sim") >= s.text_sim_min),
             acts_on=_is_copy),
        Flaw("eval_overlap", EvalOverlap,
             description="shares an image or a question with an eval set of the sources file",
             flag=lambda s, col: col("dup_eval_overlap")),
    ),
    thresholds=(Threshold("dup_near_image_sim", "signals.duplicate.near_image_sim_min", ">=",
                          "duplicate"),
                Threshold("dup_text_sim", "signals.duplicate.text_sim_min", ">=", "duplicate")),
    histograms=("dup_image_rows",),
))
