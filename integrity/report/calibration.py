"""How good the auditor is, as HTML: estimated precision and recall of every flaw class with
intervals, and one precision/recall-by-threshold curve per thresholded signal with the policy's
cut and the recommended one marked. Used as a section of the audit report and as the page
attached to each calibration version."""

from __future__ import annotations

import polars as pl
from matplotlib.figure import Figure

from integrity.detect.registry import flaw_classes, thresholds
from integrity.decide.policy import Policy
from integrity.report.audit_html import CSS, data_uri, png_bytes, text


def _interval(row: dict | None) -> str:
    if row is None or row["value"] is None:
        return "<td>-</td>"
    return (f'<td title="{row["labelled_hits"]} of {row["labelled"]} labelled rows">'
            f'{row["value"]:.2f} <small>[{row["low"]:.2f}, '
            f'{row["high"]:.2f}]</small></td>')


def estimates_table(estimates: pl.DataFrame, policy: Policy, scope: str = "all") -> str:
    """One row per flaw class: its action, precision, recall and rate, each with its interval."""
    found = {(row["flaw_class"], row["metric"]): row
             for row in estimates.filter(pl.col("scope") == scope).iter_rows(named=True)}
    actions = policy.audit.actions.model_dump()
    rows = "".join(
        f'<tr data-class="{name}"><td>{name}</td><td>{actions[name]}</td>'
        + "".join(_interval(found.get((name, metric))) for metric in ("precision", "recall", "rate"))
        + "</tr>" for name in flaw_classes())
    rate = found.get(("any", "rate"))
    confidence = f"{policy.calibration.confidence:.0%}"
    return (f'<table class="counts calibration" data-scope="{text(scope)}"><tr><th>flaw class</th>'
            f"<th>action</th><th>precision</th><th>recall</th><th>rate</th></tr>{rows}"
            f"<tr><td>any flaw</td><td></td><td></td><td></td>{_interval(rate)}</tr></table>"
            f"<p><small>Estimates [{confidence} interval, from each stratum's Wilson interval] of a "
            "stratified labelled sample, weighted by stratum; hover a cell for its counts."
            "</small></p>")


def _curve_png(signal: str, curve: pl.DataFrame, current: float, recommended: dict | None,
               target: float) -> bytes:
    figure = Figure(figsize=(4.2, 2.6), dpi=100)
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.16, top=0.9)
    axes = figure.subplots()
    axes.plot(curve["threshold"], curve["precision"], drawstyle="steps-post", label="precision",
              color="#3b6fb6")
    if curve["recall"].null_count() < curve.height:
        axes.plot(curve["threshold"], curve["recall"], drawstyle="steps-post", label="recall",
                  color="#c8473f")
    axes.axhline(target, color="#888", linewidth=0.8, linestyle=":", label=f"target {target:g}")
    axes.axvline(current, color="black", linestyle="--", linewidth=1.2,
                 label=f"policy {current:g}")
    if recommended is not None:
        axes.axvline(recommended["threshold"], color="#5b9a68", linewidth=1.5,
                     label=f"recommended {recommended['threshold']:.3g}")
    spec = thresholds()[signal]
    axes.set_title(f"{signal} ({spec.side} cut) -> {spec.flaw_class}", fontsize=9)
    axes.set_xlabel("threshold", fontsize=8)
    axes.set_ylim(-0.02, 1.02)
    axes.tick_params(labelsize=8)
    axes.legend(fontsize=6)
    return png_bytes(figure)


def calibration_section(version: str, judged: dict, policy: Policy) -> str:
    """The auditor's estimated quality and its threshold curves, as one HTML section."""
    target = policy.calibration.target_precision
    figures = []
    skipped = []
    for signal, curve in judged["curves"].items():
        spec = thresholds()[signal]
        if curve.is_empty() or curve["recall"].null_count() == curve.height:
            skipped.append(f"{signal} (no labelled {spec.flaw_class} row)")
            continue
        recommended = judged["recommended"][signal]
        advice = (f"precision {recommended['precision']:.2f} at {recommended['threshold']:.3g} "
                  f"(recall {recommended['recall'] or 0:.2f})" if recommended
                  else f"no cut reaches precision {target:g} on this sample")
        caption = f"{spec.setting} = {spec.value(policy):g}; recommended: {advice}"
        image = _curve_png(signal, curve, spec.value(policy), recommended, target)
        figures.append(f'<figure><img class="curve" data-signal="{signal}" alt="{text(caption)}" '
                       f'src="{data_uri(image)}"><figcaption>{text(caption)}</figcaption></figure>')
    labelled = judged["labelled"]
    return (
        f'<section class="calibration"><h2>Auditor calibration</h2>'
        f"<p>calibration <code>{text(version)}</code> · {labelled.height} labelled rows from "
        f"{labelled['source'].n_unique()} sources · policy <code>{policy.digest()}</code></p>"
        f"{estimates_table(judged['estimates'], policy)}"
        f'<div class="histograms">{"".join(figures)}</div>'
        + (f"<p>No curve for {text(', '.join(skipped))}.</p>" if skipped else "")
        + "</section>"
    )


def render_calibration_report(*, version: str, judged: dict, policy: Policy) -> str:
    """The page attached to a calibration version: the calibration section, then one estimates
    table per source."""
    per_source = "".join(
        f"<h3>{text(source)}</h3>{estimates_table(judged['estimates'], policy, source)}"
        for source in judged["labelled"]["source"].unique().sort())
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Calibration {text(version)}</title><style>{CSS}</style></head><body>",
        calibration_section(version, judged, policy),
        f'<section class="per-source"><h2>Per source</h2>{per_source}</section>',
        "</body></html>",
    ])
