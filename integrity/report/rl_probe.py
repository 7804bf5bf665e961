"""The RL probe's curves as one figure: reward and visual reliance per step, one line per run,
incidents in red, so a reviewer sees at a glance which runs earned reward by looking away."""

from __future__ import annotations

import polars as pl
from matplotlib.figure import Figure

from integrity.report.audit_html import data_uri, png_bytes

INCIDENT_COLOR, RUN_COLOR = "#c0392b", "#5d6d7e"


def rl_curves_png(curves: pl.DataFrame, summary: pl.DataFrame) -> bytes:
    """Two panels (reward, visual reliance) over steps; ``curves``: run, step, reward, reliance;
    ``summary``: run, incident (integrity.decide.rl_probe)."""
    incident = dict(summary.select("run", "incident").iter_rows())
    figure = Figure(figsize=(7.6, 2.8), dpi=100)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.17, top=0.88, wspace=0.25)
    reward_axes, reliance_axes = figure.subplots(1, 2)
    for (run,), points in curves.sort("step").group_by("run", maintain_order=True):
        hacked = incident.get(run, False)
        style = {"color": INCIDENT_COLOR if hacked else RUN_COLOR,
                 "linewidth": 1.6 if hacked else 0.9, "alpha": 0.95 if hacked else 0.6}
        reward_axes.plot(points["step"].to_numpy(), points["reward"].to_numpy(), **style)
        reliance_axes.plot(points["step"].to_numpy(), points["reliance"].to_numpy(), **style)
    incidents = sum(incident.values())
    for axes, title in ((reward_axes, "reward"), (reliance_axes, "visual reliance")):
        axes.set_title(title, fontsize=9)
        axes.set_xlabel("RL step", fontsize=8)
        axes.tick_params(labelsize=7)
    figure.suptitle(f"{len(incident)} runs, {incidents} hacking incidents (red)", fontsize=9)
    return png_bytes(figure)


def rl_curves_markdown(png: bytes) -> str:
    """The figure as markdown with the PNG inline (Dagster's UI renders it in check metadata)."""
    return f"![RL probe curves]({data_uri(png)})"
