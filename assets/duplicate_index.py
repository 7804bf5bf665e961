"""duplicate_index: one source's copies of every other source, so the audit sees across sources."""

import polars as pl
from dagster import AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue, asset

from assets.automation import GATED_EAGER
from assets.gate import require_checks_passed
from assets.partitions import sources_partitions
from assets.resources import IntegrityResource
from assets.scored import SCORED_SFT_BLOCKING_CHECKS, scored_sft
from integrity.names import DUPLICATE_INDEX, SCORED_SFT
from integrity.report.summaries import markdown_table
from integrity.stages.index import INDEX_CODE_VERSION, index_to_store


@asset(
    partitions_def=sources_partitions,
    deps=[scored_sft],
    code_version=INDEX_CODE_VERSION,
    group_name="audit",
    automation_condition=GATED_EAGER,
    kinds={"polars", "parquet"},
)
def duplicate_index(context: AssetExecutionContext,
                    integrity: IntegrityResource) -> MaterializeResult:
    """The copies between this source and every other scored source: the same images and
    dialog, a templated dialog, a re-encoded image. Partitioned like the sources (not one
    unpartitioned asset): a Dagster job cannot mix the two, and the audit job runs ingest,
    score, index and audit of a source in one run; the index of every source together is the
    global index. Reads the other sources' keys only, never their rows."""
    store = integrity.store(context.instance)
    scored_version = require_checks_passed(context, scored_sft.key, SCORED_SFT_BLOCKING_CHECKS)
    sources = integrity.sources()
    others = {name: version for name in sources if name != context.partition_key
              and (version := store.latest(SCORED_SFT, name)) is not None}
    manifest = index_to_store(context.partition_key, scored_version, store, others,
                              storage_options={name: source.storage_options
                                               for name, source in sources.items()})
    extra = manifest.extra
    per_source = pl.DataFrame(
        [{"other source": other, **counts} for other, counts in extra["matches"].items()],
        schema={"other source": pl.String, "exact": pl.Int64, "near_text": pl.Int64,
                "near_image": pl.Int64})
    context.log.info(f"{context.partition_key}: {extra['copied_rows']} rows copied in "
                     f"{len(others)} other sources, version {manifest.version}")
    return MaterializeResult(
        data_version=DataVersion(manifest.version),
        metadata={
            "dagster/row_count": manifest.tables["matches"].rows,
            "version": manifest.version,
            "version_uri": MetadataValue.path(store.uri(DUPLICATE_INDEX, manifest.version)),
            "scored_sft_version": scored_version,
            "examples": extra["examples"],
            "images": extra["images"],
            "copied_rows": extra["copied_rows"],
            "sources_compared": len(others),
            "band_members_not_compared": extra["band_members_not_compared"],
            "matches": MetadataValue.md(markdown_table(per_source, right=per_source.columns[1:])),
            "seconds": extra["seconds"],
        },
    )
