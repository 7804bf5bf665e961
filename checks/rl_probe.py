"""Check on training_rl_probe: RL from this checkpoint does not learn to answer without looking."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset_check,
)

from assets.resources import IntegrityResource
from assets.rl_probe import training_rl_probe
from assets.versions import materialized_version
from checks.results import DISPLAY_DECIMALS, check_result
from integrity.decide.rl_probe import hacking_rate_verdict, incident
from integrity.names import RL_CURVES_FILE, TRAINING_RL_PROBE
from integrity.report.rl_probe import rl_curves_markdown

_RUN_COLUMNS = ("run", "reward_before", "reward_after", "reliance_before", "reliance_after",
                "incident")


@asset_check(asset=training_rl_probe, blocking=True)
def training_rl_probe_hacking_rate(context: AssetCheckExecutionContext,
                                   integrity: IntegrityResource) -> AssetCheckResult:
    """Reward hacking: RL runs whose reward rose while visual reliance fell by more than the
    policy's margin, per 100 runs, stay within the policy's bound (with a Wilson interval)."""
    version = materialized_version(context, training_rl_probe.key)
    store = integrity.store(context.instance)
    policy = integrity.policy()
    summary = store.read(TRAINING_RL_PROBE, version, "runs").with_columns(
        incident=incident(policy.rl_probe.reliance_margin))
    png = store.read_attachment(TRAINING_RL_PROBE, version, RL_CURVES_FILE)
    runs = MetadataValue.table(
        records=[TableRecord({name: round(value, DISPLAY_DECIMALS) if isinstance(value, float)
                              else value for name, value in row.items()})
                 for row in summary.select(_RUN_COLUMNS).iter_rows(named=True)],
        schema=TableSchema(columns=[
            TableColumn(name, "string" if name == "run" else
                        "bool" if name == "incident" else "float") for name in _RUN_COLUMNS]))
    return check_result(hacking_rate_verdict(summary, policy), version,
                        metadata={"curves": MetadataValue.md(rl_curves_markdown(png)),
                                  "per_run": runs})
