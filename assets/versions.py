"""Which store version an asset or check reads: the one a partition last materialized."""

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, EventLogRecord

from integrity.names import (
    AUDITED_SFT,
    DUPLICATE_INDEX,
    RAW_SFT,
    RL_READY_CHECKPOINT,
    SCORED_SFT,
    TRAINING_CHECKPOINT,
    TRAINING_MIX,
    TRAINING_RL_PROBE,
)

# The store assets this code location materializes (tests/test_definitions.py keeps it equal to
# the Definitions' assets). Others (calibration: human labels through the CLI) stay the store's.
MATERIALIZED_ASSETS = frozenset({RAW_SFT, SCORED_SFT, DUPLICATE_INDEX, AUDITED_SFT,
                                 TRAINING_MIX, TRAINING_CHECKPOINT, TRAINING_RL_PROBE,
                                 RL_READY_CHECKPOINT})


def latest_materialization(instance: DagsterInstance, asset_key: AssetKey,
                           partition: str | None) -> EventLogRecord | None:
    """The event record of ``asset_key``'s latest materialization (of ``partition``), or None."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key,
                           asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    return records[0] if records else None


PAGE = 50  # materialization records read at a time


class MaterializedVersions:
    """The store's "latest" inside Dagster (``VersionStore(latest_from=...)``): the ``version``
    metadata of the partition's latest materialization, so a run never reads a version that
    Dagster did not materialize (and check), such as one the CLI wrote beside it."""

    assets = MATERIALIZED_ASSETS

    def __init__(self, instance: DagsterInstance) -> None:
        self.instance = instance

    def __call__(self, asset: str, partition: str | None) -> str | None:
        """The newest materialization's version, passing over those that say they were not
        published (a mix that failed its checks: the store never serves it as latest)."""
        records_filter = AssetRecordsFilter(
            asset_key=AssetKey(asset), asset_partitions=[partition] if partition else None)
        cursor = None
        while True:
            page = self.instance.fetch_materializations(records_filter, limit=PAGE,
                                                        cursor=cursor)
            for record in page.records:
                metadata = record.asset_materialization.metadata
                if "published" not in metadata or metadata["published"].value:
                    return metadata["version"].value
            if not page.has_more:
                return None
            cursor = page.cursor


def materialized_version(context, asset_key: AssetKey) -> str:
    """The ``version`` metadata of the latest materialization of the context's partition."""
    partition = context.partition_key if context.has_partition_key else None
    record = latest_materialization(context.instance, asset_key, partition)
    if record is None:
        raise LookupError(f"{asset_key.to_user_string()} [{partition}] was never materialized")
    return record.asset_materialization.metadata["version"].value
