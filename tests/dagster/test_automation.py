"""Gate layers a and b: the end-to-end job, and automation that waits for passed checks."""

from datetime import UTC, datetime

from dagster import (
    AssetKey,
    Definitions,
    build_schedule_context,
    evaluate_automation_conditions,
    materialize,
)

from assets.audited import audited_sft
from assets.duplicate_index import duplicate_index
from assets.automation import audit_job, mix_job, nightly_audit, nightly_mix
from assets.mix import training_mix
from assets.raw import raw_sft
from assets.resources import EncoderResource
from assets.scored import scored_sft
from checks.audited import AUDITED_SFT_CHECKS
from checks.mix import (
    training_mix_curriculum,
    training_mix_modality_band,
    training_mix_no_duplicates,
    training_mix_no_eval_overlap,
    training_mix_traceable,
)
from checks.raw import raw_sft_contract, raw_sft_quarantine_rate
from checks.scored import SCORED_SFT_CHECKS
from definitions import defs

SCORED_CHECKS = list(SCORED_SFT_CHECKS)
AUDIT_CHECKS = list(AUDITED_SFT_CHECKS)
MIX_CHECKS = [training_mix_modality_band, training_mix_curriculum, training_mix_traceable,
              training_mix_no_eval_overlap, training_mix_no_duplicates]



def _automation_after_ingest(world, instance, partition) -> tuple[bool, set[str]]:
    """Tick automation once, ingest ``partition`` (raw + its checks), tick again: whether the
    ingest run succeeded and which scored_sft partitions the second tick requests."""
    automated = Definitions(assets=[raw_sft, scored_sft, audited_sft],
                            asset_checks=[raw_sft_contract, raw_sft_quarantine_rate],
                            resources={"integrity": world["resource"],
                                       "encoder": EncoderResource(workers=0)})
    instance.add_dynamic_partitions("sources", [partition])
    first = evaluate_automation_conditions(defs=automated, instance=instance)
    ingest = materialize([raw_sft, raw_sft_contract, raw_sft_quarantine_rate],
                         partition_key=partition, instance=instance,
                         resources={"integrity": world["resource"]}, raise_on_error=False)
    assert instance.get_latest_materialization_event(AssetKey("raw_sft")) is not None
    second = evaluate_automation_conditions(defs=automated, instance=instance,
                                            cursor=first.cursor)
    return ingest.success, set(second.get_requested_partitions(AssetKey("scored_sft")))


def test_automation_requests_scoring_after_checks_passed(world, instance):
    assert _automation_after_ingest(world, instance, "good_llava") == (True, {"good_llava"})


def test_automation_holds_scoring_back_after_a_failed_blocking_check(world, instance):
    # The contract fails on duplicate ids; raw_sft is still written, but nothing is requested.
    assert _automation_after_ingest(world, instance, "dup_ids") == (False, set())


def test_the_end_to_end_job_and_its_automation_sensor_are_defined():
    job = defs.resolve_job_def("audit_source")
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == {
        "raw_sft", "scored_sft", "duplicate_index", "audited_sft"}
    sensor = defs.resolve_sensor_def("audit_automation")
    assert sensor.default_status.value == "RUNNING"


def test_a_schedule_tick_runs_each_source_end_to_end_and_the_gate_holds(world, instance):
    instance.add_dynamic_partitions("sources", ["good_llava", "dup_ids"])
    scheduled = Definitions(
        assets=[raw_sft, scored_sft, duplicate_index, audited_sft], jobs=[audit_job], schedules=[nightly_audit],
        asset_checks=[raw_sft_contract, raw_sft_quarantine_rate, *SCORED_CHECKS, *AUDIT_CHECKS],
        resources={"integrity": world["resource"],
                   "encoder": EncoderResource(workers=0, batch_size=16)},
    )
    tick = nightly_audit.evaluate_tick(build_schedule_context(
        instance=instance, repository_def=scheduled.get_repository_def(),
        scheduled_execution_time=datetime(2026, 11, 25, 3, tzinfo=UTC)))
    assert sorted(request.partition_key for request in tick.run_requests) == [
        "dup_ids", "good_llava"]
    job = scheduled.resolve_job_def("audit_source")
    for request in tick.run_requests:
        result = job.execute_in_process(partition_key=request.partition_key,
                                              instance=instance, raise_on_error=False)
        materialized = {e.asset_key.to_user_string()
                        for e in result.get_asset_materialization_events()}
        if request.partition_key == "good_llava":
            assert materialized == {"raw_sft", "scored_sft", "duplicate_index", "audited_sft"}
        else:  # duplicate ids fail the raw contract: scoring and audit never start
            assert materialized == {"raw_sft"} and not result.success


def test_nightly_jobs_run_every_check_of_what_they_materialize():
    for name, checked in (("audit_source", {"raw_sft", "scored_sft", "duplicate_index",
                                            "audited_sft"}),
                          ("build_mix", {"training_mix"}),
                          ("mix_and_train", {"training_mix", "training_checkpoint",
                                             "training_rl_probe", "rl_ready_checkpoint"})):
        in_job = defs.resolve_job_def(name).asset_layer.asset_graph.asset_check_keys
        declared = {key for key in defs.resolve_asset_graph().asset_check_keys
                    if key.asset_key.to_user_string() in checked}
        assert declared and in_job == declared, name
    assert {schedule.name for schedule in defs.schedules} == {"nightly_audit", "nightly_mix"}


def test_nightly_mix_tick_is_refused_while_a_source_audit_failed(world, instance):
    # good_llava audits cleanly; dup_ids fails its raw contract, so it has no passed audit.
    instance.add_dynamic_partitions("sources", ["good_llava", "dup_ids"])
    resources = {"integrity": world["resource"],
                 "encoder": EncoderResource(workers=0, batch_size=16)}
    for partition in ("good_llava", "dup_ids"):
        materialize([raw_sft, scored_sft, duplicate_index, audited_sft, raw_sft_contract, raw_sft_quarantine_rate,
                     *SCORED_CHECKS, *AUDIT_CHECKS], partition_key=partition,
                    instance=instance, resources=resources, raise_on_error=False)
    tick = nightly_mix.evaluate_tick(build_schedule_context(
        instance=instance, repository_def=defs.get_repository_def(),
        scheduled_execution_time=datetime(2026, 11, 25, 5, tzinfo=UTC)))
    [request] = tick.run_requests
    scheduled = Definitions(assets=[training_mix], asset_checks=MIX_CHECKS, jobs=[mix_job],
                            resources={"integrity": world["resource"]})
    result = scheduled.resolve_job_def("build_mix").execute_in_process(
        instance=instance, raise_on_error=False, tags=request.tags)
    assert not result.success
    assert not [e for e in result.get_asset_materialization_events()]
    failure = result.failure_data_for_node("training_mix")
    assert "audited_sft[dup_ids]" in str(failure.error)
