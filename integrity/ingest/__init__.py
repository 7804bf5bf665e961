"""Ingest: real SFT files in, canonical raw_sft rows and quarantine out. ``records`` (containers:
JSON, JSON lines, parquet, shards, local or ``s3://``), ``formats`` (one mapper per public
format), ``columnar`` (plain JSON lines in one Arrow parse), ``pipeline`` (every record in
exactly one table), ``sources`` (the sources file), ``schema``, ``validate`` and
``expectations`` (the data contracts), ``images`` (the one safe image reader every stage uses)
and ``landing`` (shards arriving in a landing zone). Ingest knows nothing of detectors.
"""

from integrity.ingest.formats import detect_format
from integrity.ingest.pipeline import IngestResult, ingest_source
from integrity.ingest.records import IngestError
from integrity.ingest.sources import (
    SourceConfig,
    SourcesFileError,
    load_eval_sets,
    load_sources,
)

# Bump when a change to ingest changes its output for the same input (Dagster code_version).
CODE_VERSION = "ingest-3"

__all__ = [
    "CODE_VERSION",
    "IngestError",
    "IngestResult",
    "SourceConfig",
    "SourcesFileError",
    "detect_format",
    "ingest_source",
    "load_eval_sets",
    "load_sources",
]
