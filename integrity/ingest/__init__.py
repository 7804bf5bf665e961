"""Readers for real SFT formats into the canonical raw_sft frame (see integrity.schema)."""

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
