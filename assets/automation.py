"""Automation that respects the gate: consumers materialize only after their upstream's
blocking checks passed (layer b of the gate; the in-code gate in gate.py is layer c), and
the job that runs a source end to end (layer a: gate asset, its checks and consumers in one run).
"""

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from assets.partitions import sources_partitions

# eager() alone would also fire after a failed check (see shared NOTES): require them passed.
GATED_EAGER = AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed()

audit_job = define_asset_job(
    "audit_source",
    selection=AssetSelection.keys("raw_sft", "scored_sft", "duplicate_index", "audited_sft"),
    partitions_def=sources_partitions,
    description="Ingest, score, index and audit one source in one run: a failed blocking "
                "check stops every later step of the run.",
)

train_job = define_asset_job(
    "mix_and_train",
    selection=AssetSelection.keys("training_mix", "training_checkpoint", "training_rl_probe",
                                  "rl_ready_checkpoint"),
    description="Mix every source's latest passed audit, train on it, probe what RL does to the "
                "checkpoint and release it to RL, in one run: a failed blocking check stops "
                "every later step of the run, and the in-code gate refuses a mix, checkpoint or "
                "probe whose blocking checks failed in any earlier run.",
)

mix_job = define_asset_job(
    "build_mix",
    selection=AssetSelection.keys("training_mix"),
    description="Mix the latest passed audit of every source, with the mix's checks.",
)

audit_automation = AutomationConditionSensorDefinition(
    "audit_automation",
    target=AssetSelection.keys("scored_sft", "duplicate_index", "audited_sft"),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)


@schedule(job=audit_job, cron_schedule="0 3 * * *", default_status=DefaultScheduleStatus.STOPPED)
def nightly_audit(context: ScheduleEvaluationContext):
    """Re-run every registered source end to end each night (turn on in the UI)."""
    for source in context.instance.get_dynamic_partitions(sources_partitions.name):
        yield RunRequest(partition_key=source, run_key=f"{context.scheduled_execution_time}-{source}")


@schedule(job=mix_job, cron_schedule="0 5 * * *", default_status=DefaultScheduleStatus.STOPPED)
def nightly_mix(context: ScheduleEvaluationContext):
    """After the nightly audits, mix every source again (turn on in the UI). The in-code gate
    refuses the mix when any source's latest audit failed its blocking checks."""
    return RunRequest(run_key=f"mix-{context.scheduled_execution_time}")
