"""Each pipeline stage as one call: inputs in, a committed store version out.

Dagster assets and the CLI both call these, so a version made from the command line is the
same version Dagster makes for the same input.
"""

from __future__ import annotations

import time

import polars as pl

from integrity import ingest, scoring
from integrity.ingest import IngestResult, SourceConfig
from integrity.report import signal_summary
from integrity.store import Manifest, VersionStore

RAW_SFT = "raw_sft"
SCORED_SFT = "scored_sft"
AUDITED_SFT = "audited_sft"
# Files attached beside each audited version (VersionStore.attach).
REPORT_FILE = "report.html"
REVIEW_FILE = "review.jsonl"


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


def latest_raw_summaries(store: VersionStore, sources: list[SourceConfig],
                         policy=None) -> list[dict]:
    """The ingest summary of each source's latest raw_sft version (sources never run are skipped),
    with the flags its latest scored_sft version raises under ``policy``, when one exists."""
    from integrity.policy import flag_rows, load_policy

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


def make_encoder(config, store: VersionStore):
    """An Encoder whose embedding cache lives in the store (``<root>/embeddings``)."""
    from integrity.embedding_cache import EmbeddingCache
    from integrity.encoder import Encoder

    cache = EmbeddingCache(f"{store.root.rstrip('/')}/embeddings",
                           storage_options=store.storage_options)
    return Encoder(config, cache=cache)


def eval_overlap_keys(eval_sets: list[SourceConfig],
                      store: VersionStore) -> tuple[set[str], set[str]]:
    """Image sha256s and normalised questions of the eval sets (read with the same readers)."""
    from integrity.scoring.pairs import qa_pairs

    images, questions = set(), set()
    for eval_set in eval_sets:
        rows = ingest.ingest_source(eval_set, blob_root=blob_root(store)).accepted
        pairs = qa_pairs(rows)
        images |= set(pairs["image_sha256"].drop_nulls())
        questions |= set(pairs["question_norm"])
    return images, questions


def score_to_store(
    source: SourceConfig, raw_version: str, store: VersionStore, *, encoder=None,
    eval_sets: list[SourceConfig] | None = None,
) -> tuple[pl.DataFrame, Manifest, dict]:
    """Score one source's raw_sft version; commit rows ("data") and pairs ("pairs").

    Returns the rows, the manifest and this run's facts (speed, cache use, signal summary):
    when the version already existed, its manifest keeps the facts of the run that made it.
    """
    raw = store.read(RAW_SFT, raw_version)
    started = time.perf_counter()
    eval_images, eval_questions = eval_overlap_keys(eval_sets or [], store)
    pairs = scoring.score_pairs(raw, encoder=encoder, storage_options=source.storage_options,
                                eval_images=eval_images, eval_questions=eval_questions)
    rows = scoring.score_rows(pairs)
    seconds = time.perf_counter() - started
    cache = encoder.cache.stats() if encoder is not None and encoder.cache is not None else {}
    lookups = cache.get("hits", 0) + cache.get("misses", 0)
    extra = {
        "rows_in": raw.height,
        "rows_scored": rows.height,
        "pairs_scored": pairs.height,
        "seconds": seconds,
        "rows_per_second": rows.height / seconds if seconds else None,
        "model_id": getattr(encoder, "model_id", None),
        "cache_hit_rate": cache["hits"] / lookups if lookups else None,
        "images_encoded": getattr(encoder, "images_encoded", 0),
        "texts_encoded": getattr(encoder, "texts_encoded", 0),
        "signals": signal_summary(rows),
    }
    manifest = store.write(
        SCORED_SFT,
        {"data": rows, "pairs": pairs},
        partition=source.name,
        upstream={RAW_SFT: raw_version},
        code_version=scoring.CODE_VERSION,
        params={"model_id": extra["model_id"],
                "eval_sets": sorted(eval_set.uri for eval_set in eval_sets or [])},
        extra=extra,
    )
    return rows, manifest, extra


def latest_audits(store: VersionStore, sources: list[str]) -> dict[str, dict]:
    """source -> the facts (manifest extra) of its latest audited_sft version; sources never
    audited are left out."""
    audits = {}
    for source in sources:
        version = store.latest(AUDITED_SFT, source)
        if version is not None:
            audits[source] = {"version": version, **store.manifest(AUDITED_SFT, version).extra}
    return audits


def audit_to_store(source: str, scored_version: str, store: VersionStore, policy, *,
                   storage_options: dict | None = None,
                   report: bool = True) -> tuple:
    """Verdicts for one scored_sft version; commit kept raw rows ("data") and every verdict
    ("verdicts", with the row's modality and grounding margin for the checks), then attach the
    review rows (JSONL) and, with ``report``, the HTML report beside the version.

    Returns (AuditResult, Manifest, {attachment name: uri}).
    """
    from integrity.audit import CODE_VERSION, audit_rows, diversity_kept
    from integrity.review import load_reviews, review_rows, reviews_digest

    raw_version = store.manifest(SCORED_SFT, scored_version).upstream[RAW_SFT]
    raw_counts = store.manifest(RAW_SFT, raw_version).extra
    pairs = store.read(SCORED_SFT, scored_version, "pairs")
    reviews = [r for r in load_reviews(store, source)
               if r["example_id"] in set(pairs["example_id"])]
    result = audit_rows(pairs, policy, rows_in=raw_counts["rows_in"],
                        quarantined=raw_counts["quarantined"], reviews=reviews)
    raw = store.read(RAW_SFT, raw_version)
    scored = store.read(SCORED_SFT, scored_version)
    margin = [pl.col("grounding_margin")] if "grounding_margin" in scored.columns else []
    verdicts = result.verdicts.join(raw.select("example_id", "modality"), on="example_id",
                                    how="left", maintain_order="left").join(
        scored.select("example_id", *margin), on="example_id", how="left", maintain_order="left")
    kept = raw.join(verdicts.filter(pl.col("verdict") == "keep"), on="example_id", how="semi",
                    maintain_order="left")
    extra = {"rows_in": result.rows_in, "quarantined": result.quarantined,
             "counts": result.counts(), "reasons": result.reasons(),
             "diversity": diversity_kept(pairs, result.verdicts),
             "policy": policy.audit.model_dump(), "human_reviews": len(reviews)}
    manifest = store.write(
        AUDITED_SFT, {"data": kept, "verdicts": verdicts}, partition=source,
        upstream={SCORED_SFT: scored_version, RAW_SFT: raw_version},
        code_version=CODE_VERSION,
        params={"policy": policy.digest(), "reviews": reviews_digest(reviews)}, extra=extra,
    )
    files = {REVIEW_FILE: store.attach(
        AUDITED_SFT, manifest.version, REVIEW_FILE,
        review_rows(verdicts, raw, source).write_ndjson())}
    if report:
        from integrity.report_html import render_audit_report

        page = render_audit_report(source=source, version=manifest.version, raw=raw,
                                   scored=scored, verdicts=verdicts, policy=policy,
                                   storage_options=storage_options)
        files[REPORT_FILE] = store.attach(AUDITED_SFT, manifest.version, REPORT_FILE, page)
    return result, manifest, files


TRAINING_MIX = "training_mix"
TRAINING_CHECKPOINT = "training_checkpoint"
# Exports attached beside each training_mix version: what trainers read unchanged.
MIX_LLAVA_FILE = "mix_llava.json"
MIX_SHAREGPT_NAME = "integrity_mix"  # <name>.json + dataset_info.json (LLaMA-Factory)
CHECKPOINT_FILE = "checkpoint.pt"


def mix_to_store(audited: dict[str, str], store: VersionStore, policy, *,
                 gate: dict[str, dict] | None = None) -> tuple:
    """Build the training mix from the kept rows of ``audited`` (source -> audited_sft version),
    commit it (table "data", in training order) and attach its exports.

    ``gate``: upstream key -> {"version", "checks_passed"}, what the caller's gate verified;
    recorded in the manifest for lineage. Returns (mix, Manifest, {attachment name: uri}).
    """
    import tempfile
    from pathlib import Path

    from integrity import mix as mixing

    inputs = []
    for source, version in sorted(audited.items()):
        scored_version = store.manifest(AUDITED_SFT, version).upstream[SCORED_SFT]
        inputs.append(mixing.MixInput(source=source, audited_version=version,
                                      kept=store.read(AUDITED_SFT, version),
                                      scored=store.read(SCORED_SFT, scored_version)))
    mix = mixing.build_mix(inputs, policy.mix)
    summary = mixing.mix_summary(mix)
    manifest = store.write(
        TRAINING_MIX, {"data": mix},
        upstream={f"{AUDITED_SFT}/{source}": version for source, version in audited.items()},
        code_version=mixing.CODE_VERSION,
        params={"policy": policy.digest(), "mix": policy.mix.model_dump()},
        extra={"summary": summary, "gate": gate or {}},
    )
    files = {}
    with tempfile.TemporaryDirectory() as folder:
        written = [mixing.export_llava(mix, Path(folder) / MIX_LLAVA_FILE),
                   *mixing.export_sharegpt(mix, folder, MIX_SHAREGPT_NAME)]
        for path in written:
            files[path.name] = store.attach(TRAINING_MIX, manifest.version, path.name,
                                            path.read_bytes())
    return mix, manifest, files


def checkpoint_to_store(mix_version: str, checkpoint_path: str, metrics: dict,
                        store: VersionStore, *, trainer: dict,
                        gate: dict[str, dict] | None = None) -> tuple:
    """Commit a trained checkpoint's metrics as a training_checkpoint version naming the mix it
    was trained on, and attach the checkpoint file. Returns (Manifest, checkpoint uri)."""
    import hashlib
    from pathlib import Path

    data = Path(checkpoint_path).read_bytes()
    # Timings vary run to run; the version is the mix, the trainer and what it learned.
    scalars = {key: value for key, value in metrics.items()
               if isinstance(value, int | float | str | bool) and key != "checkpoint_path"
               and not key.endswith("_seconds")}
    manifest = store.write(
        TRAINING_CHECKPOINT, {"metrics": pl.DataFrame([scalars])},
        upstream={TRAINING_MIX: mix_version}, code_version="checkpoint-1",
        params={"trainer": trainer, "checkpoint_sha256": hashlib.sha256(data).hexdigest()},
        extra={"metrics": scalars, "gate": gate or {}},
    )
    return manifest, store.attach(TRAINING_CHECKPOINT, manifest.version, CHECKPOINT_FILE, data)
