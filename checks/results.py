"""A policy Verdict as a Dagster check result, with its figures as metadata (plotted over time)."""

from dagster import AssetCheckResult, AssetCheckSeverity

from integrity.policy import Verdict


def check_result(verdict: Verdict, version: str,
                 severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
                 metadata: dict | None = None) -> AssetCheckResult:
    return AssetCheckResult(
        passed=verdict.passed,
        severity=severity,
        description=verdict.description,
        metadata={"version": version, **verdict.figures, **(metadata or {})},
    )
