"""Duplicates across sources: each source's copy keys, and the copies between two sources.

The duplicates detector finds copies within one source. Shards of one dataset and mixes that
share images (COCO recurs across LLaVA-665k's parts) copy across sources, and no run holds
every source at once. So scoring reduces a source to its keys (``source_keys``): per example an
exact key (its images and normalised dialog), the shingles of its dialog and their MinHash band
keys; per image its 16x16 thumbnail. ``match_sources`` compares two sources' keys:

- ``exact``: the same images and the same normalised dialog;
- ``near_text``: dialogs over the same images (or both text-only, of at least
  ``MIN_TEXT_SHINGLES`` words) whose Jaccard similarity is at least ``TEXT_FLOOR``; candidates
  share a MinHash band key, identical dialogs are compared once;
- ``near_image``: an image that is a verified near copy of an image of the other source
  (``aligned_similarity``, exactly as within one source) scoring at least ``IMAGE_FLOOR``;
  every example using it matches an example using the other.

Each example gets at most one match per kind and other source, the most similar (ties to the
smallest id), in both directions; the candidates of a pair of sources depend on those two
sources only. So the matches never depend on the order sources were indexed in. The floors
are below the policy's thresholds, which the audit applies. Hashes are stable (MD5 of the
text, a fixed universal hash family), so keys written by another process, another day or
another polars version still match.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from integrity.detect.duplicates import (
    MIN_TEXT_SHINGLES,
    dialog_shingles,
    signatures,
    verify_geometry,
    verify_pairs,
)
from integrity.detect.minhash import BANDS, PERMUTATIONS, _signatures
from integrity.detect.pixels import THUMB_DIM
from integrity.errors import UserError
from integrity.names import DUPLICATE_INDEX, SCORED_SFT
from integrity.store.versions import VersionStore

TEXT_FLOOR = 0.5  # Jaccard kept as a near_text match (the policy's text_sim_min is above)
IMAGE_FLOOR = 0.9  # verified similarity kept as a near_image match (policy: 0.955)
CANDIDATE_FLOOR = 0.8  # thumbnail cosine a candidate image pair needs, as within one source
CANDIDATES = 3  # per image, its closest thumbnails in the other source (both ways)
MAX_BAND_BUCKET = 64  # distinct dialogs per side and band bucket compared; more are counted
BLOCK_CELLS = 2**24  # thumbnail cosines held at once (64 MB of float32)
KINDS = ("exact", "near_text", "near_image")

KEYS_SCHEMA = {"example_id": pl.String, "image_key": pl.String,
               "image_sha256": pl.List(pl.String), "exact_key": pl.UInt64,
               "shingles": pl.List(pl.UInt64), "bands": pl.List(pl.UInt64)}
IMAGES_SCHEMA = {"image_sha256": pl.String, "image_uri": pl.String, "image_width": pl.Int32,
                 "image_height": pl.Int32, "image_thumb": pl.Array(pl.UInt8, THUMB_DIM)}
MATCH_SCHEMA = {"source": pl.String, "example_id": pl.String, "other_source": pl.String,
                "other_example_id": pl.String, "kind": pl.String, "similarity": pl.Float32}


def stable_hash(strings: pl.Series) -> pl.Series:
    """The lower 64 bits of each string's MD5: the same on every machine and version."""
    with duckdb.connect() as connection:
        connection.register("strings", pl.DataFrame({"s": strings.cast(pl.String)}).to_arrow())
        hashes = connection.sql("select md5_number_lower(s) as h from strings").pl()["h"]
    return hashes.cast(pl.UInt64)


def _band_keys(signature: np.ndarray) -> np.ndarray:
    """(rows, BANDS) keys: each band's MinHash values folded by a fixed odd multiplier (uint64
    arithmetic wraps the same everywhere)."""
    per_band = PERMUTATIONS // BANDS
    folded = np.zeros((len(signature), BANDS), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(per_band):
            folded = folded * np.uint64(0x9E3779B97F4A7C15) + signature[:, offset::per_band]
    return folded


# The QA pairs' columns ``source_keys`` and ``source_images`` read.
KEY_READS = ("example_row", "example_id", "image_key", "dialog_norm", "question", "answer",
             "question_tokens", "answer_tokens", "image_sha256", "image_uri")


def source_keys(pairs: pl.DataFrame) -> pl.DataFrame:
    """One row per example of ``pairs`` (``qa_pairs``): example_id, image_key, image_sha256 (its
    images), exact_key, shingles (sorted, stable hashes of ``dialog_shingles``) and bands (empty
    for a text-only dialog under MIN_TEXT_SHINGLES words: short ones are only exact copies)."""
    # Each example's first pair (an integer to group by, not its id: 1.0 s -> 0.1 s at 1M).
    examples = pairs.select("example_row", "example_id", "image_key", "dialog_norm").filter(
        pl.col("example_row").is_first_distinct()).select(
        "example_id", pl.col("image_key").fill_null(""), "dialog_norm")
    if examples.is_empty():
        return pl.DataFrame(schema=KEYS_SCHEMA)
    # Each example's distinct hashes, sorted, in one group-by (not a unique over every
    # (example, hash) before it: 2.4 s -> 0.5 s at 1M rows).
    shingles = dialog_shingles(pairs, stable_hash).group_by("row").agg(
        shingles=pl.col("shingle").unique().sort())
    exact_key = stable_hash(examples.select(pl.concat_str(
        "image_key", pl.col("dialog_norm").fill_null(""), separator="\x1f")).to_series())
    keyed = examples.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64)).join(
        shingles, on="row", how="left", maintain_order="left").with_columns(
        shingles=pl.col("shingles").fill_null(pl.lit([], dtype=pl.List(pl.UInt64))),
        exact_key=exact_key,
        image_sha256=pl.col("image_key").str.split(",").list.eval(
            pl.element().filter(pl.element() != "")))
    exploded = keyed.select("row", "shingles").explode("shingles").drop_nulls("shingles")
    signature = _signatures(exploded["row"].to_numpy(),
                            exploded["shingles"].to_numpy().astype(np.uint64), keyed.height)
    # A 2-D array becomes a fixed-size array column without a Python object per value.
    bands = pl.Series("bands", _band_keys(signature)).arr.to_list()
    del signature, exploded  # 250 MB and 150 MB at 1M rows, not read again
    too_short = (pl.col("image_key") == "") & (pl.col("shingles").list.len() < MIN_TEXT_SHINGLES)
    return keyed.with_columns(bands=bands).with_columns(
        bands=pl.when(too_short | (pl.col("shingles").list.len() == 0))
        .then(pl.lit([], dtype=pl.List(pl.UInt64))).otherwise("bands"),
    ).select(list(KEYS_SCHEMA)).cast(KEYS_SCHEMA)


def source_images(pairs: pl.DataFrame, image_stats: pl.DataFrame) -> pl.DataFrame:
    """One row per distinct image: sha256, a uri to read it by, size and thumbnail (uint8)."""
    if image_stats.is_empty():
        return pl.DataFrame(schema=IMAGES_SCHEMA)
    uris = pairs.select("image_sha256", "image_uri").drop_nulls().unique(
        "image_sha256", keep="first", maintain_order=True)
    return image_stats.join(uris, on="image_sha256", how="left", maintain_order="left").select(
        "image_sha256", "image_uri", "image_width", "image_height",
        image_thumb=pl.col("image_thumb").arr.eval(pl.element().round().clip(0, 255))
        .cast(pl.Array(pl.UInt8, THUMB_DIM)))


@dataclass(frozen=True)
class SourceKeys:
    """What ``match_sources`` reads of one source."""

    source: str
    examples: pl.DataFrame  # KEYS_SCHEMA
    images: pl.DataFrame  # IMAGES_SCHEMA
    storage_options: dict


def _best(found: pl.DataFrame) -> pl.DataFrame:
    """Per (example_id, other_source, kind): the most similar match, ties to the smallest id."""
    return found.sort(["example_id", "kind", "similarity", "other_example_id"],
                      descending=[False, False, True, False]).unique(
        ["example_id", "other_source", "kind"], keep="first", maintain_order=True)


def _directed(left: SourceKeys, right: SourceKeys, frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    """``frame`` (example_id of left, other_example_id of right, similarity) as MATCH_SCHEMA."""
    return frame.select(
        source=pl.lit(left.source), example_id="example_id", other_source=pl.lit(right.source),
        other_example_id="other_example_id", kind=pl.lit(kind),
        similarity=pl.col("similarity").cast(pl.Float32))


def _exact(left: SourceKeys, right: SourceKeys) -> pl.DataFrame:
    """left's examples whose exact key right holds, each to right's smallest such id."""
    first = right.examples.group_by("exact_key").agg(other_example_id=pl.col("example_id").min())
    found = left.examples.select("example_id", "exact_key").join(first, on="exact_key")
    return _directed(left, right, found.with_columns(similarity=pl.lit(1.0)), "exact")


def _representatives(keys: SourceKeys) -> pl.DataFrame:
    """Distinct (image_key, shingles) of the examples with bands: rep (smallest id), members."""
    return keys.examples.filter(pl.col("bands").list.len() > 0).group_by(
        "image_key", "shingles").agg(rep=pl.col("example_id").min(), members=pl.col("example_id"),
                                     bands=pl.col("bands").first())


def _near_text(left: SourceKeys, right: SourceKeys) -> tuple[pl.DataFrame, int]:
    """Both directions' near_text matches and how many band-bucket members went uncompared."""
    reps = {side: _representatives(keys) for side, keys in (("l", left), ("r", right))}
    if reps["l"].is_empty() or reps["r"].is_empty():
        return pl.DataFrame(schema=MATCH_SCHEMA), 0
    buckets, skipped = {}, 0
    bucket = ["image_key", "band", "key"]
    for side, frame in reps.items():
        exploded = frame.select("image_key", "rep", band=pl.int_ranges(pl.col("bands").list.len()),
                                key="bands").explode("band", "key").with_columns(
            size=pl.len().over(bucket))
        # Ranking is the costly part: only buckets over the cap are ranked (smallest ids kept).
        large = exploded.filter(pl.col("size") > MAX_BAND_BUCKET).with_columns(
            rank=pl.col("rep").rank("ordinal").over(bucket))
        skipped += large.filter(pl.col("rank") > MAX_BAND_BUCKET).height
        buckets[side] = pl.concat([
            exploded.filter(pl.col("size") <= MAX_BAND_BUCKET).drop("size"),
            large.filter(pl.col("rank") <= MAX_BAND_BUCKET).drop("size", "rank")])
    candidates = buckets["l"].join(buckets["r"], on=["image_key", "band", "key"],
                                   suffix="_r").select("rep", "rep_r").unique()
    shingles = {side: frame.select("rep", "shingles", "members") for side, frame in reps.items()}
    scored = candidates.join(shingles["l"], on="rep").join(
        shingles["r"].rename({"rep": "rep_r", "shingles": "shingles_r", "members": "members_r"}),
        on="rep_r").with_columns(
        common=pl.col("shingles").list.set_intersection("shingles_r").list.len()).with_columns(
        similarity=pl.col("common") / (pl.col("shingles").list.len()
                                       + pl.col("shingles_r").list.len() - pl.col("common")),
    ).filter(pl.col("similarity") >= TEXT_FLOOR)
    forward = scored.select(example_id="members", other_example_id="rep_r",
                            similarity="similarity").explode("example_id")
    backward = scored.select(example_id="members_r", other_example_id="rep",
                             similarity="similarity").explode("example_id")
    return pl.concat([_directed(left, right, forward, "near_text"),
                      _directed(right, left, backward, "near_text")]), skipped


def _thumb_signatures(images: pl.DataFrame) -> np.ndarray:
    return signatures(images["image_thumb"].to_numpy().astype(np.float32)).astype(np.float32)


def _image_candidates(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) pairs whose thumbnail cosine is at least CANDIDATE_FLOOR and where j is among
    i's CANDIDATES closest of ``right`` or i among j's of ``left`` (symmetric in the sides)."""
    k_right, k_left = min(CANDIDATES, len(right)), min(CANDIDATES, len(left))
    best_left = np.full((len(right), k_left), -np.inf, dtype=np.float32)  # per j, top i's
    best_left_at = np.zeros((len(right), k_left), dtype=np.int64)
    found, block = [], max(1, BLOCK_CELLS // len(right))
    for start in range(0, len(left), block):
        similarity = left[start:start + block] @ right.T
        top = np.argpartition(-similarity, k_right - 1, axis=1)[:, :k_right]
        rows = np.repeat(np.arange(len(top)), k_right)
        cosine = similarity[rows, top.reshape(-1)]
        keep = cosine >= CANDIDATE_FLOOR
        found.append(np.stack([rows[keep] + start, top.reshape(-1)[keep]], axis=1))
        # Merge this block's best rows per column into the running top k of each column.
        block_top = np.argpartition(-similarity, min(k_left, len(similarity)) - 1,
                                    axis=0)[:k_left]
        merged = np.concatenate([best_left, np.take_along_axis(similarity, block_top, 0).T], 1)
        merged_at = np.concatenate([best_left_at, block_top.T + start], 1)
        order = np.argsort(-merged, axis=1, kind="stable")[:, :k_left]
        best_left = np.take_along_axis(merged, order, 1)
        best_left_at = np.take_along_axis(merged_at, order, 1)
    columns = np.repeat(np.arange(len(right)), best_left.shape[1])
    keep = best_left.reshape(-1) >= CANDIDATE_FLOOR
    found.append(np.stack([best_left_at.reshape(-1)[keep], columns[keep]], axis=1))
    pairs = np.unique(np.concatenate(found), axis=0)
    return pairs[:, 0], pairs[:, 1]


def near_image_matches(left: SourceKeys, rights: list[SourceKeys]) -> pl.DataFrame:
    """Both directions' near_image matches between ``left`` and each of ``rights``. Candidates
    are found pair by pair of sources (images both of a pair hold are no near copies there);
    all candidates are verified together, so each image is decoded once. ``rights`` need only
    example_id and image_sha256 of their examples."""
    blocks, listed = [], [(sha, uri, left.storage_options) for sha, uri in
                          left.images.select("image_sha256", "image_uri").iter_rows()]
    signature = _thumb_signatures(left.images)
    for right in rights:
        shared = left.images.join(right.images, on="image_sha256", how="semi")["image_sha256"]
        rows = np.flatnonzero(~left.images["image_sha256"].is_in(shared.implode()).to_numpy())
        other = right.images.filter(~pl.col("image_sha256").is_in(shared.implode()))
        if not len(rows) or other.is_empty():
            continue
        i, j = _image_candidates(signature[rows], _thumb_signatures(other))
        blocks.append((right, other, rows[i], j, len(listed)))
        listed += [(sha, uri, right.storage_options)
                   for sha, uri in other.select("image_sha256", "image_uri").iter_rows()]
    if not any(len(block[2]) for block in blocks):
        return pl.DataFrame(schema=MATCH_SCHEMA)
    side, radius, blur = verify_geometry(pl.concat(
        [left.images.select("image_width", "image_height"),
         *(block[1].select("image_width", "image_height") for block in blocks)]))
    left_at = np.concatenate([block[2] for block in blocks])
    right_at = np.concatenate([block[3] + block[4] for block in blocks])
    similarity = verify_pairs(left_at, right_at, listed, side=side, radius=radius,
                              storage_options={}, blur=blur)
    found, start = [], 0
    for right, other, i, j, _ in blocks:
        scores = similarity[start:start + len(i)]
        start += len(i)
        keep = scores >= IMAGE_FLOOR
        if keep.any():
            found += _expand(left, right, pl.DataFrame({
                "image": left.images["image_sha256"].gather(i[keep]),
                "other_image": other["image_sha256"].gather(j[keep]),
                "similarity": scores[keep]}))
    return pl.concat(found) if found else pl.DataFrame(schema=MATCH_SCHEMA)


def _expand(left: SourceKeys, right: SourceKeys, verified: pl.DataFrame) -> list[pl.DataFrame]:
    """Image pairs (image of left, other_image of right) as example matches both ways: every
    example using one image matches the first example (smallest id) using the other."""
    users = {side: keys.examples.select("example_id", image="image_sha256").explode("image")
             for side, keys in (("l", left), ("r", right))}
    first = {side: frame.group_by("image").agg(first=pl.col("example_id").min())
             for side, frame in users.items()}
    forward = verified.join(users["l"], on="image").join(
        first["r"].rename({"image": "other_image", "first": "other_example_id"}),
        on="other_image")
    backward = verified.join(users["r"].rename({"image": "other_image"}), on="other_image").join(
        first["l"].rename({"first": "other_example_id"}), on="image")
    return [_directed(left, right, forward, "near_image"),
            _directed(right, left, backward, "near_image")]


def text_matches(left: SourceKeys, right: SourceKeys) -> tuple[pl.DataFrame, int]:
    """Both directions' exact and near_text matches, and the band-bucket members not compared."""
    near_text, skipped = _near_text(left, right)
    return pl.concat([_exact(left, right), _exact(right, left), near_text]), skipped


def best_matches(found: list[pl.DataFrame]) -> pl.DataFrame:
    """One row per example, other source and kind (the most similar), as MATCH_SCHEMA."""
    if not found:
        return pl.DataFrame(schema=MATCH_SCHEMA)
    return _best(pl.concat(found).cast(MATCH_SCHEMA))


def match_sources(left: SourceKeys, right: SourceKeys) -> tuple[pl.DataFrame, dict]:
    """Every copy between two sources, both directions (MATCH_SCHEMA, one row per example,
    other source and kind), and facts: matches per kind, band-bucket members not compared."""
    text, skipped = text_matches(left, right)
    found = best_matches([text, near_image_matches(left, [right])])
    return found, {"matches": count_kinds(found), "band_members_not_compared": skipped}


def count_kinds(found: pl.DataFrame) -> dict[str, int]:
    counts = dict(found.group_by("kind").len().iter_rows())
    return {kind: counts.get(kind, 0) for kind in KINDS}


# -- reading the index (integrity.stages.index writes it) -----------------------------------


class DuplicateIndexError(UserError):
    """The duplicate index cannot answer for a source (never indexed, or indexed stale)."""


def stored_keys(store: VersionStore, source: str, scored_version: str,
                storage_options: dict | None = None) -> SourceKeys:
    """The copy keys scoring wrote for one scored_sft version (tables "keys", "images")."""
    manifest = store.manifest(SCORED_SFT, scored_version)
    if "keys" not in manifest.tables:
        raise DuplicateIndexError(f"{SCORED_SFT} {scored_version} of {source} has no copy keys "
                                  "(scored before the duplicate index existed): score it again")
    return SourceKeys(source, store.read(SCORED_SFT, scored_version, "keys"),
                      store.read(SCORED_SFT, scored_version, "images"), storage_options or {})


def indexed_scored_versions(store: VersionStore, sources: list[str]) -> dict[str, str]:
    """source -> the scored_sft version its latest duplicate_index version indexes (sources
    never indexed are left out)."""
    found = {}
    for source in sources:
        version = store.latest(DUPLICATE_INDEX, source)
        if version is not None:
            found[source] = store.manifest(DUPLICATE_INDEX, version).upstream[SCORED_SFT]
    return found


def current_matches(store: VersionStore, scored: dict[str, str]) -> pl.DataFrame:
    """Every copy between the sources of ``scored`` (source -> the scored_sft version in use),
    from each source's latest duplicate_index version: a match counts while the other side is
    still the version it was compared with. DuplicateIndexError names a source never indexed, or
    indexed for another scored version."""
    found = []
    for source, scored_version in sorted(scored.items()):
        version = store.latest(DUPLICATE_INDEX, source)
        if version is None:
            raise DuplicateIndexError(f"{source} has no {DUPLICATE_INDEX}: index it after scoring "
                              f"(Dagster: materialize {DUPLICATE_INDEX}[{source}])")
        manifest = store.manifest(DUPLICATE_INDEX, version)
        if manifest.upstream[SCORED_SFT] != scored_version:
            raise DuplicateIndexError(f"{DUPLICATE_INDEX} of {source} indexes {SCORED_SFT} "
                              f"{manifest.upstream[SCORED_SFT]}, not {scored_version}: index "
                              "it again")
        current = [other for other, seen in manifest.extra["against"].items()
                   if scored.get(other) == seen]
        other_side = pl.when(pl.col("source") == source).then("other_source").otherwise("source")
        found.append(store.read(DUPLICATE_INDEX, version, "matches").filter(
            other_side.is_in(current)))
    if not found:
        return pl.DataFrame(schema=MATCH_SCHEMA)
    return pl.concat(found).unique(["source", "example_id", "other_source", "kind"],
                                   keep="first", maintain_order=True)
