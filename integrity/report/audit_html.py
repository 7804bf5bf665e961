"""The HTML audit report of one source: what the audit flagged, shown with the data itself.

One self-contained page: CSS inline, thumbnails and histograms embedded as base64 ``data:``
URIs, so the file opens the same from a local folder, an S3 bucket or a mail attachment. Only the
thumbnails of the examples shown are read and decoded (at most ``examples_per_reason`` per
reason); everything else is polars over the frames given, so a source of thousands of rows
renders in a second or two (the histograms take most of it). Every string that comes from
the data is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from integrity.detect.registry import histogram_signals, thresholds
from integrity.ingest.images import load_rgb
from integrity.decide.policy import Policy
from integrity.detect.pairs import qa_pairs

VERDICT_COLORS = {"keep": "#5b9a68", "review": "#e3a33b", "drop": "#c8473f"}
FLAGGED_VERDICTS = ("drop", "review")
HISTOGRAM_BINS = 40
# Longer questions and answers are cut: the page is for looking, the data is in the store.
MAX_TEXT_CHARS = 1500
THUMBNAIL_QUALITY = 85
THUMBNAIL_WORKERS = 8  # threads reading images: S3 latency, not CPU, bounds thumbnails
_NOT_SCORES = ("example_id", "pairs")

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { margin: 0 0 4px; } h2 { margin: 28px 0 8px; } code { font-size: 12px; }
table.counts { border-collapse: collapse; margin: 8px 16px 8px 0; display: inline-table;
  vertical-align: top; }
table.counts td, table.counts th { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
table.counts th:first-child, table.counts td:first-child { text-align: left; }
.histograms { display: flex; flex-wrap: wrap; gap: 12px; }
.histograms figure { margin: 0; border: 1px solid #ddd; padding: 4px; }
.histograms figcaption { font-size: 12px; color: #555; max-width: 420px; }
.histograms figcaption b { color: #222; }
.key .swatch { display: inline-block; width: 10px; height: 10px; margin: 0 3px 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr));
  gap: 12px; }
.card { display: flex; gap: 10px; border: 1px solid #ccc; border-radius: 6px; padding: 8px; }
.card.drop { border-left: 5px solid #c8473f; } .card.review { border-left: 5px solid #e3a33b; }
.media { flex: 0 0 auto; }
.thumb { display: block; border: 1px solid #eee; }
.image-unavailable, .no-image { display: flex; align-items: center; justify-content: center;
  text-align: center; font-size: 12px; color: #555; background: #f1f1f1; }
.image-unavailable { color: #a33; background: #fbeaea; border: 1px dashed #a33; }
.body { min-width: 0; flex: 1; }
.body p { margin: 0 0 4px; }
.tag { display: inline-block; background: #eee; border-radius: 3px; padding: 0 5px;
  margin-right: 3px; font-size: 12px; }
.tag.drop { background: #f4d3d0; } .tag.review { background: #f8e6c4; }
dl.qa { margin: 4px 0; } dl.qa dt { font-weight: 600; font-size: 12px; color: #555; }
dl.qa dd { margin: 0 0 4px; white-space: pre-wrap; overflow-wrap: anywhere; }
dl.scores { display: grid; grid-template-columns: auto 1fr; gap: 0 8px; font-size: 11px;
  margin: 4px 0 0; color: #444; }
dl.scores dt { font-family: monospace; } dl.scores dd { margin: 0; overflow-wrap: anywhere; }
.slice-examples { display: flex; flex-wrap: wrap; gap: 8px; }
.slice-example { margin: 0; width: 130px; font-size: 11px; }
"""


def render_audit_report(
    *, source: str, version: str, raw: pl.DataFrame, scored: pl.DataFrame,
    verdicts: pl.DataFrame, policy: Policy, storage_options: dict | None = None,
    examples_per_reason: int = 12, thumbnail_px: int = 128, sections: list[str] = (),
    signals: str | None = None, model: dict | None = None,
) -> str:
    """A self-contained HTML page (images inlined as data: URIs, so it works from S3 too).

    ``raw`` is the source's raw_sft rows, ``scored`` its scored_sft rows (model columns may be
    absent), ``verdicts`` the audited verdicts (example_id, verdict, reasons, ...). The page
    holds a header (source, version, policy digest, rows per verdict and per reason),
    histograms of the signals the detector registry names (``histogram_signals``) stacked by verdict with the policy's
    threshold drawn, and one section per reason of dropped or review rows showing its first
    ``examples_per_reason`` rows in example_id order as cards (thumbnail, question, answer,
    caption, verdict, reasons, scores). ``sections`` (HTML) follow the histograms.
    ``signals``: the histograms section when already drawn (``signal_histograms``).
    ``storage_options`` go to fsspec to read images.
    """
    if examples_per_reason < 0:
        raise ValueError(f"examples_per_reason must be >= 0, got {examples_per_reason}")
    if thumbnail_px < 1:
        raise ValueError(f"thumbnail_px must be >= 1, got {thumbnail_px}")
    title = f"Audit report: {source} {version}"
    return "\n".join([
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{text(title)}</title><style>{CSS}</style></head><body>",
        _header(source, version, policy, verdicts, model),
        signals if signals is not None else signal_histograms(scored, verdicts, policy),
        *sections,
        _flagged_sections(raw, scored, verdicts, storage_options or {},
                          examples_per_reason, thumbnail_px),
        "</body></html>",
    ])


def text(value: object, limit: int | None = None) -> str:
    """``value`` as escaped HTML text, cut to ``limit`` characters."""
    shown = "" if value is None else str(value)
    if limit is not None and len(shown) > limit:
        shown = shown[:limit] + "…"
    return html.escape(shown)


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
        return text(value[:12] + "…")
    return text(value, 80)


def _reason_counts(verdicts: pl.DataFrame) -> pl.DataFrame:
    """reason -> rows per verdict and in all, most rows first."""
    exploded = verdicts.select("verdict", "reasons").explode("reasons").drop_nulls("reasons")
    return exploded.group_by("reasons").agg(
        *(pl.col("verdict").eq(verdict).sum().alias(verdict) for verdict in VERDICT_COLORS),
        rows=pl.len(),
    ).sort(["rows", "reasons"], descending=[True, False])


def _model_line(model: dict | None) -> str:
    """Which model scored the rows, and how well it fits them (matched vs shuffled AUC)."""
    if not model or not model.get("model_id"):
        return " · scored without a model"
    fit = model.get("model_fit_auc")
    return (f' · model <code class="model">{text(model["model_id"])}</code>'
            + (f" (fit: matched vs shuffled AUC {fit:.2f})" if fit is not None else ""))


def _header(source: str, version: str, policy: Policy, verdicts: pl.DataFrame,
            model: dict | None = None) -> str:
    counts = dict(verdicts.group_by("verdict").len().iter_rows())
    verdict_rows = "".join(
        f"<tr><td>{text(verdict)}</td><td>{counts.get(verdict, 0)}</td></tr>"
        for verdict in [*VERDICT_COLORS, *sorted(set(counts) - set(VERDICT_COLORS))])
    reasons = _reason_counts(verdicts)
    reason_rows = "".join(
        f"<tr><td>{_reason_link(row)}</td>"
        + "".join(f"<td>{row[verdict]}</td>" for verdict in VERDICT_COLORS)
        + f"<td>{row['rows']}</td></tr>"
        for row in reasons.iter_rows(named=True))
    verdict_heads = "".join(f"<th>{verdict}</th>" for verdict in VERDICT_COLORS)
    return (
        f"<header><h1>Audit report: {text(source)}</h1>"
        f"<p>version <code>{text(version)}</code> · policy <code>{policy.digest()}</code>"
        f" · {verdicts.height} audited rows{_model_line(model)}</p>"
        f'<table class="counts verdicts"><tr><th>verdict</th><th>rows</th></tr>{verdict_rows}'
        "</table>"
        f'<table class="counts reasons"><tr><th>reason</th>{verdict_heads}<th>rows</th></tr>'
        f"{reason_rows or '<tr><td colspan=5>no reasons</td></tr>'}</table></header>"
    )


def _reason_link(row: dict) -> str:
    """The reason's name, linking to its section when it has one (dropped or review rows)."""
    name = text(row["reasons"])
    if any(row[verdict] for verdict in FLAGGED_VERDICTS):
        return f'<a href="#reason-{name}">{name}</a>'
    return name


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def signal_histograms(scored: pl.DataFrame, verdicts: pl.DataFrame, policy: Policy) -> str:
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
        figures.append(
            f'<figure><img class="histogram" data-signal="{name}" alt="{text(f"{name}: {detail}")}"'
            f' src="{data_uri(image)}"><figcaption><b>{text(name)}</b>: {text(detail)}'
            "</figcaption></figure>")
    body = "".join(figures) or "<p>No signal has values.</p>"
    # One key for every histogram: a legend drawn in each figure doubles its render time.
    key = " ".join(f'<span class="swatch" style="background:{color}"></span>{verdict}'
                   for verdict, color in VERDICT_COLORS.items())
    return (f'<section class="signals"><h2>Signals</h2><p class="key">Stacked by verdict: {key};'
            ' dashed line: the policy threshold.</p>'
            f'<div class="histograms">{body}</div></section>')


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


def _flagged_sections(raw: pl.DataFrame, scored: pl.DataFrame, verdicts: pl.DataFrame,
                      storage_options: dict, per_reason: int, px: int) -> str:
    """One section per reason of dropped or review rows, with its first rows as cards."""
    flagged = _by_severity(
        verdicts.filter(pl.col("verdict").is_in(FLAGGED_VERDICTS))
        .select("example_id", "verdict", "reasons", reason=pl.col("reasons"))
        .explode("reason").drop_nulls("reason"), scored)
    if flagged.is_empty():
        return '<section class="flagged"><h2>Flagged examples</h2><p>None.</p></section>'
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
    sections = []
    for reason, total in totals.iter_rows():
        rows = cards.filter(pl.col("reason") == reason)
        body = "".join(_card(row, score_columns, thumbs, px) for row in rows.iter_rows(named=True))
        sections.append(
            f'<section class="reason" id="reason-{text(reason)}"><h2>{text(reason)} '
            f"<small>({total} rows, showing {rows.height})</small></h2>"
            f'<div class="cards">{body}</div></section>')
    return '<section class="flagged"><h2>Flagged examples</h2>' + "".join(sections) + "</section>"


def media(row: dict, thumbs: dict[str, str | Exception], px: int) -> str:
    box = f'style="width:{px}px;height:{px}px"'
    uri = row["image_uri"]
    if row["modality"] != "image-text" or uri is None:
        return f'<div class="no-image" {box}>text only</div>'
    thumb = thumbs.get(uri)
    if isinstance(thumb, str):
        return f'<img class="thumb" alt="{text(uri)}" src="{thumb}">'
    return (f'<div class="image-unavailable" {box} title="{text(uri)}: {text(thumb)}">'
            "image unavailable</div>")


def _card(row: dict, score_columns: list[str], thumbs: dict[str, str | Exception],
          px: int) -> str:
    verdict = row["verdict"]
    reasons = "".join(f'<span class="tag">{text(reason)}</span>' for reason in row["reasons"])
    qa = [("question", row["question"]), ("answer", row["answer"])]
    if row["caption"] is not None:
        qa.append(("caption", row["caption"]))
    qa_html = "".join(f"<dt>{label}</dt><dd>{text(value, MAX_TEXT_CHARS)}</dd>"
                      for label, value in qa)
    scores = ((name, _format(row[name])) for name in score_columns)
    scores_html = "".join(f"<dt>{text(name)}</dt><dd>{value}</dd>" for name, value in scores
                          if value is not None)
    return (
        f'<article class="card {text(verdict)}" data-example-id="{text(row["example_id"])}">'
        f'<div class="media">{media(row, thumbs, px)}</div><div class="body">'
        f'<p><code>{text(row["example_id"])}</code> '
        f'<span class="tag {text(verdict)}">{text(verdict)}</span></p>'
        f"<p>{reasons}</p><dl class=\"qa\">{qa_html}</dl>"
        f'<dl class="scores">{scores_html}</dl></div></article>'
    )
