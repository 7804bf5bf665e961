"""The in-code gate: a consumer refuses an upstream whose blocking checks failed or never ran.

Dagster blocks downstream steps only inside the run where a blocking check failed; a later
manual, scheduled or sensor run of the consumer is not stopped (see shared NOTES). So every
consumer calls ``require_checks_passed`` first: it looks up the upstream partition's latest
materialization and the latest evaluation of each of its blocking checks against exactly that
materialization, and raises ``GateClosed`` naming every check that failed or never ran.
"""

from dagster import AssetCheckKey, AssetKey

from assets.check_history import evaluation_for
from assets.versions import latest_materialization


class GateClosed(Exception):
    """The upstream version may not be consumed; the message names the checks."""


_SAME_PARTITION = object()


def require_checks_passed(context, upstream: AssetKey, checks: tuple[str, ...],
                          partition=_SAME_PARTITION) -> str:
    """The upstream partition's latest store version, if its blocking ``checks`` passed on it.

    ``partition``: the upstream partition to read; by default the consumer's own (an
    unpartitioned consumer of a partitioned upstream names each one). The consumer names the
    checks (not the run's job), so a run that leaves them out cannot slip past the gate;
    tests/test_definitions.py keeps the names equal to the blocking checks.
    """
    if partition is _SAME_PARTITION:
        partition = context.partition_key if context.has_partition_key else None
    instance = context.instance
    latest = latest_materialization(instance, upstream, partition)
    where = f"{upstream.to_user_string()}" + (f"[{partition}]" if partition else "")
    if latest is None:
        raise GateClosed(f"{where} was never materialized")
    problems = []
    for check in (AssetCheckKey(upstream, name) for name in checks):
        evaluation = evaluation_for(instance, check, partition, latest.storage_id)
        if evaluation is None:
            problems.append(f"{check.name} never ran on it")
        elif not evaluation.passed and evaluation.severity.value == "ERROR":
            problems.append(f"{check.name} failed ({evaluation.description or 'no description'})")
    if problems:
        raise GateClosed(f"refusing {where} (latest materialization, run "
                         f"{latest.run_id[:8]}): " + "; ".join(problems))
    return latest.asset_materialization.metadata["version"].value
