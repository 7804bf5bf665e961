"""Sensors: keep the source partitions in step with the sources file."""


from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from assets.partitions import sources_partitions
from assets.raw import raw_sft
from assets.resources import IntegrityResource
from integrity.ingest import load_sources


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
