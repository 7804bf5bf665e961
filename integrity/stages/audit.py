"""Audit a scored_sft version into an audited_sft version, its report and review rows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import polars as pl

from integrity.names import (
    AUDITED_SFT,
    RAW_SFT,
    REPORT_FILE,
    REVIEW_FILE,
    SCORED_SFT,
)
from integrity.store.versions import VersionStore


def latest_audits(store: VersionStore, sources: list[str]) -> dict[str, dict]:
    """source -> the facts (manifest extra) of its latest audited_sft version; sources never
    audited are left out."""
    audits = {}
    for source in sources:
        version = store.latest(AUDITED_SFT, source)
        if version is not None:
            audits[source] = {"version": version, **store.manifest(AUDITED_SFT, version).extra}
    return audits


def cross_source_copies(store: VersionStore, source: str, scored_version: str,
                        sources: list[str], policy) -> pl.DataFrame:
    """example_id, duplicate_of: ``source``'s rows that another of ``sources`` holds first,
    from the duplicate index (``current_matches`` over every source indexed so far; the index
    of ``source`` must be for ``scored_version``)."""
    from integrity.decide.audit import copies_of_better_sources
    from integrity.detect.cross_source import current_matches, indexed_scored_versions

    scored = indexed_scored_versions(store, [name for name in sources if name != source])
    copies = copies_of_better_sources(
        current_matches(store, {**scored, source: scored_version}), policy)
    return copies.filter(pl.col("source") == source).drop("source")


def _copied_from(verdicts: pl.DataFrame) -> dict[str, int]:
    """Other source -> how many rows were dropped as its copies."""
    copied = verdicts.drop_nulls("duplicate_of").select(
        pl.col("duplicate_of").str.split("/").list.first().alias("source"))
    return dict(sorted(copied.group_by("source").len().iter_rows()))


def audit_to_store(source: str, scored_version: str, store: VersionStore, policy, *,
                   storage_options: dict | None = None, report: bool = True,
                   calibration: tuple[str, dict] | None = None,
                   peers: dict[str, dict] | None = None,
                   copies: pl.DataFrame | None = None) -> tuple:
    """Verdicts for one scored_sft version; commit kept raw rows ("data") and every verdict
    ("verdicts", with the row's modality and grounding margin for the checks), then attach the
    review rows (JSONL) and, with ``report``, the HTML report beside the version: with the
    over-audit section (removal per source of ``peers``, ``latest_audits`` of the other sources,
    per template and per image cluster; diversity before and after) and, when given,
    ``calibration`` (``current_calibration(store, policy)``). ``copies``: this source's rows
    that other sources hold first (``cross_source_copies``), dropped as ``duplicate``.

    Returns (AuditResult, Manifest, {attachment name: uri}).
    """
    from integrity.decide.audit import CODE_VERSION, audit_rows
    from integrity.decide.fairness import diversity_change, most_removed, removal_by_slice, slice_rows
    from integrity.decide.review import load_reviews, review_rows, reviews_digest

    raw_version = store.manifest(SCORED_SFT, scored_version).upstream[RAW_SFT]
    raw_counts = store.manifest(RAW_SFT, raw_version).extra
    pairs = store.read(SCORED_SFT, scored_version, "pairs")
    reviews = load_reviews(store, source)
    # The reviewed ids the pairs hold, by a polars lookup: a set per review cost 161 s for 200
    # reviews of 1M pairs, and one set of every id 0.33 s; this costs 0.01 s.
    scored_ids = set(pairs.filter(pl.col("example_id").is_in(
        [review["example_id"] for review in reviews]))["example_id"])
    reviews = [review for review in reviews if review["example_id"] in scored_ids]
    result = audit_rows(pairs, policy, rows_in=raw_counts["rows_in"],
                        quarantined=raw_counts["quarantined"], reviews=reviews, copies=copies)
    raw = store.read(RAW_SFT, raw_version)
    scored = store.read(SCORED_SFT, scored_version)
    margin = [pl.col("grounding_margin")] if "grounding_margin" in scored.columns else []
    verdicts = result.verdicts.join(raw.select("example_id", "modality"), on="example_id",
                                    how="left", maintain_order="left").join(
        scored.select("example_id", *margin), on="example_id", how="left", maintain_order="left")
    if report:
        from integrity.report.audit_html import render_audit_report, signal_histograms

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
                 "policy": policy.audit.model_dump(), "human_reviews": len(reviews),
                 "copies_of_other_sources": _copied_from(result.verdicts)}
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
            from integrity.report.fairness import fairness_section

            sections = [fairness_section(
                source=source, raw=raw, verdicts=verdicts, sliced=sliced, slices=slices,
                audits={**(peers or {}), source: extra}, diversity=extra["diversity"],
                storage_options=storage_options)]
            if calibration is not None:
                from integrity.report.calibration import calibration_section

                sections.append(calibration_section(*calibration, policy))
            scored_extra = store.manifest(SCORED_SFT, scored_version).extra
            page = render_audit_report(source=source, version=manifest.version, raw=raw,
                                       scored=scored, verdicts=verdicts, policy=policy,
                                       storage_options=storage_options, sections=sections,
                                       signals=signals.result(), model=scored_extra)
            files[REPORT_FILE] = store.attach(AUDITED_SFT, manifest.version, REPORT_FILE, page)
    return result, manifest, files
