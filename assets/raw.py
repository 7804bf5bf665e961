"""raw_sft: each source ingested into canonical rows plus a quarantine, as one store version."""

from dagster import AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue, asset

from assets.partitions import sources_partitions
from assets.resources import IntegrityResource
from integrity import ingest
from integrity.report.summaries import counts_table
from integrity.names import RAW_SFT
from integrity.stages import ingest_to_store

# The blocking checks (checks/raw.py) a consumer's gate requires to have passed on raw_sft.
RAW_SFT_BLOCKING_CHECKS = ("raw_sft_contract", "raw_sft_quarantine_rate")


@asset(
    partitions_def=sources_partitions,
    code_version=ingest.CODE_VERSION,
    group_name="audit",
    kinds={"polars", "parquet"},
)
def raw_sft(context: AssetExecutionContext, integrity: IntegrityResource) -> MaterializeResult:
    """Every record of one source, in the canonical schema; bad records quarantined with a reason."""
    store = integrity.store(context.instance)
    result, manifest = ingest_to_store(integrity.source(context.partition_key), store)
    summary = result.summary()
    context.log.info(f"{result.source}: {summary['accepted']} accepted, "
                     f"{summary['quarantined']} quarantined, version {manifest.version}")
    return MaterializeResult(
        data_version=DataVersion(manifest.version),
        metadata={
            "dagster/row_count": summary["accepted"],
            "version": manifest.version,
            "version_uri": MetadataValue.path(store.uri(RAW_SFT, manifest.version)),
            "origin_format": summary["origin_format"],
            "rows_in": summary["rows_in"],
            "quarantined": summary["quarantined"],
            "quarantine_rate": summary["quarantine_rate"],
            "text_only_share": summary["text_only_share"],
            "modality": MetadataValue.md(counts_table(summary["modality"], key="modality")),
            "quarantine_by_reason": MetadataValue.md(
                counts_table(summary["quarantine_by_reason"], key="reason",
                             total=summary["rows_in"])
            ),
        },
    )
