"""The HTML audit report of one source: what the audit flagged, shown with the data itself.

One self-contained page: CSS inline, thumbnails and histograms embedded as base64 ``data:``
URIs, so the file opens the same from a local folder, an S3 bucket or a mail attachment. Only the
thumbnails of the examples shown are read and decoded (at most ``examples_per_reason`` per
reason); everything else is polars over the frames given, so a source of thousands of rows
renders in a second or two (the histograms take most of it). The page is the templates
``audit.html`` and ``signals.html`` (``integrity/report/templates``), which escape every string
that comes from the data.
"""

from __future__ import annotations

import base64
import io
import math
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
from markupsafe import Markup
from matplotlib.figure import Figure

from integrity.detect.registry import histogram_signals, thresholds
from integrity.ingest.images import load_rgb
from integrity.decide.policy import Policy
from integrity.detect.pairs import qa_pairs
from integrity.report.render import clip, render

VERDICT_COLORS = {"keep": "#5b9a68", "review": "#e3a33b", "drop": "#c8473f"}
FLAGGED_VERDICTS = ("drop", "review")
HISTOGRAM_BINS = 40
# Longer questions and answers are cut: the page is for looking, the data is in the store.
MAX_TEXT_CHARS = 1500
THUMBNAIL_QUALITY = 85
THUMBNAIL_WORKERS = 8  # threads reading images: S3 latency, not CPU, bounds thumbnails
_NOT_SCORES = ("example_id", "pairs")


def render_audit_report(
    *, source: str, version: str, raw: pl.DataFrame, scored: pl.DataFrame,
    verdicts: pl.DataFrame, policy: Policy, storage_options: dict | None = None,
    examples_per_reason: int = 12, thumbnail_px: int = 128, sections: list[Markup] = (),
    signals: Markup | None = None, model: dict | None = None,
) -> str:
    """A self-contained HTML page (images inlined as data: URIs, so it works from S3 too).

    ``raw`` is the source's raw_sft rows, ``scored`` its scored_sft rows (model columns may be
    absent), ``verdicts`` the audited verdicts (example_id, verdict, reasons, ...). The page
    holds a header (source, version, policy digest, rows per verdict and per reason),
    histograms of the signals the detector registry names (``histogram_signals``) stacked by verdict with the policy's
    threshold drawn, and one section per reason of dropped or review rows showing its first
    ``examples_per_reason`` rows in example_id order as cards (thumbnail, question, answer,
    caption, verdict, reasons, scores). ``sections`` follow the histograms: rendered HTML
    (``Markup``, as ``fairness_section`` and ``calibration_section`` return it; a plain string
    would show as text). ``signals``: the histograms section when already drawn
    (``signal_histograms``).
    ``storage_options`` go to fsspec to read images.
    """
    if examples_per_reason < 0:
        raise ValueError(f"examples_per_reason must be >= 0, got {examples_per_reason}")
    if thumbnail_px < 1:
        raise ValueError(f"thumbnail_px must be >= 1, got {thumbnail_px}")
    return str(render(
        "audit.html", title=f"Audit report: {source} {version}",
        **_header(source, version, policy, verdicts, model),
        signals=signals if signals is not None else signal_histograms(scored, verdicts, policy),
        sections=sections, max_text_chars=MAX_TEXT_CHARS, thumbnail_px=thumbnail_px,
        **_flagged_cards(raw, scored, verdicts, storage_options or {}, examples_per_reason,
                         thumbnail_px)))


_HASH = re.compile(r"[0-9a-f]{40,64}")


def _format(value: object) -> str | None:
    """A score as text: floats to 3 decimals (no 2.39e-07), content hashes cut to 12
    characters; None for values not worth a line."""
    if value is None or value is False:
        return None
    if value is True:
        return "yes"
    if isinstance(value, float):
        return f"{value:,.3f}" if math.isfinite(value) else str(value)
    if isinstance(value, str) and _HASH.fullmatch(value):
        return value[:12] + "…"
    return clip(value, 80)


def _reason_counts(verdicts: pl.DataFrame) -> pl.DataFrame:
    """reason -> rows per verdict and in all, most rows first."""
    exploded = verdicts.select("verdict", "reasons").explode("reasons").drop_nulls("reasons")
    return exploded.group_by("reasons").agg(
        *(pl.col("verdict").eq(verdict).sum().alias(verdict) for verdict in VERDICT_COLORS),
        rows=pl.len(),
    ).sort(["rows", "reasons"], descending=[True, False])


def _header(source: str, version: str, policy: Policy, verdicts: pl.DataFrame,
            model: dict | None = None) -> dict:
    """What the header shows: source, version, policy, the model that scored the rows and how
    well it fits them (matched vs shuffled AUC), rows per verdict and per reason."""
    counts = dict(verdicts.group_by("verdict").len().iter_rows())
    reasons = [{"name": row["reasons"], "rows": row["rows"],
                "per_verdict": [row[verdict] for verdict in VERDICT_COLORS],
                # linked to its section, which only dropped or review rows get
                "flagged": any(row[verdict] for verdict in FLAGGED_VERDICTS)}
               for row in _reason_counts(verdicts).iter_rows(named=True)]
    model_id = (model or {}).get("model_id")
    return {
        "source": source, "version": version, "policy_digest": policy.digest(),
        "audited_rows": verdicts.height, "model_id": model_id,
        "model_fit": model.get("model_fit_auc") if model_id else None,
        "verdicts": list(VERDICT_COLORS), "reasons": reasons,
        "verdict_counts": [
            (verdict, counts.get(verdict, 0))
            for verdict in [*VERDICT_COLORS, *sorted(set(counts) - set(VERDICT_COLORS))]],
    }


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def signal_histograms(scored: pl.DataFrame, verdicts: pl.DataFrame,
                      policy: Policy) -> Markup:
    """The report's signals section: one stacked histogram per signal present, by verdict,
    with its threshold as a line."""
    signals = [name for name in histogram_signals() if name in scored.columns]
    limits = thresholds()
    rows = verdicts.select("example_id", "verdict").join(
        scored.select("example_id", *signals), on="example_id", how="left")
    figures = []
    for name in signals:
        values = rows.select("verdict", value=pl.col(name).cast(pl.Float64)).filter(
            pl.col("value").is_not_null() & pl.col("value").is_not_nan())
        if values.is_empty():
            continue
        spec = limits.get(name)
        threshold = spec.value(policy) if spec else None
        image = _histogram_png(values, threshold)
        detail = f"{values.height} rows with a value"
        if spec:
            detail += f"; threshold {spec.setting} = {threshold:g} (flagged when {spec.side} it)"
        figures.append({"signal": name, "detail": detail, "src": data_uri(image)})
    # One key for every histogram: a legend drawn in each figure doubles its render time.
    return render("signals.html", figures=figures, colors=VERDICT_COLORS)


def _histogram_png(values: pl.DataFrame, threshold: float | None) -> bytes:
    low, high = values["value"].min(), values["value"].max()
    if threshold is not None:
        low, high = min(low, threshold), max(high, threshold)
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    figure = Figure(figsize=(4.2, 2.6), dpi=100)
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.95)
    axes = figure.subplots()
    # Stacked by verdict, as one filled step outline per verdict: far cheaper to draw than bars.
    bottom = np.zeros(HISTOGRAM_BINS)
    for verdict, color in VERDICT_COLORS.items():
        counts, _ = np.histogram(values.filter(pl.col("verdict") == verdict)["value"].to_numpy(),
                                 bins=edges)
        axes.stairs(bottom + counts, edges, baseline=bottom, fill=True, color=color)
        bottom = bottom + counts
    if threshold is not None:
        axes.axvline(threshold, color="black", linestyle="--", linewidth=1.2)
    # Name, threshold and colour key are HTML around the image: text is what matplotlib draws
    # slowest, and the page re-renders on every re-audit.
    axes.set_ylabel("rows", fontsize=9)
    axes.tick_params(labelsize=8)
    axes.locator_params(nbins=5)
    return png_bytes(figure)


def png_bytes(figure: Figure) -> bytes:
    """``figure`` rendered as PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _thumbnail(uri: str, sha256: str | None, storage_options: dict, px: int) -> str:
    """data: URI of a JPEG of the image at ``uri`` (checked against the sha256 ingest
    recorded), its longest side at most ``px``."""
    small = load_rgb(uri, sha256=sha256, storage_options=storage_options, draft=(px, px))
    small.thumbnail((px, px))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY)
    return data_uri(buffer.getvalue(), "image/jpeg")


def thumbnails(images: pl.DataFrame, storage_options: dict,
               px: int) -> dict[str, str | Exception]:
    """uri -> thumbnail data URI, or the error that kept it from being read, for the distinct
    ``image_uri`` (with its ``image_sha256``) of ``images``."""
    distinct = images.select("image_uri", "image_sha256").drop_nulls("image_uri").unique(
        "image_uri").sort("image_uri")

    def read(image: tuple[str, str | None]) -> str | Exception:
        try:
            return _thumbnail(image[0], image[1], storage_options, px)
        except Exception as error:  # untrusted files and remote stores fail in many ways
            return error

    items = list(distinct.iter_rows())
    with ThreadPoolExecutor(THUMBNAIL_WORKERS) as pool:
        return dict(zip(distinct["image_uri"], pool.map(read, items), strict=True))


def _by_severity(flagged: pl.DataFrame, scored: pl.DataFrame) -> pl.DataFrame:
    """Flagged (example, reason) rows, the strongest evidence first within each reason: by the
    signal the policy cuts for that flaw class (the flagged side first), then by id."""
    cuts = {}
    for threshold in thresholds().values():
        if threshold.signal in scored.columns:
            cuts.setdefault(threshold.flaw_class, threshold)
    severity = pl.lit(None, dtype=pl.Float64)
    for flaw_class, cut in cuts.items():
        value = pl.col(cut.signal).cast(pl.Float64)
        severity = (pl.when(pl.col("reason") == flaw_class)
                    .then(value if cut.side == ">=" else -value).otherwise(severity))
    signals = sorted({cut.signal for cut in cuts.values()})
    return (flagged.join(scored.select("example_id", *signals), on="example_id", how="left")
            .with_columns(_severity=severity)
            .sort(["reason", "_severity", "example_id"], descending=[False, True, False],
                  nulls_last=True)
            .select(flagged.columns))


def _flagged_cards(raw: pl.DataFrame, scored: pl.DataFrame, verdicts: pl.DataFrame,
                   storage_options: dict, per_reason: int, px: int) -> dict:
    """Per reason of dropped or review rows (most rows first), its first rows as cards, and the
    thumbnails of their images."""
    flagged = _by_severity(
        verdicts.filter(pl.col("verdict").is_in(FLAGGED_VERDICTS))
        .select("example_id", "verdict", "reasons", reason=pl.col("reasons"))
        .explode("reason").drop_nulls("reason"), scored)
    if flagged.is_empty():
        return {"flagged": [], "thumbs": {}}
    totals = flagged.group_by("reason").len().sort(["len", "reason"], descending=[True, False])
    shown = flagged.filter(pl.int_range(pl.len()).over("reason") < per_reason)
    ids = shown["example_id"].unique()
    first_pairs = qa_pairs(raw.filter(pl.col("example_id").is_in(ids.implode()))).filter(
        pl.col("pair") == 0).select("example_id", "question", "answer", "caption", "image_uri",
                                    "image_sha256", "modality")
    taken = {*_NOT_SCORES, *shown.columns, *first_pairs.columns}  # a score never shadows them
    score_columns = [name for name in scored.columns if name not in taken]
    cards = (shown.join(first_pairs, on="example_id", how="left", maintain_order="left")
             .join(scored.select("example_id", *score_columns), on="example_id", how="left",
                   maintain_order="left"))
    thumbs = thumbnails(cards.filter(pl.col("modality") == "image-text"), storage_options, px)
    groups = [{"reason": reason, "total": total,
               "cards": [_card(row, score_columns) for row in
                         cards.filter(pl.col("reason") == reason).iter_rows(named=True)]}
              for reason, total in totals.iter_rows()]
    return {"flagged": groups, "thumbs": thumbs}


def _card(row: dict, score_columns: list[str]) -> dict:
    """A flagged row as its card shows it: ids, texts, the scores worth a line."""
    qa = [("question", row["question"]), ("answer", row["answer"])]
    if row["caption"] is not None:
        qa.append(("caption", row["caption"]))
    scores = [(name, shown) for name in score_columns
              if (shown := _format(row[name])) is not None]
    return {"example_id": row["example_id"], "verdict": row["verdict"],
            "reasons": row["reasons"], "modality": row["modality"],
            "image_uri": row["image_uri"], "qa": qa, "scores": scores}
