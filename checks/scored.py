"""Blocking checks on scored_sft: every row scored, and model signals that really vary.

The rules live in ``integrity.decide.gate`` (the CLI gate runs the same functions)."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from assets.partitions import sources_partitions
from assets.resources import IntegrityResource
from assets.scored import scored_sft
from assets.versions import materialized_version
from checks.results import check_result
from integrity.decide import gate


@asset_check(asset=scored_sft, blocking=True, partitions_def=sources_partitions)
def scored_sft_coverage(
    context: AssetCheckExecutionContext, integrity: IntegrityResource
) -> AssetCheckResult:
    """Every accepted raw_sft row has exactly one scored row, and no signal is NaN."""
    version = materialized_version(context, scored_sft.key)
    return check_result(gate.scored_sft_coverage(integrity.store(context.instance), version, integrity.policy()),
                        version)


@asset_check(asset=scored_sft, blocking=True, partitions_def=sources_partitions)
def scored_sft_distribution(
    context: AssetCheckExecutionContext, integrity: IntegrityResource
) -> AssetCheckResult:
    """Model signals are not near-constant (a broken encoder scores everything alike)."""
    version = materialized_version(context, scored_sft.key)
    return check_result(gate.scored_sft_distribution(integrity.store(context.instance), version,
                                                     integrity.policy()), version)


@asset_check(asset=scored_sft, blocking=True, partitions_def=sources_partitions)
def scored_sft_model_fit(
    context: AssetCheckExecutionContext, integrity: IntegrityResource
) -> AssetCheckResult:
    """The model tells matched from shuffled image-answer pairs apart (AUC above the policy's
    bound); the description names the model when it cannot."""
    version = materialized_version(context, scored_sft.key)
    return check_result(gate.scored_sft_model_fit(integrity.store(context.instance), version,
                                                  integrity.policy()), version)


# Every check on scored_sft, in the order definitions.py lists them.
SCORED_SFT_CHECKS = (scored_sft_coverage, scored_sft_distribution, scored_sft_model_fit)
