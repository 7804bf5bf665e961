"""audited_sft: the policy's verdict on every row of one source; kept rows as one version."""

from dagster import AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue, asset

from assets.automation import GATED_EAGER
from assets.duplicate_index import duplicate_index
from assets.gate import require_checks_passed
from assets.partitions import sources_partitions
from assets.resources import IntegrityResource
from assets.scored import SCORED_SFT_BLOCKING_CHECKS, scored_sft
from integrity.decide.audit import CODE_VERSION, blocking_check_names
from integrity.report.summaries import audit_markdown, calibration_markdown
from integrity.names import AUDITED_SFT, REPORT_FILE, REVIEW_FILE
from integrity.stages import audit_to_store, current_calibration, latest_audits
from integrity.stages.audit import cross_source_copies

# What a consumer of audited_sft (training_mix) requires to have passed on the version it reads.
AUDITED_SFT_BLOCKING_CHECKS = blocking_check_names()


@asset(
    partitions_def=sources_partitions,
    deps=[scored_sft, duplicate_index],
    code_version=CODE_VERSION,
    group_name="audit",
    automation_condition=GATED_EAGER,
    kinds={"polars", "parquet"},
)
def audited_sft(context: AssetExecutionContext, integrity: IntegrityResource) -> MaterializeResult:
    """Keep / drop / review for every row with all its reasons; the kept rows are what mixes
    and training may read. Rows another source holds first (duplicate_index, the policy's
    ``source_priority``) are dropped as ``duplicate``, naming the row kept. Refuses a
    scored_sft whose blocking checks failed or never ran."""
    store, policy = integrity.store(context.instance), integrity.policy()
    scored_version = require_checks_passed(context, scored_sft.key, SCORED_SFT_BLOCKING_CHECKS)
    source = integrity.source(context.partition_key)
    calibration = current_calibration(store, policy)
    peers = latest_audits(store, [name for name in integrity.sources() if name != source.name])
    copies = cross_source_copies(store, source.name, scored_version, list(integrity.sources()),
                                 policy)
    result, manifest, files = audit_to_store(source.name, scored_version, store, policy,
                                             storage_options=source.storage_options,
                                             calibration=calibration, peers=peers, copies=copies)
    counts = result.counts()
    calibrated = {} if calibration is None else {
        "calibration_version": calibration[0],
        "calibration": MetadataValue.md(calibration_markdown(
            calibration[0], calibration[1]["estimates"], policy))}
    all_audits = {**peers, source.name: {"version": manifest.version, **manifest.extra}}
    diversity = manifest.extra["diversity"]
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
            "removal_rate": (counts["drop"] + counts["review"]) / max(sum(counts.values()), 1),
            "human_reviews": manifest.extra["human_reviews"],
            # Rows dropped as copies of rows another source holds first (duplicate_index).
            "copies_of_other_sources": MetadataValue.json(
                manifest.extra["copies_of_other_sources"]),
            "report": MetadataValue.path(files[REPORT_FILE]),
            "review_rows": MetadataValue.path(files[REVIEW_FILE]),
            "audit": MetadataValue.md(audit_markdown(source.name, manifest.extra, all_audits,
                                                     policy)),
            **{f"diversity_{key}": value for key, value in diversity.items()},
            **calibrated,
        },
    )
