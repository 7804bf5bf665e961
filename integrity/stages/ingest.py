"""Ingest a source into a raw_sft version, and what the latest ones say."""

from __future__ import annotations



from integrity import ingest
from integrity.errors import redact
from integrity.ingest import IngestResult, SourceConfig
from integrity.names import (
    AUDITED_SFT,
    RAW_SFT,
    REPORT_FILE,
    SCORED_SFT,
)
from integrity.store.versions import Manifest, VersionStore


def ingest_to_store(source: SourceConfig, store: VersionStore) -> tuple[IngestResult, Manifest]:
    """Ingest one source and commit accepted rows + quarantine as a raw_sft version."""
    result = ingest.ingest_source(source, blob_root=store.blob_root)
    manifest = store.write(
        RAW_SFT,
        {"data": result.accepted, "quarantine": result.quarantine},
        partition=source.name,
        code_version=ingest.CODE_VERSION,
        params={"uri": redact(source.uri), "format": source.format,
                "image_root": None if source.image_root is None else redact(source.image_root)},
        extra=result.summary(),
    )
    return result, manifest


def latest_raw_summaries(store: VersionStore, sources: list[SourceConfig],
                         policy=None) -> list[dict]:
    """The ingest summary of each source's latest raw_sft version (sources never run are skipped),
    with the flags its latest scored_sft version raises under ``policy``, when one exists."""
    from integrity.decide.policy import flag_rows, load_policy

    policy = policy or load_policy()
    summaries = []
    for source in sources:
        version = store.latest(RAW_SFT, source.name)
        if version is None:
            continue
        summary = {**store.manifest(RAW_SFT, version).extra, "version": version,
                   "uri": store.uri(RAW_SFT, version)}
        scored = store.latest(SCORED_SFT, source.name)
        if scored is not None and store.manifest(SCORED_SFT, scored).upstream[RAW_SFT] == version:
            flags = flag_rows(store.read(SCORED_SFT, scored, "pairs"), policy)
            summary["scored_version"] = scored
            summary["flagged"] = {name: int(flags[name].sum()) for name in flags.columns[1:]
                                  if flags[name].null_count() < flags.height}
            audited = store.latest(AUDITED_SFT, source.name)
            if audited is not None and \
                    store.manifest(AUDITED_SFT, audited).upstream[SCORED_SFT] == scored:
                summary["audit"] = {"version": audited,
                                    **store.manifest(AUDITED_SFT, audited).extra,
                                    "report": store.attachment_uri(AUDITED_SFT, audited,
                                                                   REPORT_FILE)}
        summaries.append(summary)
    return summaries
