"""Checks on training_mix: the modality band, the curriculum, traceability, no eval leakage."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from assets.mix import training_mix
from assets.resources import IntegrityResource
from assets.versions import materialized_version
from checks.results import check_result
from integrity import mix as mixing
from integrity.stages import AUDITED_SFT, TRAINING_MIX, eval_overlap_keys


def _mix(context, integrity: IntegrityResource):
    version = materialized_version(context, training_mix.key)
    return version, integrity.store().read(TRAINING_MIX, version)


@asset_check(asset=training_mix, blocking=True)
def training_mix_modality_band(context: AssetCheckExecutionContext,
                               integrity: IntegrityResource) -> AssetCheckResult:
    """The image-text share of the mix lies inside the policy's band (modality imbalance)."""
    version, frame = _mix(context, integrity)
    return check_result(mixing.modality_band_verdict(frame, integrity.policy().mix), version)


@asset_check(asset=training_mix, blocking=True)
def training_mix_curriculum(context: AssetCheckExecutionContext,
                            integrity: IntegrityResource) -> AssetCheckResult:
    """Rows follow the curriculum's stages in order, each in the stage that takes it."""
    version, frame = _mix(context, integrity)
    return check_result(mixing.curriculum_order_verdict(frame, integrity.policy().mix), version)


@asset_check(asset=training_mix, blocking=True)
def training_mix_traceable(context: AssetCheckExecutionContext,
                           integrity: IntegrityResource) -> AssetCheckResult:
    """Every mix row is a kept row of the audited version the manifest names for its source."""
    version, frame = _mix(context, integrity)
    store = integrity.store()
    kept = {audited: set(store.read(AUDITED_SFT, audited)["example_id"])
            for audited in store.manifest(TRAINING_MIX, version).upstream.values()}
    return check_result(mixing.traceable_verdict(frame, kept), version)


@asset_check(asset=training_mix, blocking=True)
def training_mix_no_eval_overlap(context: AssetCheckExecutionContext,
                                 integrity: IntegrityResource) -> AssetCheckResult:
    """No mix row shares an image or a question with a declared eval set."""
    version, frame = _mix(context, integrity)
    images, questions = eval_overlap_keys(integrity.eval_sets(), integrity.store())
    return check_result(mixing.eval_overlap_verdict(frame, images, questions), version)
