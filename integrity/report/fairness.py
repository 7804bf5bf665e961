"""The over-audit section of the audit report: what was removed per source, per question
template and per image cluster, diversity before and after, and the most removed slices shown
with thumbnails of what they lost (integrity/decide/fairness.py measures; this draws)."""

from __future__ import annotations

import polars as pl

from integrity.decide.fairness import MIN_SLICE_ROWS, SLICE_COLUMNS
from integrity.report.audit_html import media, text, thumbnails
from integrity.ingest.schema import IMAGE_TOKEN
from integrity.detect.pairs import qa_pairs

EXAMPLES_PER_SLICE = 4
SLICE_ROWS_LISTED = 12


def _removal(audit: dict) -> float:
    counts = audit["counts"]
    audited = sum(counts.values())
    return (counts["drop"] + counts["review"]) / audited if audited else 0.0


def _sources_table(source: str, audits: dict[str, dict]) -> str:
    rows = []
    for name, audit in sorted(audits.items()):
        counts = audit["counts"]
        attribute, shown = (' class="this"', f"<b>{text(name)}</b>") if name == source \
            else ("", text(name))
        rows.append(f'<tr{attribute} data-source="{text(name)}"><td>{shown}</td>'
                    f"<td>{sum(counts.values())}</td><td>{counts['keep']}</td>"
                    f"<td>{counts['drop']}</td><td>{counts['review']}</td>"
                    f"<td>{_removal(audit):.1%}</td></tr>")
    return ('<table class="counts per-source"><tr><th>source</th><th>audited</th><th>kept</th>'
            f"<th>dropped</th><th>review</th><th>removed</th></tr>{''.join(rows)}</table>")


def _diversity_table(diversity: dict) -> str:
    rows = []
    for key, label in (("question_templates", "question templates"),
                       ("image_clusters", "image clusters")):
        if key in diversity:
            rows.append(
                f"<tr><td>{label}</td><td>{diversity[key]}</td><td>{diversity[f'{key}_kept']}</td>"
                f"<td>{diversity[f'{key}_entropy_bits']:.2f}</td>"
                f"<td>{diversity[f'{key}_entropy_bits_kept']:.2f}</td></tr>")
    if "cluster_coverage" in diversity:
        rows.append(f"<tr><td>image rows whose cluster keeps a row</td><td colspan=4>"
                    f"{diversity['cluster_coverage']:.1%}</td></tr>")
    if not rows:
        return "<p>No diversity keys (scored without questions or images).</p>"
    return ('<table class="counts diversity"><tr><th>diversity</th><th>before</th><th>kept</th>'
            "<th>entropy before (bits)</th><th>entropy after</th></tr>" + "".join(rows)
            + "</table>")


def _slice_table(slices: pl.DataFrame, kind: str) -> str:
    listed = slices.filter((pl.col("kind") == kind) & (pl.col("rows") >= MIN_SLICE_ROWS)).head(
        SLICE_ROWS_LISTED)
    if listed.is_empty():
        return f"<p>No {kind.replace('_', ' ')} with {MIN_SLICE_ROWS}+ rows.</p>"
    rows = "".join(
        f"<tr><td><code>{text(row['key'], 60)}</code></td><td>{row['rows']}</td>"
        f"<td>{row['kept']}</td><td>{row['dropped']}</td><td>{row['review']}</td>"
        f"<td>{row['removal_rate']:.1%}</td></tr>" for row in listed.iter_rows(named=True))
    return (f'<table class="counts slices" data-kind="{kind}"><tr><th>{kind.replace("_", " ")}'
            "</th><th>rows</th><th>kept</th><th>dropped</th><th>review</th><th>removed</th></tr>"
            f"{rows}</table>")


def _most_removed_cards(raw: pl.DataFrame, sliced: pl.DataFrame, verdicts: pl.DataFrame,
                        top: pl.DataFrame, storage_options: dict, px: int) -> str:
    """Per most removed slice: a heading with its counts and thumbnails of removed rows."""
    if top.is_empty():
        return "<p>No slice lost rows.</p>"
    removed = (sliced.filter(pl.col("verdict") != "keep")
               .join(top.select("kind", "key"), on=["kind", "key"])
               .join(verdicts.select("example_id", "reasons"), on="example_id")
               .sort("kind", "key", "example_id")
               .filter(pl.int_range(pl.len()).over("kind", "key") < EXAMPLES_PER_SLICE))
    first = qa_pairs(raw.filter(pl.col("example_id").is_in(removed["example_id"].implode()))
                     ).filter(pl.col("pair") == 0).select("example_id", "question", "image_uri",
                                                          "image_sha256", "modality")
    examples = removed.join(first, on="example_id", how="left")
    thumbs = thumbnails(examples, storage_options, px)
    blocks = []
    for row in top.iter_rows(named=True):
        shown = examples.filter((pl.col("kind") == row["kind"]) & (pl.col("key") == row["key"]))
        cards = "".join(
            f'<figure class="slice-example" data-example-id="{text(e["example_id"])}">'
            f"{media(e, thumbs, px)}<figcaption>"
            f"{text(e['question'].replace(IMAGE_TOKEN, '').strip(), 120)}<br>"
            + "".join(f'<span class="tag {text(e["verdict"])}">{text(reason)}</span>'
                      for reason in e["reasons"]) + "</figcaption></figure>"
            for e in shown.iter_rows(named=True))
        blocks.append(
            f'<div class="slice" data-kind="{row["kind"]}"><h3>{row["kind"].replace("_", " ")} '
            f"<code>{text(row['key'], 60)}</code>: {row['rows'] - row['kept']} of {row['rows']} "
            f"removed ({row['removal_rate']:.0%})</h3><div class=\"slice-examples\">{cards}</div>"
            "</div>")
    return "".join(blocks)


def fairness_section(*, source: str, raw: pl.DataFrame, verdicts: pl.DataFrame,
                     sliced: pl.DataFrame, slices: pl.DataFrame, audits: dict[str, dict],
                     diversity: dict, storage_options: dict | None = None,
                     thumbnail_px: int = 96) -> str:
    """The over-audit section: ``audits`` (source -> audited manifest extra, this source's
    included), ``sliced`` (``fairness.slice_rows``), ``slices`` (``fairness.removal_by_slice``
    of them), ``diversity`` (``fairness.diversity_change``)."""
    from integrity.decide.fairness import most_removed

    tables = "".join(_slice_table(slices, kind) for kind in SLICE_COLUMNS)
    return (
        '<section class="fairness"><h2>Over-audit and fairness</h2>'
        "<p>Removed: dropped or held for review (training sees neither). A slice removed far more "
        "than the rest is where a detector may misfire on one kind of data.</p>"
        f"{_sources_table(source, audits)}{_diversity_table(diversity)}"
        f'<div class="slice-tables">{tables}</div>'
        f"<h3>Most removed slices ({MIN_SLICE_ROWS}+ rows)</h3>"
        + _most_removed_cards(raw, sliced, verdicts, most_removed(slices), storage_options or {},
                              thumbnail_px)
        + "</section>")
