"""The audit policy: thresholds from a YAML file, validated, and the evaluators checks call.

Detectors measure; the policy decides. Every evaluator returns a ``Verdict`` (passed, a
sentence saying why, and the figures behind it) so Dagster checks and the CLI stay thin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"


class PolicyError(ValueError):
    """The policy file is missing or invalid; the message names the file and the bad key."""


class IngestPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_quarantine_rate: float = Field(0.05, ge=0.0, le=1.0)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ingest: IngestPolicy = Field(default_factory=IngestPolicy)

    def digest(self) -> str:
        """A short hash of the effective policy: part of every version the policy shapes."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


def load_policy(path: str | Path = DEFAULT_POLICY) -> Policy:
    path = Path(path)
    if not path.is_file():
        raise PolicyError(f"policy file {path} does not exist")
    try:
        return Policy.model_validate(yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError as error:
        raise PolicyError(f"{path} is not valid YAML: {error}") from error
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()
        )
        raise PolicyError(f"{path}: {problems}") from error


@dataclass(frozen=True)
class Verdict:
    passed: bool
    description: str
    figures: dict = field(default_factory=dict)


def quarantine_rate_verdict(rows_in: int, quarantined: int, policy: Policy) -> Verdict:
    """Pass when the quarantined share of a source's rows is at most the policy's bound."""
    rate = quarantined / rows_in if rows_in else 0.0
    bound = policy.ingest.max_quarantine_rate
    passed = rows_in > 0 and rate <= bound
    why = "no rows came in" if rows_in == 0 else f"{quarantined}/{rows_in} rows quarantined"
    return Verdict(
        passed=passed,
        description=f"{why} ({rate:.2%}, bound {bound:.2%})",
        figures={"rows_in": rows_in, "quarantined": quarantined, "quarantine_rate": rate,
                 "max_quarantine_rate": bound},
    )
