"""Index one source's copy keys against every other source's: a duplicate_index version.

The duplicate index is one version per source (partition): the copies between that source and
each other source, found by ``cross_source.match_sources`` from the keys scoring wrote
(scored_sft tables "keys" and "images"). Updating it for a new or re-scored source reads that
source's keys and the other sources' keys, never their rows; no other source's version is
rewritten. A match found when source A was indexed against source B's scored version v holds
while v is B's current version (``current_matches``); when B is re-scored, B's new index
version compares B against A again. Each partition is its own run, so K8s and ECS run
launchers need no shared state.
"""

from __future__ import annotations

import time

import polars as pl

from integrity.detect.cross_source import (
    SourceKeys,
    best_matches,
    count_kinds,
    indexed_scored_versions,
    near_image_matches,
    stored_keys,
    text_matches,
)
from integrity.names import DUPLICATE_INDEX, SCORED_SFT
from integrity.store.versions import Manifest, VersionStore

INDEX_CODE_VERSION = "duplicate-index-1"


def index_to_store(source: str, scored_version: str, store: VersionStore,
                   others: dict[str, str], *,
                   storage_options: dict[str, dict] | None = None) -> Manifest:
    """Compare ``source``'s keys (of ``scored_version``) with each of ``others`` (other source
    -> its current scored_sft version) and commit the matches, both directions, as
    ``source``'s duplicate_index version. ``storage_options``: source -> fsspec options for
    reading its images (near-copy verification decodes candidate pairs of both sources)."""
    options = storage_options or {}
    started = time.perf_counter()
    this = stored_keys(store, source, scored_version, options.get(source))
    against = {other: version for other, version in sorted(others.items()) if other != source}
    found, images, not_compared = [], [], 0
    for other, version in against.items():  # one other source's dialogs in memory at a time
        keys = stored_keys(store, other, version, options.get(other))
        text, skipped = text_matches(this, keys)
        found.append(text)
        not_compared += skipped
        images.append(SourceKeys(other, keys.examples.select("example_id", "image_sha256"),
                                 keys.images, keys.storage_options))
    matches = best_matches([*found, near_image_matches(this, images)])
    per_source = {other: count_kinds(matches.filter((pl.col("source") == other)
                                                    | (pl.col("other_source") == other)))
                  for other in against}
    return store.write(
        DUPLICATE_INDEX, {"matches": matches.sort("source", "example_id", "other_source", "kind")},
        partition=source,
        upstream={SCORED_SFT: scored_version,
                  **{f"{SCORED_SFT}/{other}": version for other, version in against.items()}},
        code_version=INDEX_CODE_VERSION,
        extra={"examples": this.examples.height, "images": this.images.height,
               "against": against, "matches": per_source,
               "copied_rows": matches.filter(pl.col("source") == source)["example_id"].n_unique(),
               "band_members_not_compared": not_compared,
               "seconds": round(time.perf_counter() - started, 3)},
    )


def update_index(store: VersionStore, sources: dict[str, dict]) -> dict[str, Manifest]:
    """Index every one of ``sources`` (name -> storage options) whose latest scored_sft version
    is not indexed yet, against the latest scored version of every other source (the CLI's
    step; Dagster indexes one partition a run). A source already indexed is not read again:
    its copies of a new source are in the new source's index. Returns the versions written."""
    scored = {name: version for name in sources
              if (version := store.latest(SCORED_SFT, name)) is not None}
    indexed = indexed_scored_versions(store, list(scored))
    return {name: index_to_store(name, version, store, scored, storage_options=sources)
            for name, version in scored.items() if indexed.get(name) != version}
