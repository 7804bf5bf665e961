"""`make demo` through Dagster in one process: every source's `audit_source` run, then
`mix_and_train`, on the persistent instance of DAGSTER_HOME (the runs, checks and lineage show in
`make ui`).

    python -m assets.demo_run

A process per run (the Dagster CLI) or per step (the default multiprocess executor) imports
torch, open_clip, polars and Great Expectations each time: that start-up was most of the demo's
wall time. Here they are imported once and each run executes in process. Runs launched from the
UI or by a deployment's run launcher keep their own isolation. Prints a line per asset with its
rows and rate, and the wall time of each run; exits 1 naming the failed step and check.
"""

from __future__ import annotations

import sys
import time

import warnings

# Dagster's preview notices (partitioned checks) are not the demo's news.
warnings.filterwarnings("ignore", module=r"dagster\..*")

from dagster import DagsterInstance  # noqa: E402

from assets.partitions import register_sources  # noqa: E402
from definitions import defs  # noqa: E402

# Dagster's console logger at WARNING: the demo's own lines say what happened.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _metadata(result, asset: str) -> dict:
    events = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in events[-1].metadata.items()} if events else {}


def _what_landed(metadata: dict, took: float) -> str | None:
    """One line's worth: rows and rate, or what a model step measured."""
    if "dagster/row_count" in metadata:
        rows = int(metadata["dagster/row_count"])
        return f"{rows:>7,} rows in {took:5.1f} s ({rows / took:,.0f} rows/s)"
    if "incidents" in metadata:
        return (f"{metadata['runs']} RL runs, {metadata['incidents']} hacking incidents, "
                f"in {took:5.1f} s")
    if "accuracy" in metadata:
        return (f"accuracy {metadata['accuracy']:.3f}, visual reliance "
                f"{metadata['visual_reliance']:.3f}, in {took:5.1f} s")
    return f"in {took:5.1f} s" if metadata else None


def _run(job_name: str, label: str, assets: tuple[str, ...], instance: DagsterInstance,
         partition: str | None = None) -> float:
    started = time.perf_counter()
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, partition_key=partition, run_config=QUIET, raise_on_error=False)
    seconds = time.perf_counter() - started
    steps = {stat.step_key: (stat.end_time or 0) - (stat.start_time or 0)
             for stat in instance.get_run_step_stats(result.run_id)}
    for asset in assets:
        took = steps.get(asset)
        line = _what_landed(_metadata(result, asset), took) if took else None
        if line:
            print(f"   {asset:<20} {line}", flush=True)
    failed = [check.check_name for check in result.get_asset_check_evaluations()
              if not check.passed and check.severity.value == "ERROR"]
    if not result.success:
        steps = [event.step_key for event in result.all_events if event.is_step_failure]
        raise SystemExit(f"{label} failed after {seconds:.1f} s: steps {steps}, blocking checks "
                         f"failed: {failed or 'none'} (the run is in the UI: make ui)")
    print(f"   {label} in {seconds:.1f} s", flush=True)
    return seconds


def main() -> int:
    from assets.resources import IntegrityResource, environment_value


    instance = DagsterInstance.get()
    started = time.perf_counter()
    timings = {}
    for source in register_sources(instance, environment_value("integrity", "sources_file", IntegrityResource().sources_file)):
        print(f"== raw_sft, scored_sft, duplicate_index, audited_sft [{source}]", flush=True)
        timings[source] = _run("audit_source", f"audit_source[{source}]",
                               ("raw_sft", "scored_sft", "duplicate_index", "audited_sft"),
                               instance, source)
    print("== training_mix, training_checkpoint, training_rl_probe, rl_ready_checkpoint (the "
          "demo trainer and RL probe run through Dagster Pipes)", flush=True)
    timings["mix_and_train"] = _run("mix_and_train", "mix_and_train",
                                    ("training_mix", "training_checkpoint", "training_rl_probe",
                                     "rl_ready_checkpoint"), instance)
    total = time.perf_counter() - started
    print(f"== wall time: {total:.1f} s ("
          + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
