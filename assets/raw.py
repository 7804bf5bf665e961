"""raw_sft: each source ingested into canonical rows plus a quarantine, as one store version."""


from dagster import AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue, asset

from assets.partitions import sources_partitions
from assets.resources import IntegrityResource
from integrity import ingest
from integrity.report import counts_table

RAW_SFT = "raw_sft"


@asset(
    partitions_def=sources_partitions,
    code_version=ingest.CODE_VERSION,
    group_name="audit",
    kinds={"polars", "parquet"},
)
def raw_sft(context: AssetExecutionContext, integrity: IntegrityResource) -> MaterializeResult:
    """Every record of one source, in the canonical schema; bad records quarantined with a reason."""
    source = integrity.source(context.partition_key)
    result = ingest.ingest_source(source, blob_root=integrity.blob_root())
    summary = result.summary()
    manifest = integrity.store().write(
        RAW_SFT,
        {"data": result.accepted, "quarantine": result.quarantine},
        partition=source.name,
        code_version=ingest.CODE_VERSION,
        params={"uri": source.uri, "format": source.format, "image_root": source.image_root},
        extra=summary,
    )
    context.log.info(f"{source.name}: {summary['accepted']} accepted, "
                     f"{summary['quarantined']} quarantined, version {manifest.version}")
    return MaterializeResult(
        data_version=DataVersion(manifest.version),
        metadata={
            "dagster/row_count": summary["accepted"],
            "version": manifest.version,
            "version_uri": MetadataValue.path(integrity.store().uri(RAW_SFT, manifest.version)),
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
