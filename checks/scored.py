"""Blocking checks on scored_sft: every row scored, and model signals that really vary."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    asset_check,
)

from assets.partitions import sources_partitions
from assets.resources import IntegrityResource
from assets.scored import scored_sft
from assets.versions import materialized_version
from checks.results import check_result
from integrity.policy import coverage_verdict, distribution_verdict
from integrity.stages import RAW_SFT, SCORED_SFT


@asset_check(asset=scored_sft, blocking=True, partitions_def=sources_partitions)
def scored_sft_coverage(
    context: AssetCheckExecutionContext, integrity: IntegrityResource
) -> AssetCheckResult:
    """Every accepted raw_sft row has exactly one scored row, and no signal is NaN."""
    store = integrity.store()
    version = materialized_version(context, scored_sft.key)
    raw_version = store.manifest(SCORED_SFT, version).upstream[RAW_SFT]
    raw_ids = store.read(RAW_SFT, raw_version)["example_id"]
    return check_result(coverage_verdict(raw_ids, store.read(SCORED_SFT, version)), version)


@asset_check(asset=scored_sft, blocking=True, partitions_def=sources_partitions)
def scored_sft_distribution(
    context: AssetCheckExecutionContext, integrity: IntegrityResource
) -> AssetCheckResult:
    """Model signals are not near-constant (a broken encoder scores everything alike)."""
    store = integrity.store()
    version = materialized_version(context, scored_sft.key)
    rows = store.read(SCORED_SFT, version)
    return check_result(distribution_verdict(rows, integrity.policy()), version)
