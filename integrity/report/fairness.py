"""The over-audit section of the audit report: what was removed per source, per question
template and per image cluster, diversity before and after, and the most removed slices shown
with thumbnails of what they lost (integrity/decide/fairness.py measures; this draws, through
the template ``fairness.html``, which escapes every value)."""

from __future__ import annotations

import polars as pl
from markupsafe import Markup

from integrity.decide.fairness import MIN_SLICE_ROWS, SLICE_COLUMNS
from integrity.report.audit_html import thumbnails
from integrity.ingest.schema import IMAGE_TOKEN
from integrity.detect.pairs import qa_pairs
from integrity.report.render import render

EXAMPLES_PER_SLICE = 4
SLICE_ROWS_LISTED = 12


def _removal(audit: dict) -> float:
    counts = audit["counts"]
    audited = sum(counts.values())
    return (counts["drop"] + counts["review"]) / audited if audited else 0.0


def _sources(source: str, audits: dict[str, dict]) -> list[dict]:
    """Per source (``source`` marked): rows audited, kept, dropped, held for review, removed."""
    return [{"name": name, "this": name == source, "audited": sum(audit["counts"].values()),
             **{verdict: audit["counts"][verdict] for verdict in ("keep", "drop", "review")},
             "removed": f"{_removal(audit):.1%}"}
            for name, audit in sorted(audits.items())]


def _diversity(diversity: dict) -> list[dict]:
    """Question templates and image clusters before and after, with their entropies."""
    return [{"label": label, "before": diversity[key], "kept": diversity[f"{key}_kept"],
             "entropy": f"{diversity[f'{key}_entropy_bits']:.2f}",
             "entropy_kept": f"{diversity[f'{key}_entropy_bits_kept']:.2f}"}
            for key, label in (("question_templates", "question templates"),
                               ("image_clusters", "image clusters"))
            if key in diversity]


def _slice_table(slices: pl.DataFrame, kind: str) -> dict:
    """The most removed slices of ``kind`` with enough rows to tell."""
    listed = slices.filter((pl.col("kind") == kind) & (pl.col("rows") >= MIN_SLICE_ROWS)).head(
        SLICE_ROWS_LISTED)
    return {"kind": kind, "rows": [{**row, "removed": f"{row['removal_rate']:.1%}"}
                                   for row in listed.iter_rows(named=True)]}


def _most_removed(raw: pl.DataFrame, sliced: pl.DataFrame, verdicts: pl.DataFrame,
                  top: pl.DataFrame, storage_options: dict, px: int) -> dict:
    """Per most removed slice: its counts and its first removed rows, with their thumbnails."""
    if top.is_empty():
        return {"most_removed": [], "thumbs": {}}
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
        blocks.append({
            **row, "removed": f"{row['removal_rate']:.0%}",
            "examples": [{**example,
                          "question": example["question"].replace(IMAGE_TOKEN, "").strip()}
                         for example in shown.iter_rows(named=True)]})
    return {"most_removed": blocks, "thumbs": thumbs}


def fairness_section(*, source: str, raw: pl.DataFrame, verdicts: pl.DataFrame,
                     sliced: pl.DataFrame, slices: pl.DataFrame, audits: dict[str, dict],
                     diversity: dict, storage_options: dict | None = None,
                     thumbnail_px: int = 96) -> Markup:
    """The over-audit section: ``audits`` (source -> audited manifest extra, this source's
    included), ``sliced`` (``fairness.slice_rows``), ``slices`` (``fairness.removal_by_slice``
    of them), ``diversity`` (``fairness.diversity_change``)."""
    from integrity.decide.fairness import most_removed

    coverage = diversity.get("cluster_coverage")
    return render(
        "fairness.html", sources=_sources(source, audits), diversity=_diversity(diversity),
        cluster_coverage=None if coverage is None else f"{coverage:.1%}",
        slice_tables=[_slice_table(slices, kind) for kind in SLICE_COLUMNS],
        min_slice_rows=MIN_SLICE_ROWS, thumbnail_px=thumbnail_px,
        **_most_removed(raw, sliced, verdicts, most_removed(slices), storage_options or {},
                        thumbnail_px))
