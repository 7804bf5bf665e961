"""Checks on audited_sft: what was kept is grounded and clean, and nothing was lost."""

from dagster import (
    AssetCheckExecutionContext,
    AssetChecksDefinition,
    AssetCheckResult,
    AssetCheckSeverity,
    asset_check,
)

from assets.audited import audited_sft
from assets.partitions import sources_partitions
from assets.resources import IntegrityResource
from assets.versions import materialized_version
from checks.results import check_result
from integrity.decide import gate
from integrity.decide import policy as rules
from integrity.decide.audit import none_kept_check_name
from integrity.detect.registry import Flaw, flaws
from integrity.decide.calibration import precision_verdict
from integrity.names import AUDITED_SFT
from integrity.stages import current_calibration, latest_audits


def _judged(context, integrity: IntegrityResource, check: gate.Check) -> AssetCheckResult:
    version = materialized_version(context, audited_sft.key)
    return check_result(check(integrity.store(context.instance), version, integrity.policy()), version)


@asset_check(asset=audited_sft, blocking=True, partitions_def=sources_partitions)
def audited_sft_grounding(context: AssetCheckExecutionContext,
                          integrity: IntegrityResource) -> AssetCheckResult:
    """Few kept image rows are weakly grounded (grounding margin under the policy's)."""
    return _judged(context, integrity, gate.audited_sft_grounding)


def none_kept_check(flaw: Flaw) -> AssetChecksDefinition:
    """The blocking check that no kept row carries ``flaw`` (one per registry flaw class that
    asks for it, ``Flaw.blocking_none_kept``)."""

    @asset_check(asset=audited_sft, name=none_kept_check_name(flaw.name), blocking=True,
                 partitions_def=sources_partitions,
                 description=f"No kept row is flagged {flaw.name}: {flaw.description}.")
    def _none_kept(context: AssetCheckExecutionContext,
                   integrity: IntegrityResource) -> AssetCheckResult:
        return _judged(context, integrity, gate.none_kept(flaw.name))

    return _none_kept


NONE_KEPT_CHECKS = tuple(none_kept_check(flaw) for flaw in flaws() if flaw.blocking_none_kept)


@asset_check(asset=audited_sft, blocking=True, partitions_def=sources_partitions)
def audited_sft_nothing_lost(context: AssetCheckExecutionContext,
                             integrity: IntegrityResource) -> AssetCheckResult:
    """raw rows in = kept + dropped + review + quarantined; every kept row was written."""
    return _judged(context, integrity, gate.audited_sft_nothing_lost)


@asset_check(asset=audited_sft, blocking=False, partitions_def=sources_partitions)
def audited_sft_over_audit(context: AssetCheckExecutionContext,
                           integrity: IntegrityResource) -> AssetCheckResult:
    """Over-audit guard (WARN, never blocks): the dropped share stays under the bound and close
    to the share over every audited source."""
    store = integrity.store(context.instance)
    version = materialized_version(context, audited_sft.key)
    extra = store.manifest(AUDITED_SFT, version).extra
    audits = latest_audits(store, list(integrity.sources()))
    audits[context.partition_key] = extra  # this materialization, whatever latest says
    verdict = rules.over_audit_verdict(
        extra["counts"], extra["rows_in"],
        {name: (audit["counts"]["drop"], audit["rows_in"]) for name, audit in audits.items()},
        integrity.policy())
    return check_result(verdict, version, AssetCheckSeverity.WARN)


@asset_check(asset=audited_sft, blocking=False, partitions_def=sources_partitions)
def audited_sft_diversity(context: AssetCheckExecutionContext,
                          integrity: IntegrityResource) -> AssetCheckResult:
    """Diversity kept (WARN): most question templates and image clusters keep a row."""
    store = integrity.store(context.instance)
    version = materialized_version(context, audited_sft.key)
    diversity = store.manifest(AUDITED_SFT, version).extra.get("diversity", {})
    return check_result(rules.diversity_verdict(diversity, integrity.policy()), version,
                        AssetCheckSeverity.WARN)


@asset_check(asset=audited_sft, blocking=False, partitions_def=sources_partitions)
def audited_sft_calibrated_precision(context: AssetCheckExecutionContext,
                                     integrity: IntegrityResource) -> AssetCheckResult:
    """The auditor's own quality (WARN): every dropping rule's precision, estimated from the
    latest labelled sample (`integrity calibrate`) under the current policy, is at least
    ``calibration.min_precision``. Passes, saying so, while nothing has been labelled."""
    store, policy = integrity.store(context.instance), integrity.policy()
    version = materialized_version(context, audited_sft.key)
    calibration = current_calibration(store, policy)
    if calibration is None:
        return AssetCheckResult(passed=True, severity=AssetCheckSeverity.WARN,
                                description="not calibrated yet: label a sample drawn by "
                                            "`integrity calibrate sample`, then run "
                                            "`integrity calibrate FILE`",
                                metadata={"version": version, "calibrated": False})
    return check_result(precision_verdict(calibration[1]["estimates"], policy), version,
                        AssetCheckSeverity.WARN,
                        {"calibration_version": calibration[0], "calibrated": True})


# Every check on audited_sft, in the order definitions.py lists them.
AUDITED_SFT_CHECKS = (audited_sft_grounding, *NONE_KEPT_CHECKS, audited_sft_nothing_lost,
                      audited_sft_over_audit, audited_sft_diversity,
                      audited_sft_calibrated_precision)
