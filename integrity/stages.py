"""Each pipeline stage as one call: inputs in, a committed store version out.

Dagster assets and the CLI both call these, so a version made from the command line is the
same version Dagster makes for the same input.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from integrity import detect, ingest
from integrity.errors import redact
from integrity.ingest import IngestResult, SourceConfig
from integrity.names import (  # noqa: F401  (stages re-exports the names it writes)
    AUDITED_SFT,
    CALIBRATION,
    CALIBRATION_REPORT_FILE,
    CHECKPOINT_FILE,
    MIX_LLAVA_FILE,
    MIX_SHAREGPT_NAME,
    RAW_SFT,
    REPORT_FILE,
    REVIEW_FILE,
    SCORED_SFT,
    TRAINING_CHECKPOINT,
    TRAINING_MIX,
)
from integrity.policy import model_fit_auc
from integrity.report import signal_summary
from integrity.store import Manifest, VersionStore


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
        params={"uri": redact(source.uri), "format": source.format,
                "image_root": None if source.image_root is None else redact(source.image_root)},
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


def make_encoder(config, store: VersionStore, *, progress: bool = False):
    """An Encoder whose embedding cache lives in the store (``<root>/embeddings``)."""
    from integrity.embedding_cache import EmbeddingCache
    from integrity.encoder import Encoder

    cache = EmbeddingCache(f"{store.root.rstrip('/')}/embeddings",
                           storage_options=store.storage_options)
    return Encoder(config, cache=cache, progress=progress)


def eval_overlap_keys(eval_sets: list[SourceConfig],
                      store: VersionStore) -> tuple[set[str], set[str]]:
    """Image sha256s and normalised questions of the eval sets (read with the same readers)."""
    from integrity.detect.pairs import qa_pairs

    images, questions = set(), set()
    for eval_set in eval_sets:
        result = ingest.ingest_source(eval_set, blob_root=blob_root(store))
        if result.accepted.height == 0:  # an overlap of 0 against nothing would be a lie
            reasons = ", ".join(f"{reason}: {count}"
                                for reason, count in result.quarantine_by_reason().items())
            raise ingest.IngestError(
                f"eval set {eval_set.name} ({eval_set.uri}) yields no row to compare against: "
                f"{result.records_in} records, quarantined {reasons or 'none'}")
        pairs = qa_pairs(result.accepted)
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
    pairs = detect.score_pairs(raw, encoder=encoder, storage_options=source.storage_options,
                                eval_images=eval_images, eval_questions=eval_questions)
    rows = detect.score_rows(pairs)
    seconds = time.perf_counter() - started
    fit_auc, fit_pairs = model_fit_auc(pairs, raw)
    cache = encoder.cache.stats() if encoder is not None and encoder.cache is not None else {}
    lookups = cache.get("hits", 0) + cache.get("misses", 0)
    extra = {
        "rows_in": raw.height,
        "rows_scored": rows.height,
        "pairs_scored": pairs.height,
        "seconds": seconds,
        "rows_per_second": rows.height / seconds if seconds else None,
        "model_id": getattr(encoder, "model_id", None),
        "model": None if encoder is None else {
            "name": encoder.config.model, "pretrained": encoder.config.pretrained,
            "device": str(encoder.device), "precision": encoder.config.precision},
        "model_fit_auc": fit_auc,
        "model_fit_pairs": fit_pairs,
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
        code_version=detect.CODE_VERSION,
        params={"model_id": extra["model_id"],
                "eval_sets": sorted(redact(eval_set.uri) for eval_set in eval_sets or [])},
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
                   storage_options: dict | None = None, report: bool = True,
                   calibration: tuple[str, dict] | None = None,
                   peers: dict[str, dict] | None = None) -> tuple:
    """Verdicts for one scored_sft version; commit kept raw rows ("data") and every verdict
    ("verdicts", with the row's modality and grounding margin for the checks), then attach the
    review rows (JSONL) and, with ``report``, the HTML report beside the version: with the
    over-audit section (removal per source of ``peers``, ``latest_audits`` of the other sources,
    per template and per image cluster; diversity before and after) and, when given,
    ``calibration`` (``current_calibration(store, policy)``).

    Returns (AuditResult, Manifest, {attachment name: uri}).
    """
    from integrity.audit import CODE_VERSION, audit_rows
    from integrity.fairness import diversity_change, most_removed, removal_by_slice, slice_rows
    from integrity.review import load_reviews, review_rows, reviews_digest

    raw_version = store.manifest(SCORED_SFT, scored_version).upstream[RAW_SFT]
    raw_counts = store.manifest(RAW_SFT, raw_version).extra
    pairs = store.read(SCORED_SFT, scored_version, "pairs")
    scored_ids = set(pairs["example_id"])  # once: per review it cost 161 s for 200 reviews
    reviews = [r for r in load_reviews(store, source) if r["example_id"] in scored_ids]
    result = audit_rows(pairs, policy, rows_in=raw_counts["rows_in"],
                        quarantined=raw_counts["quarantined"], reviews=reviews)
    raw = store.read(RAW_SFT, raw_version)
    scored = store.read(SCORED_SFT, scored_version)
    margin = [pl.col("grounding_margin")] if "grounding_margin" in scored.columns else []
    verdicts = result.verdicts.join(raw.select("example_id", "modality"), on="example_id",
                                    how="left", maintain_order="left").join(
        scored.select("example_id", *margin), on="example_id", how="left", maintain_order="left")
    if report:
        from integrity.report_html import render_audit_report, signal_histograms

    with ThreadPoolExecutor(max_workers=1) as pool:
        # matplotlib draws the histograms on one core (holding the GIL) while polars writes the
        # version and builds the rest of the report on the other: a re-audit is mostly report.
        signals = pool.submit(signal_histograms, scored, verdicts, policy) if report else None
        kept = raw.join(verdicts.filter(pl.col("verdict") == "keep"), on="example_id", how="semi",
                        maintain_order="left")
        sliced = slice_rows(pairs, result.verdicts)
        slices = removal_by_slice(sliced)
        extra = {"rows_in": result.rows_in, "quarantined": result.quarantined,
                 "counts": result.counts(), "reasons": result.reasons(),
                 "diversity": diversity_change(slices),
                 "most_removed": most_removed(slices).to_dicts(),
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
            from integrity.report_fairness import fairness_section

            sections = [fairness_section(
                source=source, raw=raw, verdicts=verdicts, sliced=sliced, slices=slices,
                audits={**(peers or {}), source: extra}, diversity=extra["diversity"],
                storage_options=storage_options)]
            if calibration is not None:
                from integrity.report_calibration import calibration_section

                sections.append(calibration_section(*calibration, policy))
            scored_extra = store.manifest(SCORED_SFT, scored_version).extra
            page = render_audit_report(source=source, version=manifest.version, raw=raw,
                                       scored=scored, verdicts=verdicts, policy=policy,
                                       storage_options=storage_options, sections=sections,
                                       signals=signals.result(), model=scored_extra)
            files[REPORT_FILE] = store.attach(AUDITED_SFT, manifest.version, REPORT_FILE, page)
    return result, manifest, files




def mix_to_store(audited: dict[str, str], store: VersionStore, policy, *,
                 gate: dict[str, dict] | None = None,
                 eval_sets: list[SourceConfig] | None = None) -> tuple:
    """Build the training mix from the kept rows of ``audited`` (source -> audited_sft version),
    run its blocking checks, and commit it (table "data", in training order).

    Only a mix whose blocking checks all pass is published (the store's latest mix) with its
    exports attached; a failed mix is kept as a version to inspect, never latest, and no export
    of it is written. ``gate``: upstream key -> {"version", "checks_passed"}, what the caller's
    gate verified, recorded for lineage. Returns (mix, Manifest, {attachment name: uri}).
    """
    import tempfile
    from pathlib import Path

    from integrity import mix as mixing
    from integrity.gate import TRAINING_MIX_CHECKS, MixUnderReview

    inputs = []
    for source, version in sorted(audited.items()):
        scored_version = store.manifest(AUDITED_SFT, version).upstream[SCORED_SFT]
        inputs.append(mixing.MixInput(source=source, audited_version=version,
                                      kept=store.read(AUDITED_SFT, version),
                                      scored=store.read(SCORED_SFT, scored_version)))
    mix = mixing.build_mix(inputs, policy.mix)
    upstream = {f"{AUDITED_SFT}/{source}": version for source, version in audited.items()}
    review = MixUnderReview(mix, upstream, store, policy, list(eval_sets or []))
    verdicts = {name: check(review) for name, check in TRAINING_MIX_CHECKS.items()}
    failed = sorted(name for name, verdict in verdicts.items() if not verdict.passed)
    with tempfile.TemporaryDirectory() as folder:
        exports = [] if failed else [
            mixing.export_llava(mix, Path(folder) / MIX_LLAVA_FILE,
                                multi_image=policy.mix.llava_multi_image),
            mixing.export_sharegpt(mix, folder, MIX_SHAREGPT_NAME)]
        manifest = store.write(
            TRAINING_MIX, {"data": mix}, upstream=upstream,
            code_version=mixing.CODE_VERSION,
            params={"policy": policy.digest(), "mix": policy.mix.model_dump(),
                    "eval_sets": sorted(redact(eval_set.uri) for eval_set in eval_sets or [])},
            extra={"summary": mixing.mix_summary(mix), "gate": gate or {},
                   "checks": {name: {"passed": verdict.passed,
                                     "description": verdict.description}
                              for name, verdict in verdicts.items()},
                   "failed_checks": failed,
                   "exports": {export.path.name: export.facts() for export in exports}},
            publish=not failed,
        )
        files = {}
        for export in exports:
            for path in export.files:
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


# Bump when a change here changes a calibration's estimates for the same labels.
CALIBRATION_CODE_VERSION = "calibration-1"


def calibration_population(store: VersionStore, sources: list[str], policy) -> pl.DataFrame:
    """Every scored row of each source's latest scored_sft version, with its flags under
    ``policy``: example_id, source, scored_version, one boolean per flaw class."""
    from integrity.policy import flag_rows

    frames = []
    for source in sources:
        version = store.latest(SCORED_SFT, source)
        if version is not None:
            frames.append(flag_rows(store.read(SCORED_SFT, version, "pairs"), policy)
                          .with_columns(source=pl.lit(source), scored_version=pl.lit(version)))
    if not frames:
        from integrity.calibration import CalibrationError

        raise CalibrationError(f"none of {', '.join(sources)} has been scored yet")
    return pl.concat(frames, how="diagonal")


def calibration_sample(store: VersionStore, sources: list[str], policy, *, n: int,
                       seed: int = 0) -> pl.DataFrame:
    """A stratified sample of the latest scored rows of ``sources`` for reviewers: the design
    columns (stratum, its size), what the auditor flags, the dialog, image paths, metadata,
    and an empty ``label`` (clean, or the flaw classes the reviewer sees)."""
    from integrity.calibration import draw_sample

    population = calibration_population(store, sources, policy)
    sample = draw_sample(population, n=n, seed=seed).join(
        population.select("example_id", "source", "scored_version"),
        on=["example_id", "source"], how="left", maintain_order="left")
    context = []
    for source in sample["source"].unique(maintain_order=True):
        raw_version = store.manifest(SCORED_SFT, sample.filter(pl.col("source") == source)
                                     ["scored_version"][0]).upstream[RAW_SFT]
        ids = sample.filter(pl.col("source") == source)["example_id"].implode()
        context.append(store.scan(RAW_SFT, raw_version)
                       .filter(pl.col("example_id").is_in(ids))
                       .select("source", "example_id", "turns", "image_uris", "metadata")
                       .collect())
    return sample.join(pl.concat(context), on=["source", "example_id"], how="left",
                       maintain_order="left").with_columns(label=pl.lit(None, dtype=pl.String))


def labelled_rows(store: VersionStore, labels: pl.DataFrame, policy) -> pl.DataFrame:
    """The labelled rows with design weights, the classes the auditor flags them with under
    ``policy`` and their row-level signals, from each source's latest scored_sft version."""
    from integrity.calibration import CalibrationError, design_weights, flagged_classes
    from integrity.detect.registry import thresholds
    from integrity.policy import flag_rows

    weighted = design_weights(labels)
    frames = []
    for source in weighted["source"].unique(maintain_order=True):
        version = store.latest(SCORED_SFT, source)
        if version is None:
            raise CalibrationError(f"labelled source {source!r} has no scored_sft version")
        ids = weighted.filter(pl.col("source") == source)["example_id"].implode()
        pairs = store.scan(SCORED_SFT, version, "pairs").filter(
            pl.col("example_id").is_in(ids)).collect()
        flags = flag_rows(pairs, policy)
        rows = store.scan(SCORED_SFT, version).filter(pl.col("example_id").is_in(ids))
        signals = [name for name in thresholds() if name in rows.collect_schema()]
        frames.append(flags.select("example_id", flagged=flagged_classes(flags)).join(
            rows.select("example_id", *signals).collect(), on="example_id", how="left")
            .with_columns(source=pl.lit(source), scored_version=pl.lit(version)))
    judged = weighted.join(pl.concat(frames, how="diagonal"), on=["source", "example_id"],
                           how="left")
    unknown = judged.filter(pl.col("flagged").is_null())
    if unknown.height:
        raise CalibrationError(
            f"{unknown.height} labelled example ids are not in their source's latest scored "
            f"version: {', '.join(unknown['example_id'].head(5))}")
    return judged


def judge_auditor(store: VersionStore, labels: pl.DataFrame, policy) -> dict:
    """The auditor under ``policy``, judged on ``labels``: {"labelled": rows, "estimates",
    "curves" (every thresholded signal swept), "recommended" (signal -> cut or None)}."""
    from integrity.calibration import estimate, recommended_threshold, threshold_curve
    from integrity.detect.registry import thresholds

    labelled = labelled_rows(store, labels, policy)
    curves = {name: threshold_curve(labelled, name) for name in thresholds()
              if name in labelled.columns}
    target = policy.calibration.target_precision
    return {
        "labelled": labelled,
        "estimates": estimate(labelled, confidence=policy.calibration.confidence),
        "curves": curves,
        "recommended": {name: recommended_threshold(curve, target_precision=target)
                        for name, curve in curves.items()},
    }


def calibrate_to_store(store: VersionStore, labels: pl.DataFrame, policy) -> tuple:
    """Judge the auditor on ``labels`` and commit a calibration version (tables labels,
    estimates, curves) with its HTML report attached. Returns (judgement, Manifest, report uri).
    """
    from integrity.report_calibration import render_calibration_report

    judged = judge_auditor(store, labels, policy)
    curves = pl.concat([curve.with_columns(signal=pl.lit(name))
                        for name, curve in judged["curves"].items()], how="diagonal") \
        if judged["curves"] else pl.DataFrame(schema={"signal": pl.String})
    scored = dict(judged["labelled"].select("source", "scored_version").unique().iter_rows())
    estimates = judged["estimates"]
    overall = estimates.filter(pl.col("scope") == "all")
    manifest = store.write(
        CALIBRATION, {"labels": labels, "estimates": estimates, "curves": curves},
        upstream={f"{SCORED_SFT}/{source}": version for source, version in sorted(scored.items())},
        code_version=CALIBRATION_CODE_VERSION, params={"policy": policy.digest()},
        extra={"rows_labelled": judged["labelled"].height, "rows_in_sample": labels.height,
               "estimates": overall.to_dicts(), "recommended": judged["recommended"],
               "calibration_policy": policy.calibration.model_dump()},
    )
    page = render_calibration_report(version=manifest.version, judged=judged, policy=policy)
    return judged, manifest, store.attach(CALIBRATION, manifest.version,
                                          CALIBRATION_REPORT_FILE, page)


def current_calibration(store: VersionStore, policy) -> tuple[str, dict] | None:
    """(version, judgement) of the latest calibration's labels re-judged under ``policy`` and
    the latest scored versions (no model calls), or None when nothing was ever calibrated."""
    version = store.latest(CALIBRATION)
    if version is None:
        return None
    return version, judge_auditor(store, store.read(CALIBRATION, version, "labels"), policy)
