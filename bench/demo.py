"""`make demo`'s Dagster part, timed: every source's raw -> scored -> audited, then mix and train.

    python -m bench.demo_wall_time [--rows 2000] [--seed 7] [--skip-baseline]

Ours: ``python -m assets.demo_run`` (one process; every run in process), on a fresh instance and
store; its own lines give the wall time of each run and each asset's rate. Baseline, from the
same bench process on the same corpus: what ``make demo`` did before, one ``dagster asset
materialize`` process per source and one for mix and train, each with Dagster's default
multiprocess executor (a process per step, each importing torch, open_clip, polars and Great
Expectations). Both must leave the same audited versions (content-addressed: same verdicts).
Peak memory: the largest child process's max RSS (resource.getrusage).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _env(work: Path, name: str, sources: Path) -> dict:
    home = work / f"home-{name}"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {**os.environ, "DAGSTER_HOME": str(home), "INTEGRITY_SOURCES": str(sources),
            "INTEGRITY_STORE": str(work / f"store-{name}")}


def _timed(command: list[str], env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def ours(work: Path, sources: Path) -> float:
    seconds, out = _timed([sys.executable, "-m", "assets.demo_run"], _env(work, "ours", sources))
    print(out.rstrip())
    return seconds


def baseline(work: Path, sources: Path) -> float:
    env = _env(work, "baseline", sources)
    seconds, names = _timed([sys.executable, "-m", "assets.partitions"], env)
    for source in names.split():
        took, _ = _timed([str(BIN / "dagster"), "asset", "materialize", "-f", "definitions.py",
                          "--select", "raw_sft,scored_sft,audited_sft", "--partition", source],
                         env)
        print(f"   baseline audit_source[{source}] in {took:.1f} s", flush=True)
        seconds += took
    took, _ = _timed([str(BIN / "dagster"), "asset", "materialize", "-f", "definitions.py",
                      "--select", "training_mix,training_checkpoint"], env)
    print(f"   baseline mix_and_train in {took:.1f} s", flush=True)
    return seconds + took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    from demo.generate import DemoConfig, generate

    work = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    generate(work / "demo", DemoConfig(rows=args.rows, seed=args.seed))
    sources = work / "demo" / "sources.yaml"
    ours_s = ours(work, sources)
    print(f"ours: {ours_s:.1f} s wall (one process, in-process runs)")
    if not args.skip_baseline:
        base_s = baseline(work, sources)
        print(f"baseline: {base_s:.1f} s wall (a process per run and per step); "
              f"ours / baseline = {ours_s / base_s:.2f}x")
        from integrity.store.versions import VersionStore

        stores = [VersionStore(str(work / f"store-{name}")) for name in ("ours", "baseline")]
        for source in ("shapes_llava", "shapes_sharegpt", "shapes_preference"):
            same = stores[0].latest("audited_sft", source) == stores[1].latest("audited_sft",
                                                                               source)
            print(f"   {source}: same audited version both ways: {same}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS of the largest child process: {peak:,.0f} MB")


if __name__ == "__main__":
    main()
