"""Calibrate the auditor: draw a sample, judge it against labels, keep the result."""

from __future__ import annotations


import polars as pl

from integrity.names import (
    CALIBRATION,
    CALIBRATION_REPORT_FILE,
    RAW_SFT,
    SCORED_SFT,
)
from integrity.store.versions import VersionStore


# Bump when a change here changes a calibration's estimates for the same labels.
CALIBRATION_CODE_VERSION = "calibration-1"


def calibration_population(store: VersionStore, sources: list[str], policy) -> pl.DataFrame:
    """Every scored row of each source's latest scored_sft version, with its flags under
    ``policy``: example_id, source, scored_version, one boolean per flaw class."""
    from integrity.decide.policy import flag_rows

    frames = []
    for source in sources:
        version = store.latest(SCORED_SFT, source)
        if version is not None:
            frames.append(flag_rows(store.read(SCORED_SFT, version, "pairs"), policy)
                          .with_columns(source=pl.lit(source), scored_version=pl.lit(version)))
    if not frames:
        from integrity.decide.calibration import CalibrationError

        raise CalibrationError(f"none of {', '.join(sources)} has been scored yet")
    return pl.concat(frames, how="diagonal")


def calibration_sample(store: VersionStore, sources: list[str], policy, *, n: int,
                       seed: int = 0) -> pl.DataFrame:
    """A stratified sample of the latest scored rows of ``sources`` for reviewers: the design
    columns (stratum, its size), what the auditor flags, the dialog, image paths, metadata,
    and an empty ``label`` (clean, or the flaw classes the reviewer sees)."""
    from integrity.decide.calibration import draw_sample

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
    from integrity.decide.calibration import CalibrationError, design_weights, flagged_classes
    from integrity.detect.registry import thresholds
    from integrity.decide.policy import flag_rows

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
    from integrity.decide.calibration import estimate, recommended_threshold, threshold_curve
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
    from integrity.report.calibration import render_calibration_report

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
