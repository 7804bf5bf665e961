"""The landing zone: where new data arrives as shards, each ready once its marker lands.

Layout (a local folder or an s3:// prefix)::

    <landing>/<source>/<shard>/data.jsonl      one data file: .jsonl, .json or .parquet
    <landing>/<source>/<shard>/images/...      its images (the shard folder is the image root)
    <landing>/<source>/<shard>/_SUCCESS        written last, by whoever uploads the shard

A shard is ready when its marker exists, never by modification time: files that land in the
same second as a listing are not missed, and a half-written shard (no marker yet) is never
ingested. Each ready shard becomes one source named ``<source>.<shard>`` (a partition key).
Listing is the caller's (a local walk, or S3 through dagster-aws's S3Resource): this module
turns object keys into sources, so it needs no client of its own.
"""

from __future__ import annotations

import os
import re

from integrity.ingest import SourceConfig
from integrity.ingest.records import DATA_SUFFIXES

MARKER = "_SUCCESS"
_PART = re.compile(r"[A-Za-z0-9_-]+")


def landed_sources(root: str, keys: list[str], *,
                   storage_options: dict | None = None) -> list[SourceConfig]:
    """The ready shards among ``keys`` (paths or object keys relative to ``root``), as sources.

    A marked shard without a data file, or with several, is skipped: it cannot be ingested as
    one source (``unready_reasons`` says why).
    """
    return [item for item in _shards(root, keys, storage_options)
            if isinstance(item, SourceConfig)]


def unready_reasons(root: str, keys: list[str]) -> dict[str, str]:
    """shard -> why a marked shard was not turned into a source."""
    return dict(item for item in _shards(root, keys, None) if isinstance(item, tuple))


def _escapes(root: str, path: str) -> bool:
    """A local data file that is a link out of the landing zone (its target is not the
    shard's to give: a secret elsewhere on the machine would land in quarantine's raw text)."""
    if "://" in root:
        return False  # object stores have no links
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) != real_root


def _shards(root: str, keys: list[str], storage_options: dict | None):
    root = root.rstrip("/")
    by_shard: dict[tuple[str, str], list[str]] = {}
    for key in keys:
        parts = key.strip("/").split("/")
        if len(parts) >= 3:
            by_shard.setdefault((parts[0], parts[1]), []).append("/".join(parts[2:]))
    for (source, shard), files in sorted(by_shard.items()):
        if MARKER not in files:
            continue  # still being written
        name = f"{source}.{shard}"
        if not (_PART.fullmatch(source) and _PART.fullmatch(shard)):
            yield name, (f"{source}/{shard}: a source or shard name may hold only ASCII letters, "
                         "digits, '_' and '-' (it becomes a partition key); rename the folder")
            continue
        data = sorted(name for name in files if "/" not in name and name.endswith(DATA_SUFFIXES))
        if len(data) != 1:
            yield name, f"{len(data)} data files in {root}/{source}/{shard} (need exactly one)"
            continue
        folder = f"{root}/{source}/{shard}"
        if _escapes(root, f"{folder}/{data[0]}"):
            yield name, f"{folder}/{data[0]} is a link out of the landing zone: refused"
            continue
        yield SourceConfig(name=name, uri=f"{folder}/{data[0]}", image_root=folder,
                           storage_options=dict(storage_options or {}))
