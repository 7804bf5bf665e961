"""raw_sft through a real Dagster instance: versions, metadata, and checks that block."""

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterInstance,
    asset,
    build_sensor_context,
    materialize,
)

from assets.partitions import sources_partitions
from assets.raw import raw_sft
from assets.sensors import sources_sensor
from checks.raw import raw_sft_contract, raw_sft_quarantine_rate
from integrity.names import RAW_SFT

CHECKS = [raw_sft_contract, raw_sft_quarantine_rate]
consumed: list[str] = []


@asset(partitions_def=sources_partitions, deps=[raw_sft])
def downstream_probe(context) -> None:
    """Stands in for scored_sft: records every partition it was allowed to read."""
    consumed.append(context.partition_key)


def _run(world, instance: DagsterInstance, partition: str, *extra):
    return materialize(
        [raw_sft, *CHECKS, *extra],
        partition_key=partition,
        instance=instance,
        resources={"integrity": world["resource"]},
        raise_on_error=False,
    )


def _evaluations(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_two_sources_materialize_with_versions_and_metadata(world, instance):
    instance.add_dynamic_partitions("sources", ["good_llava", "good_sharegpt"])
    store = world["resource"].store(instance)
    versions = {}
    for partition, accepted in (("good_llava", 12), ("good_sharegpt", 6)):
        result = _run(world, instance, partition)
        assert result.success
        assert _evaluations(result) == {"raw_sft_contract": True, "raw_sft_quarantine_rate": True}
        [materialization] = result.asset_materializations_for_node("raw_sft")
        metadata = materialization.metadata
        version = metadata["version"].value
        assert metadata["dagster/row_count"].value == accepted
        assert metadata["rows_in"].value == accepted and metadata["quarantined"].value == 0
        assert "| image-text |" in metadata["modality"].value
        assert store.read(RAW_SFT, version).height == accepted
        record = instance.fetch_materializations(AssetKey("raw_sft"), limit=1).records[0]
        assert record.asset_materialization.tags["dagster/data_version"] == version
        versions[partition] = version
    assert versions["good_llava"] != versions["good_sharegpt"]
    # Same input, same code: the same version again, and nothing new in the store.
    again = _run(world, instance, "good_llava").asset_materializations_for_node("raw_sft")[0]
    assert again.metadata["version"].value == versions["good_llava"]
    assert sorted(store.versions(RAW_SFT)) == sorted(versions.values())


def test_failing_contract_blocks_downstream_in_the_same_run(world, instance):
    instance.add_dynamic_partitions("sources", ["good_llava", "dup_ids"])
    consumed.clear()
    good = _run(world, instance, "good_llava", downstream_probe)
    assert good.success and consumed == ["good_llava"]

    bad = _run(world, instance, "dup_ids", downstream_probe)
    assert not bad.success
    assert _evaluations(bad)["raw_sft_contract"] is False
    assert bad.is_node_untouched("downstream_probe")
    assert consumed == ["good_llava"]
    record = instance.get_latest_asset_check_evaluation_record(
        AssetCheckKey(AssetKey("raw_sft"), "raw_sft_contract")
    )
    assert record.event.asset_check_evaluation.passed is False
    assert "expect_column_values_to_be_unique" in str(
        record.event.asset_check_evaluation.metadata["failed_expectations"].value
    )


def test_quarantine_rate_over_policy_blocks(world, instance):
    instance.add_dynamic_partitions("sources", ["broken"])
    result = _run(world, instance, "broken", downstream_probe)
    assert not result.success
    evaluations = _evaluations(result)
    assert evaluations["raw_sft_quarantine_rate"] is False
    assert evaluations["raw_sft_contract"] is True  # accepted rows are fine; the rate is not
    assert result.is_node_untouched("downstream_probe")


def test_sources_sensor_registers_partitions_and_requests_ingest(world, instance):
    context = build_sensor_context(instance=instance, resources={"integrity": world["resource"]})
    result = sources_sensor(context)
    names = ["good_llava", "good_sharegpt", "dup_ids", "broken"]
    assert result.dynamic_partitions_requests[0].partition_keys == names
    assert [request.partition_key for request in result.run_requests] == names
    instance.add_dynamic_partitions("sources", names)
    again = sources_sensor(build_sensor_context(instance=instance,
                                                resources={"integrity": world["resource"]}))
    assert again.run_requests == [] and again.dynamic_partitions_requests == []


@pytest.mark.parametrize("partition", ["not_a_source"])
def test_unknown_partition_fails_clearly(world, instance, partition):
    instance.add_dynamic_partitions("sources", [partition])
    result = _run(world, instance, partition)
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert error.cause.cls_name == "SourcesFileError"
    assert "'not_a_source' is not in" in error.cause.message
