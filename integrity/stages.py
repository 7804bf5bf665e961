"""Each pipeline stage as one call: inputs in, a committed store version out.

Dagster assets and the CLI both call these, so a version made from the command line is the
same version Dagster makes for the same input.
"""

from __future__ import annotations

from integrity import ingest
from integrity.ingest import IngestResult, SourceConfig
from integrity.store import Manifest, VersionStore

RAW_SFT = "raw_sft"


def blob_root(store: VersionStore) -> str:
    """Where embedded image bytes are written: beside the versions, content-addressed."""
    return f"{store.root.rstrip('/')}/images"


def ingest_to_store(source: SourceConfig, store: VersionStore) -> tuple[IngestResult, Manifest]:
    """Ingest one source and commit accepted rows + quarantine as a raw_sft version."""
    result = ingest.ingest_source(source, blob_root=blob_root(store))
    manifest = store.write(
        RAW_SFT,
        {"data": result.accepted, "quarantine": result.quarantine},
        partition=source.name,
        code_version=ingest.CODE_VERSION,
        params={"uri": source.uri, "format": source.format, "image_root": source.image_root},
        extra=result.summary(),
    )
    return result, manifest


def latest_raw_summaries(store: VersionStore, sources: list[SourceConfig]) -> list[dict]:
    """The ingest summary of each source's latest raw_sft version (sources never run are skipped)."""
    summaries = []
    for source in sources:
        version = store.latest(RAW_SFT, source.name)
        if version is not None:
            manifest = store.manifest(RAW_SFT, version)
            summaries.append({**manifest.extra, "version": version,
                              "uri": store.uri(RAW_SFT, version)})
    return summaries
