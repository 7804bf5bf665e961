"""The project as a library: the wheel carries what the CLI needs (the default policy, the report
templates) and nothing generic (no demo world), declares ranges, and works installed in a fresh
virtualenv, run outside the clone."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from the tracked files alone: a build/ folder left in the clone would carry files
    # that no longer exist into the wheel (setuptools never empties it).
    tree = tmp_path_factory.mktemp("tree")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True,
                             capture_output=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tree / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(tree)], check=True, cwd=tree)
    [built] = out.glob("sft_integrity-*.whl")
    return built


def test_the_wheel_carries_its_data_and_no_generic_packages(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.startswith("sft_integrity")}
    assert tops == {"integrity"}  # no top-level `assets`, `checks` or `demo` in site-packages
    assert "integrity/policies/default.yaml" in names
    assert "integrity/report/templates/audit.html" in names
    assert not [name for name in names if name.endswith(".pt")]  # the demo's model stays home
    [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
    requires = [line.split(":", 1)[1].strip() for line in
                zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    core = [requirement for requirement in requires if "extra ==" not in requirement]
    assert not [requirement for requirement in requires if "==" in requirement.split(";")[0]]
    declared = {re.split(r"[<>=!~ \[;]", requirement)[0].lower().replace("_", "-")
                for requirement in core}
    assert {"scipy", "numpy", "pyyaml", "pydantic-core", "torch", "open-clip-torch"} <= declared


def test_installed_in_a_fresh_venv_the_cli_audits_a_generated_demo(wheel, tmp_path):
    """``pip install .`` then ``integrity`` from another folder: the default policy comes from
    the package, the demo's model from the path its sources file names. The new venv reaches the dependencies already installed here
    (no network in tests) through a .pth file; the project itself only from the wheel."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1"}

    def integrity(*args: str, tool: str = "integrity") -> str:
        done = subprocess.run([venv / "bin" / tool, *args], cwd=work, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    where = subprocess.run([python, "-c", "import integrity; print(integrity.__file__)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(venv))
    # The demo world runs from the clone (it is not installed); its sources file names the
    # reference model's config and weights there, and the installed product reads them.
    subprocess.run([sys.executable, "-m", "demo", "generate", "--out", str(work / "demo"),
                    "--rows", "120", "--seed", "3"], cwd=REPO, check=True, capture_output=True)
    assert (work / "demo" / "sources.yaml").is_file()
    integrity("ingest", "demo/sources.yaml", "--source", "shapes_llava")
    integrity("score", "demo/sources.yaml", "--source", "shapes_llava", "--json")
    [audit] = json.loads(integrity("audit", "demo/sources.yaml", "--source", "shapes_llava",
                                   "--json"))
    assert sum(audit["counts"].values()) + audit["quarantined"] == audit["rows_in"] > 0
    assert (work / audit["report.html"]).is_file()
