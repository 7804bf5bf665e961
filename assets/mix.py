"""training_mix: the kept rows of every audited source, balanced, ordered and exported."""

import json

from dagster import (
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.audited import AUDITED_SFT_BLOCKING_CHECKS, audited_sft
from assets.duplicate_index import duplicate_index
from assets.gate import GateClosed, require_checks_passed
from assets.partitions import sources_partitions
from assets.resources import IntegrityResource
from assets.lineage_tables import consumed_versions, counts_table
from integrity.mix import training_mix as mix
from integrity.store.lineage import upstream_of
from integrity.decide.gate import TRAINING_MIX_CHECKS
from integrity.names import AUDITED_SFT, MIX_LLAVA_FILE, TRAINING_MIX
from integrity.stages import mix_to_store

# What training_checkpoint requires to have passed on the mix it trains on (checks/mix.py).
TRAINING_MIX_BLOCKING_CHECKS = tuple(TRAINING_MIX_CHECKS)


@asset(
    deps=[audited_sft, duplicate_index],
    code_version=mix.CODE_VERSION,
    group_name="training",
    # Unpartitioned over every source: on_cron/eager would not see per-partition check
    # failures, so the mix is built by the nightly job and by hand, and gates itself in code.
    automation_condition=None,
    kinds={"polars", "parquet"},
)
def training_mix(context: AssetExecutionContext, integrity: IntegrityResource) -> MaterializeResult:
    """One training set from the audited version of every registered source: modality inside
    the policy's band, per-source weights, curriculum order; exported for LLaVA and
    LLaMA-Factory. Refuses when any source's latest audit failed its blocking checks or never
    ran: training must not start on data that failed (fix or remove the source)."""
    store, policy = integrity.store(context.instance), integrity.policy()
    sources = sorted(context.instance.get_dynamic_partitions(sources_partitions.name))
    if not sources:
        raise GateClosed("no sources are registered: nothing to mix")
    audited, refused = {}, []
    for source in sources:
        try:
            audited[source] = require_checks_passed(context, audited_sft.key,
                                                    AUDITED_SFT_BLOCKING_CHECKS, partition=source)
        except GateClosed as error:
            refused.append(str(error))
    if refused:
        raise GateClosed("; ".join(refused))
    gate = {f"{AUDITED_SFT}/{source}": {"version": version,
                                        "checks_passed": list(AUDITED_SFT_BLOCKING_CHECKS)}
            for source, version in audited.items()}
    frame, manifest, files = mix_to_store(audited, store, policy, gate=gate,
                                          eval_sets=integrity.eval_sets())
    summary, failed = manifest.extra["summary"], manifest.extra["failed_checks"]
    context.log.info(f"mix {manifest.version}: {summary['rows']} rows, image share "
                     f"{summary['image_share']:.1%}, from {audited}")
    if failed:  # the checks below fail too and block training; the store never serves it
        context.log.warning(f"mix {manifest.version} failed {', '.join(failed)}: not published "
                            "as the latest mix, no exports written")
    exports = {"llava_export": MetadataValue.path(files[MIX_LLAVA_FILE]),
               "llamafactory_dataset_info": MetadataValue.path(files["dataset_info.json"]),
               "exports": MetadataValue.json(manifest.extra["exports"])} if files else {}
    return MaterializeResult(
        data_version=DataVersion(manifest.version),
        metadata={
            "dagster/row_count": frame.height,
            "version": manifest.version,
            "version_uri": MetadataValue.path(store.uri(TRAINING_MIX, manifest.version)),
            "policy": policy.digest(),
            "image_share": summary["image_share"],
            "upsampled_copies": summary["upsampled_copies"],
            "copies_removed": MetadataValue.json(manifest.extra["copies_removed"]),
            # Dagster records one combined input version for all partitions: the store's
            # manifest and this entry name the audited version of every source.
            "audited_versions": MetadataValue.json(audited),
            "consumed_versions": consumed_versions(upstream_of(store, TRAINING_MIX,
                                                               manifest.version)),
            "per_stage": counts_table(summary["per_stage"], "stage"),
            "per_source": counts_table(summary["per_source"], "source"),
            "published": not failed,
            "failed_checks": ", ".join(failed) or "none",
            **exports,
            "summary": MetadataValue.md("```json\n" + json.dumps(summary, indent=2) + "\n```"),
        },
    )
