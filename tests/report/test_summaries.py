"""Markdown summaries are tables built from frames: data cannot break them."""

import polars as pl

from integrity.decide.policy import load_policy
from integrity.report.summaries import audit_markdown, counts_table, markdown_table


def _rows(markdown: str) -> list[list[str]]:
    """Cells of each table row, split on unescaped pipes (what a markdown renderer does)."""
    import re

    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            for line in markdown.splitlines() if line.startswith("|")]


def test_a_pipe_or_a_line_break_in_the_data_stays_inside_its_cell():
    table = counts_table({"web|crawl": 3, "two\nlines": 1}, key="source")
    rows = _rows(table)
    assert all(len(row) == 3 for row in rows)
    assert rows[2][0] == "web\\|crawl" and rows[3][0] == "two lines"


def test_every_frame_renders_with_its_alignment():
    table = markdown_table(pl.DataFrame({"name": ["a"], "n": [1]}), right=["n"])
    assert table.splitlines() == ["| name | n |", "|---|---:|", "| a | 1 |"]


def test_the_audit_summary_keeps_its_tables_whole_with_hostile_source_names():
    audit = {"rows_in": 3, "quarantined": 0, "counts": {"keep": 1, "drop": 1, "review": 1},
             "reasons": {"drop": {"dup|licate": 1}}}
    hostile = "a|b\n| injected | row |"
    markdown = audit_markdown(hostile, audit, {hostile: audit, "plain": audit}, load_policy())
    widths = {len(row) for row in _rows(markdown)}
    # One width per table: verdicts (3), sources (8), policy settings (2); no row spills over.
    assert widths == {3, 8, 2}
    assert "| injected | row |" not in markdown
