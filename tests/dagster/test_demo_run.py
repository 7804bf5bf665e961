"""The demo runs in one process with in-process runs (assets/demo_run.py). Nothing in that
speed-up may change a verdict: the same corpus audited through Dagster in process and through
the CLI gives the same versions and the same verdicts."""

from __future__ import annotations

import polars as pl
from dagster import materialize

from assets.resources import EncoderResource, IntegrityResource
from definitions import defs
from integrity.cli import main
from demo.generate import DemoConfig, generate
from integrity.names import AUDITED_SFT
from integrity.store.versions import VersionStore

AUDIT = ("raw_sft", "scored_sft", "duplicate_index", "audited_sft")


def test_dagster_in_process_and_the_cli_give_the_same_verdicts(tmp_path, instance):
    generate(tmp_path / "demo", DemoConfig(rows=240, seed=3))
    sources = str(tmp_path / "demo" / "sources.yaml")
    integrity = IntegrityResource(sources_file=sources, store_root=str(tmp_path / "dagster"))
    chosen = [item for item in defs.assets if item.key.to_user_string() in AUDIT]
    checks = [check for check in defs.asset_checks
              if next(iter(check.check_keys)).asset_key.to_user_string() in AUDIT]
    names = ["shapes_llava", "shapes_sharegpt"]
    instance.add_dynamic_partitions("sources", names)
    for name in names:
        result = materialize(chosen + checks, partition_key=name, instance=instance,
                             resources={"integrity": integrity,
                                        "encoder": EncoderResource(workers=0)})
        assert result.success
    cli_store = str(tmp_path / "cli")
    for command in ("ingest", "score", "audit"):
        args = [command, sources, "--store", cli_store, "--source", names[0], "--source", names[1]]
        assert main(args + (["--workers", "0"] if command == "score" else [])) == 0
    dagster_side, cli_side = VersionStore(str(tmp_path / "dagster")), VersionStore(cli_store)
    for name in names:
        ours, theirs = dagster_side.latest(AUDITED_SFT, name), cli_side.latest(AUDITED_SFT, name)
        assert ours == theirs  # content-addressed: same rows, same verdicts, same policy
        verdicts = dagster_side.read(AUDITED_SFT, ours, "verdicts").sort("example_id")
        assert verdicts.equals(cli_side.read(AUDITED_SFT, theirs, "verdicts").sort("example_id"))
        assert verdicts.filter(pl.col("verdict") != "keep").height > 0 or name != names[0]


def test_the_demo_runner_runs_every_stage_in_one_process(tmp_path):
    """What `make demo` runs: every source's audit_source, then mix_and_train, in process, on
    a persistent instance; a line per asset with its rate, the wall time of each run."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from demo.rl import write_probe_set

    generate(tmp_path / "demo", DemoConfig())  # the demo's own size: its checkpoint passes
    probe_set = write_probe_set(tmp_path / "demo" / "rl_probe")  # as `python -m demo generate`
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home),
           "INTEGRITY_SOURCES": str(tmp_path / "demo" / "sources.yaml"),
           "INTEGRITY_STORE": str(tmp_path / "store"), "INTEGRITY_TRAINER_COMMAND": "",
           "INTEGRITY_RL_COMMAND": "", "INTEGRITY_RL_PROBE_SET": str(probe_set)}
    done = subprocess.run([sys.executable, "-m", "assets.demo_run"], env=env, text=True,
                          capture_output=True, cwd=Path(__file__).resolve().parents[2],
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert sum(line.startswith("== raw_sft, scored_sft, duplicate_index, audited_sft [") for line in lines) == 3
    assert any(line.strip().startswith("scored_sft") and "rows/s" in line for line in lines)
    assert lines[-1].startswith("== wall time: ")
    assert any(line.strip().startswith("training_rl_probe") and "hacking incidents" in line
               for line in lines)
    store = VersionStore(str(tmp_path / "store"))
    checkpoint = store.latest("training_checkpoint")
    released = store.latest("rl_ready_checkpoint")  # the probe passed: released to RL
    assert released and store.manifest("rl_ready_checkpoint", released).upstream[
        "training_checkpoint"] == checkpoint
    assert "Traceback" not in done.stderr
