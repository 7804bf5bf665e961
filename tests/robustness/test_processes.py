"""The store under real process failure and real concurrency: a writer killed with SIGKILL in
the middle of a version leaves nothing visible and the next run succeeds; two pipelines on
different sources, in two processes at once, share one store and one embedding cache unharmed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl

from demo.generate import DemoConfig, generate
from integrity.store.versions import STAGING_DIR, VersionStore
from tests.models import DEMO_MODEL

REPO = Path(__file__).resolve().parents[2]
ROWS, ROWS_PER_PART = 400_000, 2_000

# Writes one big version part by part; the parent kills it once parts are on disk.
WRITER = textwrap.dedent(f"""
    import sys
    import polars as pl
    from integrity.store.versions import VersionStore
    frame = pl.DataFrame({{"example_id": [f"row-{{i}}" for i in range({ROWS})],
                          "answer": ["a long enough answer to take disk space"] * {ROWS}}})
    VersionStore(sys.argv[1]).write("raw_sft", {{"data": frame}}, partition="s",
                                   code_version="1", rows_per_part={ROWS_PER_PART})
""")


def _parts_on_disk(root: Path) -> int:
    return len(list((root / "raw_sft" / STAGING_DIR).glob("*/data/*.parquet")))


def test_a_writer_killed_mid_version_leaves_nothing_visible(tmp_path: Path):
    root = tmp_path / "store"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], cwd=REPO)
    deadline = time.monotonic() + 120
    while _parts_on_disk(root) < 3:
        assert writer.poll() is None, "the writer finished before it could be killed"
        assert time.monotonic() < deadline, "the writer wrote no parts in 120 s"
        time.sleep(0.02)
    os.kill(writer.pid, signal.SIGKILL)
    assert writer.wait(timeout=30) == -signal.SIGKILL
    assert _parts_on_disk(root) < ROWS // ROWS_PER_PART  # it really died mid-version

    store = VersionStore(str(root))
    assert store.versions("raw_sft") == []
    assert store.latest("raw_sft", "s") is None
    assert [p.name for p in (root / "raw_sft").iterdir()] == [STAGING_DIR]  # only hidden debris

    rerun = subprocess.run([sys.executable, "-c", WRITER, str(root)], cwd=REPO, timeout=300)
    assert rerun.returncode == 0
    version = store.latest("raw_sft", "s")
    assert store.versions("raw_sft") == [version]
    assert store.manifest("raw_sft", version).tables["data"].rows == ROWS
    assert store.scan("raw_sft", version).select(pl.len()).collect().item() == ROWS


def _cli(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "integrity.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_sources_audited_at_once_share_one_store(tmp_path: Path):
    generate(tmp_path / "demo", DemoConfig(rows=240, seed=5))
    sources = {"model": DEMO_MODEL, "sources": [
        {"name": "one", "uri": "demo/llava.jsonl", "image_root": "demo"},
        {"name": "two", "uri": "demo/sharegpt.json", "format": "sharegpt", "image_root": "demo"},
    ]}
    (tmp_path / "sources.yaml").write_text(json.dumps(sources))
    pipeline = ("ingest", "score", "audit")
    # Both processes run every stage at the same time; both write the same embedding cache.
    for stage in pipeline:
        running = [_cli(stage, "sources.yaml", "--store", "store", "--source", name, cwd=tmp_path)
                   for name in ("one", "two")]
        for process in running:
            output, _ = process.communicate(timeout=600)
            assert process.returncode == 0, f"{stage}: {output}"

    store = VersionStore(str(tmp_path / "store"))
    for name, expected_rows in (("one", 240), ("two", 24)):
        raw = store.latest("raw_sft", name)
        manifest = store.manifest("raw_sft", raw)
        assert manifest.extra["rows_in"] == expected_rows
        audited = store.manifest("audited_sft", store.latest("audited_sft", name))
        counts = audited.extra["counts"]
        assert sum(counts.values()) + audited.extra["quarantined"] == expected_rows
        assert audited.upstream["raw_sft"] == raw
        assert store.read("audited_sft", audited.version).height == counts["keep"]
    assert store.read("raw_sft", store.latest("raw_sft", "one"))["source"].unique().to_list() \
        == ["one"]
    # A third process sees every embedding both wrote: re-scoring encodes nothing.
    rescore = _cli("score", "sources.yaml", "--store", "store", cwd=tmp_path)
    output, _ = rescore.communicate(timeout=600)
    assert rescore.returncode == 0, output
    assert output.count("cache hit rate 100%") == 2, output
