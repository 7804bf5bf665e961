"""Checks on training_mix: the modality band, the curriculum, traceability, no eval leakage,
no copies across sources.

Each calls the function of the same name in integrity/decide/gate.py, which training_mix itself runs
before it publishes a mix: one set of rules, in Dagster and out."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from assets.mix import training_mix
from assets.resources import IntegrityResource
from assets.versions import materialized_version
from checks.results import check_result
from integrity.decide import gate
from integrity.names import TRAINING_MIX


def _verdict(context, integrity: IntegrityResource, name: str) -> AssetCheckResult:
    version = materialized_version(context, training_mix.key)
    store = integrity.store(context.instance)
    review = gate.MixUnderReview(store.read(TRAINING_MIX, version),
                                 store.manifest(TRAINING_MIX, version).upstream, store,
                                 integrity.policy(), integrity.eval_sets())
    return check_result(gate.TRAINING_MIX_CHECKS[name](review), version)


@asset_check(asset=training_mix, blocking=True)
def training_mix_modality_band(context: AssetCheckExecutionContext,
                               integrity: IntegrityResource) -> AssetCheckResult:
    """The image-text share of the mix lies inside the policy's band (modality imbalance)."""
    return _verdict(context, integrity, "training_mix_modality_band")


@asset_check(asset=training_mix, blocking=True)
def training_mix_curriculum(context: AssetCheckExecutionContext,
                            integrity: IntegrityResource) -> AssetCheckResult:
    """Rows follow the curriculum's stages in order, each in the stage that takes it."""
    return _verdict(context, integrity, "training_mix_curriculum")


@asset_check(asset=training_mix, blocking=True)
def training_mix_traceable(context: AssetCheckExecutionContext,
                           integrity: IntegrityResource) -> AssetCheckResult:
    """Every mix row is a kept row of the audited version the manifest names for its source."""
    return _verdict(context, integrity, "training_mix_traceable")


@asset_check(asset=training_mix, blocking=True)
def training_mix_no_eval_overlap(context: AssetCheckExecutionContext,
                                 integrity: IntegrityResource) -> AssetCheckResult:
    """No mix row shares an image or a question with a declared eval set."""
    return _verdict(context, integrity, "training_mix_no_eval_overlap")


@asset_check(asset=training_mix, blocking=True)
def training_mix_no_duplicates(context: AssetCheckExecutionContext,
                               integrity: IntegrityResource) -> AssetCheckResult:
    """No two mix rows share their images and dialog, and none copies a row of another source
    (duplicate_index); the metadata names the sources involved."""
    return _verdict(context, integrity, "training_mix_no_duplicates")
