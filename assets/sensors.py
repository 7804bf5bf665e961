"""Sensors: keep the source partitions in step with the sources file and the landing zone."""

from pathlib import Path

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster_aws.s3 import S3Resource

from assets.automation import audit_job
from assets.partitions import sources_partitions
from assets.raw import raw_sft
from assets.resources import IntegrityResource
from integrity.ingest import load_sources
from integrity.ingest.landing import landed_sources, unready_reasons


@sensor(asset_selection=[raw_sft], default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60)
def sources_sensor(context: SensorEvaluationContext, integrity: IntegrityResource) -> SensorResult:
    """Register every new source of the sources file as a partition and ingest it once."""
    names = [source.name for source in load_sources(integrity.sources_file)]
    known = set(context.instance.get_dynamic_partitions(sources_partitions.name))
    new = [name for name in names if name not in known]
    return SensorResult(
        run_requests=[RunRequest(partition_key=name, run_key=f"register-{name}") for name in new],
        dynamic_partitions_requests=[sources_partitions.build_add_request(new)] if new else [],
    )


def _s3_keys(s3: S3Resource, root: str) -> list[str]:
    """Every object key under the s3:// prefix ``root``, relative to it."""
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    pages = s3.get_client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix)
    return [item["Key"][len(prefix):] for page in pages for item in page.get("Contents", [])]


def _local_keys(root: str) -> list[str]:
    base = Path(root)
    return [str(path.relative_to(base)) for path in base.rglob("*") if path.is_file()]


@sensor(job=audit_job, default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=60)
def landing_sensor(context: SensorEvaluationContext, integrity: IntegrityResource,
                   s3: S3Resource) -> SensorResult | SkipReason:
    """Register each shard of the landing zone whose marker (_SUCCESS) has landed as a source
    partition and launch its ingest -> score -> audit run, once (the run key is the shard)."""
    root = integrity.landing_root
    if not root:
        return SkipReason("no landing zone configured (INTEGRITY_LANDING)")
    keys = _s3_keys(s3, root) if root.startswith("s3://") else _local_keys(root)
    for shard, reason in unready_reasons(root, keys).items():
        context.log.warning(f"landing shard {shard} not ingested: {reason}")
    known = set(context.instance.get_dynamic_partitions(sources_partitions.name))
    new = [source.name for source in landed_sources(root, keys) if source.name not in known]
    return SensorResult(
        run_requests=[RunRequest(partition_key=name, run_key=f"landed-{name}") for name in new],
        dynamic_partitions_requests=[sources_partitions.build_add_request(new)] if new else [],
    )
