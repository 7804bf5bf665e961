"""Which store version an asset or check reads: the one a partition last materialized."""

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, EventLogRecord


def latest_materialization(instance: DagsterInstance, asset_key: AssetKey,
                           partition: str | None) -> EventLogRecord | None:
    """The event record of ``asset_key``'s latest materialization (of ``partition``), or None."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key,
                           asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    return records[0] if records else None


def materialized_version(context, asset_key: AssetKey) -> str:
    """The ``version`` metadata of the latest materialization of the context's partition."""
    partition = context.partition_key if context.has_partition_key else None
    record = latest_materialization(context.instance, asset_key, partition)
    if record is None:
        raise LookupError(f"{asset_key.to_user_string()} [{partition}] was never materialized")
    return record.asset_materialization.metadata["version"].value
