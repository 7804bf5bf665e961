"""Arrows point down only: nothing in integrity/ knows Dagster (see DESIGN.md, Layers)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "integrity"


def _is_dagster(module: str | None) -> bool:
    top = (module or "").split(".")[0]
    return top == "dagster" or top.startswith("dagster_")


def dagster_imports(source: str, filename: str = "<string>") -> list[str]:
    """``line: statement`` for every import of dagster or a dagster_* package in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        else:
            continue
        found += [f"{node.lineno}: {name}" for name in names if _is_dagster(name)]
    return found


def test_the_detector_sees_every_import_form():
    source = (
        "import os\n"
        "import dagster as dg\n"
        "from dagster import asset\n"
        "from dagster_aws.s3 import S3Resource\n"
        "def f():\n"
        "    import dagster_pipes\n"
        "from . import dagster\n"  # a relative module of that name is not the package
        "import dagsterish\n"
    )
    assert dagster_imports(source) == ["2: dagster", "3: dagster", "4: dagster_aws.s3",
                                       "6: dagster_pipes"]


def test_integrity_never_imports_dagster():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 10, "integrity/ should hold the domain modules"
    offenders = {
        str(path.relative_to(REPO)): hits
        for path in files
        if (hits := dagster_imports(path.read_text(), str(path)))
    }
    assert offenders == {}


def test_importing_the_core_loads_no_dagster():
    code = (
        "import sys\n"
        "import integrity.ingest, integrity.store.versions, integrity.ingest.images, integrity.decide.policy, "
        "integrity.ingest.expectations\n"
        "loaded = sorted(m for m in sys.modules if m == 'dagster' or m.startswith(('dagster.', "
        "'dagster_')))\n"
        "print(loaded)\n"
        "assert 'integrity.ingest' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def image_opens(source: str, filename: str = "<string>") -> list[int]:
    """Lines that open an image with Pillow: ``Image.open(...)`` or ``PIL.Image.open(...)``,
    or ``open`` imported from PIL.Image."""
    lines = []
    for node in ast.walk(ast.parse(source, filename)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "open" and isinstance(node.func.value, ast.Name | ast.Attribute)
                and (getattr(node.func.value, "id", None) == "Image"
                     or getattr(node.func.value, "attr", None) == "Image")):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "PIL.Image" \
                and any(alias.name == "open" for alias in node.names):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_image_detector_sees_every_form():
    source = ("from PIL import Image\nImage.open(x)\nimport PIL.Image\nPIL.Image.open(y)\n"
              "from PIL.Image import open as pil_open\nopen('file.txt')\nfs.open(z)\n")
    assert image_opens(source) == [2, 4, 5]


def test_only_the_images_module_opens_an_image():
    """One safe image reader (integrity/ingest/images.py: regular files, byte and pixel budgets, format
    allow-list, first frame, the ingest sha256): every other module reads through it."""
    offenders = {str(path.relative_to(REPO)): image_opens(path.read_text(), str(path))
                 for root in (CORE, REPO / "assets", REPO / "checks") for path in root.rglob("*.py")
                 if path != CORE / "ingest" / "images.py"}
    assert {path: lines for path, lines in offenders.items() if lines} == {}


def demo_imports(source: str, filename: str = "<string>") -> list[int]:
    """Lines that import the demo world (the top-level ``demo`` package): in an import
    statement, or named as a dotted string (``importlib.import_module("demo.reference")``)."""
    lines = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value] if re.fullmatch(r"demo(\.\w+)+", node.value) else []
        else:
            continue
        if any(name == "demo" or name.startswith("demo.") for name in names):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_demo_detector_sees_every_form():
    source = ("from demo.generate import generate\nimport demo\n"
              "import demo.model\nimportlib.import_module('demo.reference')\n"
              "from integrity.demos import x\nfrom integrity.decide import policy\n"
              "name = 'demo'\nimport demonstration\n")
    assert demo_imports(source) == [1, 2, 3, 4]


def test_the_product_never_imports_the_demo():
    """The demo world lives beside the product (demo/ imports integrity), never the reverse:
    its commands are ``python -m demo``, its model config and weights are named in its sources
    file, and the wheel carries none of it."""
    assert (REPO / "demo" / "__init__.py").is_file() and not (CORE / "demo").exists()
    offenders = {str(path.relative_to(REPO)): demo_imports(path.read_text(), str(path))
                 for path in CORE.rglob("*.py")}
    assert {path: lines for path, lines in offenders.items() if lines} == {}


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def integrity_imports(path: Path) -> set[str]:
    """The integrity modules ``path`` imports, anywhere in it (a function-level import counts:
    it hides a cycle, it does not remove it)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {module for module in modules if module.split(".")[0] == "integrity"}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle of ``graph`` found by depth-first search (each once, from its smallest name)."""
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for child in sorted(graph.get(node, ())):
            if state.get(child) == "open":
                cycle = stack[stack.index(child):]
                start = cycle.index(min(cycle))
                cycles.append(cycle[start:] + cycle[:start])
            elif child not in state:
                visit(child, [*stack, child])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_the_cycle_finder_finds_a_hidden_cycle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_core_imports_itself_back():
    """review.py and stages.py once imported each other (the second import inside a function)."""
    modules = {_module_of(path): path for path in CORE.rglob("*.py")}
    graph = {name: {imported for imported in integrity_imports(path) if imported in modules
                    and imported != name and not name.startswith(imported + ".")}
             for name, path in modules.items()}
    # A package's __init__ importing its own modules is how a package is built, not a cycle.
    graph = {name: {imported for imported in children
                    if not (modules[name].name == "__init__" and imported.startswith(name + "."))}
             for name, children in graph.items()}
    assert import_cycles(graph) == []


def test_the_core_shows_the_datas_way_in_its_folders():
    """ingest -> detect -> decide -> mix -> report, over the store: few loose modules, and every
    folder says what it is for."""
    loose = sorted(path.name for path in CORE.glob("*.py"))
    assert len(loose) <= 6, loose
    for folder in ("ingest", "detect", "decide", "mix", "report", "store"):
        docstring = ast.get_docstring(ast.parse((CORE / folder / "__init__.py").read_text()))
        assert docstring and len(docstring.split()) >= 20, folder


def test_every_core_module_has_its_test_module():
    """Tests mirror the package: integrity/<folder>/<name>.py is tested in
    tests/<folder>/test_<name>.py (a loose module in tests/test_<name>.py)."""
    missing = []
    for module in sorted(CORE.rglob("*.py")):
        if module.name == "__init__.py":
            continue
        relative = module.relative_to(CORE)
        mirror = REPO / "tests" / relative.parent / f"test_{relative.name}"
        if not mirror.is_file():
            missing.append(f"{relative} -> {mirror.relative_to(REPO)}")
    assert not missing, "core modules without their test module:\n" + "\n".join(missing)
