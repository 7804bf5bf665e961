"""A policy Verdict as a Dagster check result, with its figures as metadata (plotted over time)."""

from dagster import AssetCheckResult, AssetCheckSeverity

from integrity.decide.policy import Verdict


DISPLAY_DECIMALS = 4  # the UI shows 0.1783, not 0.17833333333333334 (the store keeps it all)


def _shown(value: object) -> object:
    return round(value, DISPLAY_DECIMALS) if isinstance(value, float) else value


def check_result(verdict: Verdict, version: str,
                 severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
                 metadata: dict | None = None) -> AssetCheckResult:
    return AssetCheckResult(
        passed=verdict.passed,
        severity=severity,
        description=verdict.description,
        metadata={"version": version,
                  **{name: _shown(value) for name, value in verdict.figures.items()},
                  **(metadata or {})},
    )
