"""Human review: export the rows an audit sent to review, import reviewers' verdicts.

Imported verdicts live in the store (``<root>/reviews/<source>.jsonl``, one JSON object per
line: example_id, verdict keep|drop, reviewer, note) and override the automatic verdict of that
example in every later audit; the audited manifest records how many applied and their hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import fsspec
import polars as pl

from integrity.errors import UserError
from integrity.names import AUDITED_SFT, RAW_SFT
from integrity.store.versions import VersionStore

REVIEW_VERDICTS = ("keep", "drop")


class ReviewError(UserError, ValueError):
    """A review file that cannot be applied; the message names the line and the problem."""


def _reviews_uri(store: VersionStore, source: str) -> str:
    return f"{store.root.rstrip('/')}/reviews/{source}.jsonl"


def review_rows(verdicts: pl.DataFrame, raw: pl.DataFrame, source: str) -> pl.DataFrame:
    """The rows an audit sent to review, as reviewers get them: id, reasons, the dialog, the
    image paths, the metadata, and an empty ``verdict`` for the reviewer to fill in."""
    return (
        verdicts.filter(pl.col("verdict") == "review")
        .join(raw.select("example_id", "turns", "image_uris", "metadata"),
              on="example_id", how="left", maintain_order="left")
        .select("example_id", "reasons", "turns", "image_uris", "metadata",
                pl.lit(source).alias("source"), pl.lit(None, dtype=pl.String).alias("verdict"))
    )


def export_reviews(store: VersionStore, source: str, out: Path) -> int:
    """Write the review rows of ``source``'s latest audit to ``out`` (JSONL); returns the count."""
    version = store.latest(AUDITED_SFT, source)
    if version is None:
        raise ReviewError(f"{source} has not been audited yet: run `integrity audit`")
    raw_version = store.manifest(AUDITED_SFT, version).upstream[RAW_SFT]
    rows = review_rows(store.read(AUDITED_SFT, version, "verdicts"),
                       store.read(RAW_SFT, raw_version), source)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows.write_ndjson(out)
    return rows.height


def import_reviews(store: VersionStore, file: Path) -> dict[str, int]:
    """Record reviewers' verdicts (JSONL with source, example_id, verdict); later lines win.

    Every id must be in its source's latest audit; returns verdicts recorded per source.
    """
    by_source: dict[str, dict[str, dict]] = {}
    for number, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ReviewError(f"{file}:{number}: not JSON ({error.msg})") from error
        if not isinstance(record, dict):
            raise ReviewError(f"{file}:{number}: not a JSON object with source, example_id and "
                              f"verdict (got {type(record).__name__})")
        verdict, source = record.get("verdict"), record.get("source")
        if verdict not in REVIEW_VERDICTS:
            raise ReviewError(f"{file}:{number}: verdict must be keep or drop, got {verdict!r}")
        if not source or not record.get("example_id"):
            raise ReviewError(f"{file}:{number}: needs 'source' and 'example_id'")
        for key in ("source", "example_id"):
            if not isinstance(record[key], str):
                raise ReviewError(f"{file}:{number}: {key} must be a string, got {record[key]!r}")
        by_source.setdefault(source, {})[record["example_id"]] = {
            "example_id": record["example_id"], "verdict": verdict,
            "reviewer": record.get("reviewer"), "note": record.get("note")}
    # Every source is checked before any is written, so a refused file records nothing.
    for source, reviews in by_source.items():
        version = store.latest(AUDITED_SFT, source)
        if version is None:
            raise ReviewError(f"{file}: source {source!r} has no audit to review")
        known = set(store.read(AUDITED_SFT, version, "verdicts")["example_id"])
        unknown = sorted(set(reviews) - known)
        if unknown:
            raise ReviewError(f"{file}: {len(unknown)} example ids are not in {source}'s latest "
                              f"audit: {', '.join(unknown[:5])}")
    for source, reviews in by_source.items():
        merged = {**{r["example_id"]: r for r in load_reviews(store, source)}, **reviews}
        fs, path = fsspec.core.url_to_fs(_reviews_uri(store, source), **store.storage_options)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "w") as handle:
            handle.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in merged.values()))
    return {source: len(reviews) for source, reviews in by_source.items()}


def load_reviews(store: VersionStore, source: str) -> list[dict]:
    """The recorded human verdicts of ``source`` (empty when none)."""
    fs, path = fsspec.core.url_to_fs(_reviews_uri(store, source), **store.storage_options)
    if not fs.exists(path):
        return []
    with fs.open(path, "r") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def reviews_digest(reviews: list[dict]) -> str:
    text = json.dumps(sorted(reviews, key=lambda r: r["example_id"]), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
