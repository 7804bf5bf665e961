"""Gate layers a and b: the end-to-end job, and automation that waits for passed checks."""

from dagster import AssetKey, Definitions, evaluate_automation_conditions, materialize

from assets.audited import audited_sft
from assets.raw import raw_sft
from assets.resources import EncoderResource
from assets.scored import scored_sft
from checks.raw import raw_sft_contract, raw_sft_quarantine_rate
from definitions import defs



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
        "raw_sft", "scored_sft", "audited_sft"}
    sensor = defs.resolve_sensor_def("audit_automation")
    assert sensor.default_status.value == "RUNNING"
