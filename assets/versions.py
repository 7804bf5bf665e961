"""Which store version an asset or check reads: the one a partition last materialized."""

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance


def materialized_version(context, asset_key: AssetKey) -> str:
    """The ``version`` metadata of the latest materialization of the context's partition."""
    return latest_version(context.instance, asset_key,
                          context.partition_key if context.has_partition_key else None)


def latest_version(instance: DagsterInstance, asset_key: AssetKey, partition: str | None) -> str:
    """The ``version`` metadata of ``asset_key``'s latest materialization (of ``partition``)."""
    partitions = [partition] if partition else None
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=partitions), limit=1
    ).records
    if not records:
        raise LookupError(f"{asset_key.to_user_string()} {partitions or ''} was never materialized")
    return records[0].asset_materialization.metadata["version"].value
