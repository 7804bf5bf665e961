"""Which store version a check should look at: the one its asset's partition last materialized."""


from dagster import AssetCheckExecutionContext, AssetKey, AssetRecordsFilter


def materialized_version(context: AssetCheckExecutionContext, asset_key: AssetKey) -> str:
    """The ``version`` metadata of the latest materialization of the check's partition."""
    partitions = [context.partition_key] if context.has_partition_key else None
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=partitions), limit=1
    ).records
    if not records:
        raise LookupError(f"{asset_key.to_user_string()} {partitions or ''} was never materialized")
    return records[0].asset_materialization.metadata["version"].value
