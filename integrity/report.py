"""Human-readable summaries of what a stage did (markdown for Dagster metadata and the CLI)."""

from __future__ import annotations


def counts_table(counts: dict[str, int], *, key: str, total: int | None = None) -> str:
    """A markdown table of ``counts`` (largest first), with each count's share of ``total``."""
    if not counts:
        return f"| {key} | rows |\n|---|---:|\n| (none) | 0 |"
    total = total or sum(counts.values())
    lines = [f"| {key} | rows | share |", "|---|---:|---:|"]
    for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"| {name} | {count} | {count / total:.1%} |")
    return "\n".join(lines)


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
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
