"""How good the auditor is, as HTML: estimated precision and recall of every flaw class with
intervals, and one precision/recall-by-threshold curve per thresholded signal with the policy's
cut and the recommended one marked. Used as a section of the audit report and as the page
attached to each calibration version. The templates ``calibration_section.html``,
``calibration.html`` and ``estimates.html`` lay it out, escaping every value."""

from __future__ import annotations

import polars as pl
from markupsafe import Markup
from matplotlib.figure import Figure

from integrity.detect.registry import flaw_classes, thresholds
from integrity.decide.policy import Policy
from integrity.report.audit_html import data_uri, png_bytes
from integrity.report.render import render


def _estimates(estimates: pl.DataFrame, policy: Policy, scope: str = "all") -> dict:
    """One row per flaw class (its action and its precision, recall and rate estimates, None
    where there is none), the rate of any flaw, for ``estimates.html``."""
    found = {(row["flaw_class"], row["metric"]): row
             for row in estimates.filter(pl.col("scope") == scope).iter_rows(named=True)}
    actions = policy.audit.actions.model_dump()
    return {
        "scope": scope, "confidence": f"{policy.calibration.confidence:.0%}",
        "classes": [{"name": name, "action": actions[name],
                     "estimates": [found.get((name, metric))
                                   for metric in ("precision", "recall", "rate")]}
                    for name in flaw_classes()],
        "any_rate": found.get(("any", "rate")),
    }


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


def calibration_section(version: str, judged: dict, policy: Policy) -> Markup:
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
        figures.append({"signal": signal, "caption": caption, "src": data_uri(image)})
    labelled = judged["labelled"]
    return render("calibration_section.html", version=version, labelled_rows=labelled.height,
                  sources=labelled["source"].n_unique(), policy_digest=policy.digest(),
                  overall=_estimates(judged["estimates"], policy), figures=figures,
                  skipped=skipped)


def render_calibration_report(*, version: str, judged: dict, policy: Policy) -> str:
    """The page attached to a calibration version: the calibration section, then one estimates
    table per source."""
    return str(render(
        "calibration.html", title=f"Calibration {version}",
        section=calibration_section(version, judged, policy),
        per_source=[_estimates(judged["estimates"], policy, source)
                    for source in judged["labelled"]["source"].unique().sort()]))
