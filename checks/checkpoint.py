"""Checks on training_checkpoint: the model still looks at the image, its vision tower held."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from assets.checkpoint import training_checkpoint
from assets.resources import IntegrityResource
from assets.versions import materialized_version
from checks.results import check_result
from integrity.decide.policy import checkpoint_verdicts
from integrity.names import TRAINING_CHECKPOINT


def _verdicts(context, integrity: IntegrityResource):
    version = materialized_version(context, training_checkpoint.key)
    metrics = integrity.store(context.instance).manifest(TRAINING_CHECKPOINT, version).extra["metrics"]
    return version, checkpoint_verdicts(metrics, integrity.policy())


@asset_check(asset=training_checkpoint, blocking=True)
def training_checkpoint_visual_reliance(context: AssetCheckExecutionContext,
                                        integrity: IntegrityResource) -> AssetCheckResult:
    """Visual neglect: accuracy with the image minus with it blanked stays above the bound."""
    version, verdicts = _verdicts(context, integrity)
    return check_result(verdicts["visual_reliance"], version)


@asset_check(asset=training_checkpoint, blocking=True)
def training_checkpoint_cka(context: AssetCheckExecutionContext,
                            integrity: IntegrityResource) -> AssetCheckResult:
    """Modality alignment: the vision tower's features stay close (linear CKA) to the
    pretrained tower's on a fixed probe set."""
    version, verdicts = _verdicts(context, integrity)
    return check_result(verdicts["cka"], version)
