"""audited_sft: the policy's verdict on every row of one source; kept rows as one version."""

from dagster import AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue, asset

from assets.automation import GATED_EAGER
from assets.gate import require_checks_passed
from assets.partitions import sources_partitions
from assets.resources import IntegrityResource
from assets.scored import SCORED_SFT_BLOCKING_CHECKS, scored_sft
from integrity.audit import CODE_VERSION
from integrity.report import verdict_table
from integrity.stages import AUDITED_SFT, audit_to_store


@asset(
    partitions_def=sources_partitions,
    deps=[scored_sft],
    code_version=CODE_VERSION,
    group_name="audit",
    automation_condition=GATED_EAGER,
    kinds={"polars", "parquet"},
)
def audited_sft(context: AssetExecutionContext, integrity: IntegrityResource) -> MaterializeResult:
    """Keep / drop / review for every row with all its reasons; the kept rows are what mixes
    and training may read. Refuses a scored_sft whose blocking checks failed or never ran."""
    store, policy = integrity.store(), integrity.policy()
    scored_version = require_checks_passed(context, scored_sft.key, SCORED_SFT_BLOCKING_CHECKS)
    result, manifest = audit_to_store(context.partition_key, scored_version, store, policy)
    counts = result.counts()
    context.log.info(f"{context.partition_key}: {counts}, version {manifest.version}")
    return MaterializeResult(
        data_version=DataVersion(manifest.version),
        metadata={
            "dagster/row_count": counts["keep"],
            "version": manifest.version,
            "version_uri": MetadataValue.path(store.uri(AUDITED_SFT, manifest.version)),
            "scored_sft_version": scored_version,
            "policy": policy.digest(),
            "kept": counts["keep"],
            "dropped": counts["drop"],
            "review": counts["review"],
            "quarantined": result.quarantined,
            "human_reviews": manifest.extra["human_reviews"],
            "verdicts": MetadataValue.md(verdict_table(result.reasons(), counts)),
        },
    )
