"""scored_sft: every detector's evidence for each example of one source, as one store version."""

from dagster import (
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from assets.partitions import sources_partitions
from assets.raw import RAW_SFT_BLOCKING_CHECKS, raw_sft
from assets.resources import EncoderResource, IntegrityResource
from assets.automation import GATED_EAGER
from assets.gate import require_checks_passed
from integrity import detect
from integrity.report.summaries import signal_table
from integrity.names import SCORED_SFT
from integrity.stages import make_encoder, score_to_store


# The blocking checks (checks/scored.py) a consumer's gate requires to have passed on scored_sft.
SCORED_SFT_BLOCKING_CHECKS = ("scored_sft_coverage", "scored_sft_distribution",
                              "scored_sft_model_fit")


@asset(
    partitions_def=sources_partitions,
    deps=[raw_sft],
    code_version=detect.CODE_VERSION,
    group_name="audit",
    automation_condition=GATED_EAGER,
    kinds={"pytorch", "polars", "parquet"},
)
def scored_sft(context: AssetExecutionContext, integrity: IntegrityResource,
               encoder: EncoderResource) -> MaterializeResult:
    """Per-example evidence for the three flaws (grounding, answer support, leakage, blind
    answerability, preference pollution, contradictions, duplicates, image sanity).

    Refuses (GateClosed) a raw_sft partition whose blocking checks failed or never ran."""
    store = integrity.store(context.instance)
    raw_version = require_checks_passed(context, raw_sft.key, RAW_SFT_BLOCKING_CHECKS)
    source = integrity.source(context.partition_key)
    model = make_encoder(encoder.config_for(source, integrity.sources_file), store)
    rows, manifest, extra = score_to_store(source, raw_version, store, encoder=model,
                                           eval_sets=integrity.eval_sets())
    context.log.info(f"{context.partition_key}: scored {rows.height} rows "
                     f"({extra['rows_per_second']:.0f}/s), version {manifest.version}")
    return MaterializeResult(
        data_version=DataVersion(manifest.version),
        metadata={
            "dagster/row_count": rows.height,
            "version": manifest.version,
            "version_uri": MetadataValue.path(store.uri(SCORED_SFT, manifest.version)),
            "raw_sft_version": raw_version,
            "model_id": extra["model_id"],
            "model_fit_auc": extra["model_fit_auc"],
            "pairs_scored": extra["pairs_scored"],
            "rows_per_second": extra["rows_per_second"],
            "cache_hit_rate": extra["cache_hit_rate"],
            "images_encoded": extra["images_encoded"],
            "signals": MetadataValue.md(signal_table(extra["signals"])),
            # Which detector the time went to (a version made earlier keeps its own facts).
            "step_seconds": MetadataValue.table(
                records=[TableRecord({"step": step, "seconds": round(seconds, 2)})
                         for step, seconds in extra.get("step_seconds", {}).items()],
                schema=TableSchema(columns=[TableColumn("step", "string"),
                                            TableColumn("seconds", "float")])),
        },
    )
