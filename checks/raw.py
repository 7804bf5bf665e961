"""Blocking checks on raw_sft: the Great Expectations contract and the quarantine rate.

The rules live in ``integrity.decide.gate`` (the CLI gate runs the same functions)."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from assets.partitions import sources_partitions
from assets.raw import raw_sft
from assets.resources import IntegrityResource
from assets.versions import materialized_version
from checks.results import check_result
from integrity.decide import gate


@asset_check(asset=raw_sft, blocking=True, partitions_def=sources_partitions)
def raw_sft_contract(
    context: AssetCheckExecutionContext, integrity: IntegrityResource
) -> AssetCheckResult:
    """GX suite: required columns, unique non-null ids, roles alternate, <image> tokens match images."""
    version = materialized_version(context, raw_sft.key)
    verdict = gate.raw_sft_contract(integrity.store(context.instance), version, integrity.policy())
    return check_result(verdict, version, metadata={
        "failed_expectations": MetadataValue.md(verdict.figures["failed_expectations"])})


@asset_check(asset=raw_sft, blocking=True, partitions_def=sources_partitions)
def raw_sft_quarantine_rate(
    context: AssetCheckExecutionContext, integrity: IntegrityResource
) -> AssetCheckResult:
    """The share of a source's rows quarantined at ingest stays under the policy's bound."""
    version = materialized_version(context, raw_sft.key)
    return check_result(gate.raw_sft_quarantine_rate(integrity.store(context.instance), version,
                                                     integrity.policy()), version)


@asset_check(asset=raw_sft, blocking=False, partitions_def=sources_partitions)
def raw_sft_has_rows(
    context: AssetCheckExecutionContext, integrity: IntegrityResource
) -> AssetCheckResult:
    """WARN: the source gave records at all (an empty or blank file is usually a mistake)."""
    version = materialized_version(context, raw_sft.key)
    return check_result(gate.raw_sft_has_rows(integrity.store(context.instance), version, integrity.policy()),
                        version, AssetCheckSeverity.WARN)
