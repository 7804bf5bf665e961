"""Blocking checks on raw_sft: the Great Expectations contract and the quarantine rate."""


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
from integrity.expectations import validate_raw_sft
from integrity.policy import quarantine_rate_verdict
from integrity.stages import RAW_SFT


@asset_check(asset=raw_sft, blocking=True, partitions_def=sources_partitions)
def raw_sft_contract(
    context: AssetCheckExecutionContext, integrity: IntegrityResource
) -> AssetCheckResult:
    """GX suite: required columns, unique non-null ids, roles alternate, <image> tokens match images."""
    version = materialized_version(context, raw_sft.key)
    result = validate_raw_sft(integrity.store().read(RAW_SFT, version))
    failures = "\n".join(f"- {line}" for line in result.failed) or "all expectations met"
    return AssetCheckResult(
        passed=result.success,
        severity=AssetCheckSeverity.ERROR,
        description=f"{len(result.failed)} of {result.evaluated} expectations failed",
        metadata={"version": version, "failed_expectations": MetadataValue.md(failures)},
    )


@asset_check(asset=raw_sft, blocking=True, partitions_def=sources_partitions)
def raw_sft_quarantine_rate(
    context: AssetCheckExecutionContext, integrity: IntegrityResource
) -> AssetCheckResult:
    """The share of a source's rows quarantined at ingest stays under the policy's bound."""
    version = materialized_version(context, raw_sft.key)
    counts = integrity.store().manifest(RAW_SFT, version).extra
    verdict = quarantine_rate_verdict(counts["rows_in"], counts["quarantined"], integrity.policy())
    return check_result(verdict, version)
