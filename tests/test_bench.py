"""Every bench script starts the way README runs it (``python -m bench.<name>`` from the clone):
the demo world is not installed, so a bench run as ``python bench/<name>.py`` cannot import it."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", sorted(path.stem for path in (REPO / "bench").glob("*.py")))
def test_the_bench_script_starts(script):
    done = subprocess.run([sys.executable, "-m", f"bench.{script}", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
