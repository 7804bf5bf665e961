"""The adapter over Dagster's private check history: pinned to a version, and right across
pages, partitions and materializations."""

from pathlib import Path

import dagster
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetKey,
    StaticPartitionsDefinition,
    asset,
    asset_check,
    materialize,
)

from assets import check_history
from assets.versions import latest_materialization

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = StaticPartitionsDefinition(["a", "b"])
VERDICT = {"passed": True}


@asset(partitions_def=PARTITIONS)
def thing() -> int:
    return 1


@asset_check(asset=thing, partitions_def=PARTITIONS)
def thing_ok() -> AssetCheckResult:
    return AssetCheckResult(passed=VERDICT["passed"])


def test_the_adapter_is_checked_against_the_dagster_version_the_project_pins():
    """It reads dagster._core: an upgrade must fail here first, then be checked and re-pinned."""
    pinned = next(line.split("==")[1] for line in (REPO / "constraints.txt").read_text().split()
                  if line.startswith("dagster=="))
    assert dagster.__version__ == pinned == check_history.WRITTEN_FOR


def test_the_evaluation_of_a_materialization_is_found_per_partition_and_across_pages(
        instance, monkeypatch):
    """The gate once read only the newest 50 evaluations of a check."""
    monkeypatch.setattr(check_history, "PAGE", 2)  # several pages with a handful of runs
    check = AssetCheckKey(AssetKey("thing"), "thing_ok")
    verdicts = {}
    for partition, passed in (("a", True), ("a", False), ("b", False), ("a", True), ("a", False),
                              ("b", True), ("a", False)):
        VERDICT["passed"] = passed
        assert materialize([thing, thing_ok], instance=instance, partition_key=partition).success
        verdicts[latest_materialization(instance, AssetKey("thing"), partition).storage_id] = \
            (partition, passed)

    for storage_id, (partition, passed) in verdicts.items():  # the oldest is pages back
        evaluation = check_history.evaluation_for(instance, check, partition, storage_id)
        assert evaluation is not None and evaluation.passed is passed
        other = "b" if partition == "a" else "a"
        assert check_history.evaluation_for(instance, check, other, storage_id) is None
    # A materialization no evaluation targeted: None, without reading back through history.
    assert materialize([thing], instance=instance, partition_key="a").success
    newest = latest_materialization(instance, AssetKey("thing"), "a")
    assert check_history.evaluation_for(instance, check, "a", newest.storage_id) is None
