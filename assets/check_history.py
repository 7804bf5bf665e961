"""Dagster's check history, read in one place: which evaluation of a check targeted a given
materialization.

Dagster has no public API for it (1.13: ``DagsterInstance.get_latest_asset_check_evaluation_record``
is neither per partition nor per materialization), so this adapter reads the event log storage's
``get_asset_check_execution_history`` with its ``PartitionKeyFilter`` (``dagster._core``).
tests/dagster/test_check_history.py pins the Dagster version it was written against: an upgrade
fails that test first, and this module is where to look.
"""

from dagster import AssetCheckKey, DagsterInstance
from dagster._core.event_api import PartitionKeyFilter

PAGE = 100
WRITTEN_FOR = "1.13.27"  # the Dagster version this adapter was checked against


def evaluation_for(instance: DagsterInstance, check: AssetCheckKey, partition: str | None,
                   storage_id: int):
    """The latest evaluation of ``check`` that targeted the materialization ``storage_id``, or
    None. Pages back through the history (newest first) and stops at the first evaluation of
    an older materialization: every evaluation of this one is newer than that."""
    cursor = None
    while True:
        page = instance.event_log_storage.get_asset_check_execution_history(
            check, limit=PAGE, cursor=cursor,
            partition_filter=PartitionKeyFilter(key=partition) if partition else None,
        )
        for record in page:
            evaluation = record.event.asset_check_evaluation if record.event is not None else None
            target = evaluation.target_materialization_data if evaluation is not None else None
            if target is None:
                continue  # planned and never evaluated, or evaluated with no materialization
            if target.storage_id == storage_id:
                return evaluation
            if target.storage_id < storage_id:
                return None
        if len(page) < PAGE:
            return None
        cursor = page[-1].id
