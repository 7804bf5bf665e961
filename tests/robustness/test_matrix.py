"""README's bad-input matrix stays true: each test it names exists, each quarantine reason has
a row."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from integrity.ingest.schema import QuarantineReason

REPO = Path(__file__).resolve().parents[2]


def matrix_rows() -> list[list[str]]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Bad input\n", 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split(" | ")]
            for line in section.splitlines() if line.startswith("| ") and "::" in line]


def test_every_test_the_matrix_names_exists():
    rows = matrix_rows()
    assert len(rows) >= 35
    for *_, cited in rows:
        file, name = cited.strip("`").split("::")
        tree = ast.parse((REPO / file).read_text())
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert name in defined, f"README's bad-input matrix names {cited}, which does not exist"


def test_every_quarantine_reason_has_a_row():
    outcomes = " ".join(row[2] for row in matrix_rows())
    named = set(re.findall(r"`([a-z_]+)`", outcomes))
    assert {reason.value for reason in QuarantineReason} - named == set()
