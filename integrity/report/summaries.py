"""Human-readable summaries of what a stage did (markdown for Dagster metadata and the CLI).

Every table is a polars frame first and markdown only in ``markdown_table``, which escapes what
the data could use to break the table (a ``|`` or a line break in a source name or a reason).
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

_BARS = " ▁▂▃▄▅▆▇█"


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(frame: pl.DataFrame, *, right: Iterable[str] = ()) -> str:
    """``frame`` as a markdown table, every cell escaped; columns in ``right`` align right."""
    right = set(right)
    header = "| " + " | ".join(_cell(name) for name in frame.columns) + " |"
    rule = "|" + "|".join("---:" if name in right else "---" for name in frame.columns) + "|"
    rows = ["| " + " | ".join(_cell(value) for value in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])


def counts_table(counts: dict[str, int], *, key: str, total: int | None = None) -> str:
    """A markdown table of ``counts`` (largest first), with each count's share of ``total``."""
    if not counts:
        return markdown_table(pl.DataFrame({key: ["(none)"], "rows": [0]}), right=["rows"])
    total = total or sum(counts.values())
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    frame = pl.DataFrame({key: [name for name, _ in ordered],
                          "rows": [count for _, count in ordered],
                          "share": [f"{count / total:.1%}" for _, count in ordered]})
    return markdown_table(frame, right=["rows", "share"])


def ingest_summary_text(summaries: list[dict]) -> str:
    """A plain-text report of ingest summaries (one per source), as the CLI prints it."""
    blocks = []
    for summary in summaries:
        modality = ", ".join(f"{name} {count}" for name, count in summary["modality"].items())
        reasons = summary["quarantine_by_reason"]
        quarantine = ", ".join(f"{name} {count}" for name, count in reasons.items()) or "none"
        lines = [
            f"{summary['source']} ({summary['origin_format']})",
            f"  rows in {summary['rows_in']} = accepted {summary['accepted']}"
            f" + quarantined {summary['quarantined']} ({summary['quarantine_rate']:.2%})",
            f"  modality: {modality or 'no rows'} (text-only share {summary['text_only_share']:.1%})",
            f"  quarantined by reason: {quarantine}",
        ]
        if summary.get("version"):
            lines.append(f"  version: {summary['version']}  {summary.get('uri', '')}".rstrip())
        if "flagged" in summary:
            flagged = ", ".join(f"{name} {count}" for name, count in summary["flagged"].items())
            lines.append(f"  scored {summary['scored_version']}; rows flagged: {flagged}")
        if "audit" in summary:
            audit = summary["audit"]
            reasons = "; ".join(
                f"{verdict}: " + ", ".join(f"{r} {n}" for r, n in by_reason.items())
                for verdict, by_reason in audit["reasons"].items())
            counts = audit["counts"]
            lines.append(f"  audited {audit['version']}: kept {counts['keep']}, dropped "
                         f"{counts['drop']}, review {counts['review']}"
                         + (f" ({reasons})" if reasons else ""))
            lines.append(f"  report: {audit['report']}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def signal_summary(rows: pl.DataFrame) -> dict[str, dict]:
    """Per numeric or boolean signal column: mean, quantiles, null share, a 10-bin histogram."""
    summary = {}
    for name, dtype in rows.schema.items():
        if name in ("example_id", "pairs") or not (dtype.is_numeric() or dtype == pl.Boolean):
            continue
        values = rows[name].cast(pl.Float64)
        present = values.drop_nulls().drop_nans()
        stats = {"null_share": 1 - present.len() / max(rows.height, 1)}
        if present.len():
            low, high = present.min(), present.max()
            bins = (((present - low) / (high - low) * 10).floor().clip(0, 9).cast(pl.Int32)
                    if high > low else pl.Series([0] * present.len()))
            counts = bins.value_counts().sort(bins.name)
            histogram = [0] * 10
            for index, count in counts.iter_rows():
                histogram[index] = count
            stats |= {"mean": present.mean(), "std": present.std() or 0.0, "min": low,
                      "p05": present.quantile(0.05), "p50": present.quantile(0.5),
                      "p95": present.quantile(0.95), "max": high, "histogram": histogram}
        summary[name] = stats
    return summary


def signal_table(summary: dict[str, dict]) -> str:
    """Markdown table of a signal_summary, with a sparkline histogram per signal."""
    rows = []
    for name, stats in summary.items():
        if "mean" not in stats:
            rows.append((name, "-", "-", "-", "-", f"{stats['null_share']:.0%}", ""))
            continue
        peak = max(stats["histogram"]) or 1
        spark = "".join(_BARS[round(count / peak * 8)] for count in stats["histogram"])
        rows.append((name, f"{stats['mean']:.3g}", f"{stats['p05']:.3g}", f"{stats['p50']:.3g}",
                     f"{stats['p95']:.3g}", f"{stats['null_share']:.0%}",
                     f"`{spark}` ({stats['min']:.3g}..{stats['max']:.3g})"))
    columns = ["signal", "mean", "p05", "p50", "p95", "null", "histogram (min..max)"]
    return markdown_table(pl.DataFrame(rows, schema=columns, orient="row"),
                          right=columns[1:6])


def verdict_table(reasons: dict[str, dict[str, int]], counts: dict[str, int]) -> str:
    """Markdown: rows per verdict, and per reason within each verdict."""
    rows = []
    for verdict in ("keep", "review", "drop"):
        rows.append((f"**{verdict}**", "(all)", counts.get(verdict, 0)))
        rows += [(verdict, reason, count)
                 for reason, count in sorted(reasons.get(verdict, {}).items())]
    return markdown_table(pl.DataFrame(rows, schema=["verdict", "reason", "rows"], orient="row"),
                          right=["rows"])


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def audit_markdown(source: str, audit: dict, all_audits: dict[str, dict], policy) -> str:
    """The audit of one source for Dagster metadata and the CLI: the row invariant, verdicts by
    reason, every source's latest audit side by side, diversity kept, and the thresholds."""
    counts = audit["counts"]
    parts = [
        f"**{_cell(source)}**: {audit['rows_in']} rows in = {counts['keep']} kept + "
        f"{counts['drop']} dropped + {counts['review']} review + {audit['quarantined']} "
        "quarantined",
        verdict_table(audit["reasons"], counts),
    ]
    sources = []
    for name, other in sorted(all_audits.items()):
        other_counts = other["counts"]
        rate = other_counts["drop"] / other["rows_in"] if other["rows_in"] else 0.0
        audited = sum(other_counts.values())
        removed = (other_counts["drop"] + other_counts["review"]) / audited if audited else 0.0
        sources.append((name, other["rows_in"], other_counts["keep"], other_counts["drop"],
                        other_counts["review"], other["quarantined"], f"{rate:.1%}",
                        f"{removed:.1%}"))
    columns = ["source", "rows in", "kept", "dropped", "review", "quarantined", "drop rate",
               "removed"]
    parts.append(markdown_table(pl.DataFrame(sources, schema=columns, orient="row"),
                                right=columns[1:]))
    diversity = audit.get("diversity") or {}
    if diversity:
        rows = [(key.replace("_", " "), str(diversity[key]), str(diversity[f"{key}_kept"]),
                 f"{diversity.get(f'{key}_entropy_bits', 0):.2f}",
                 f"{diversity.get(f'{key}_entropy_bits_kept', 0):.2f}")
                for key in ("question_templates", "image_clusters") if key in diversity]
        if "cluster_coverage" in diversity:
            rows.append(("image rows whose cluster keeps a row",
                         f"{diversity['cluster_coverage']:.1%}", "", "", ""))
        columns = ["diversity", "of", "kept", "entropy bits before", "after"]
        parts.append(markdown_table(pl.DataFrame(rows, schema=columns, orient="row"),
                                    right=columns[1:]))
    if audit.get("most_removed"):
        rows = [(f"{row['kind'].replace('_', ' ')} `{row['key']}`", row["rows"], row["kept"],
                 f"{row['removal_rate']:.0%}") for row in audit["most_removed"]]
        columns = ["most removed slice", "rows", "kept", "removed"]
        parts.append(markdown_table(pl.DataFrame(rows, schema=columns, orient="row"),
                                    right=columns[1:]))
    thresholds = _flatten({"audit": policy.audit.model_dump(), "signals": policy.signals.model_dump()})
    parts.append(f"Policy `{policy.digest()}`:")
    parts.append(markdown_table(pl.DataFrame(
        {"setting": list(thresholds), "value": [str(value) for value in thresholds.values()]})))
    return "\n\n".join(parts)


def calibration_markdown(version: str, estimates: pl.DataFrame, policy) -> str:
    """The auditor's estimated precision and recall per flaw class (all labelled sources), with
    intervals, for the audited_sft metadata."""
    def cell(row: dict | None) -> str:
        if row is None or row["value"] is None:
            return "-"
        return f"{row['value']:.2f} [{row['low']:.2f}, {row['high']:.2f}] (n={row['labelled']})"

    found = {(row["flaw_class"], row["metric"]): row
             for row in estimates.filter(pl.col("scope") == "all").iter_rows(named=True)}
    actions = policy.audit.actions.model_dump()
    rows = [(name, action, cell(found.get((name, "precision"))), cell(found.get((name, "recall"))),
             cell(found.get((name, "rate")))) for name, action in actions.items()]
    rows.append(("any flaw", "", "", "", cell(found.get(("any", "rate")))))
    table = pl.DataFrame(rows, schema=["flaw class", "action", "precision", "recall", "rate"],
                         orient="row")
    return (f"Calibration `{version}` ({policy.calibration.confidence:.0%} intervals):\n\n"
            + markdown_table(table))
