"""Verdicts: each scored row gets keep / drop / review with every reason, under a policy.

Detectors measured; ``flag_rows`` (policy.py) turned evidence into one flag per flaw class;
here each flag becomes its class's action (``audit.actions``), the strictest winning
(drop > review > keep). Duplicates are special: only copies are dropped, one original of each
group is kept. ``AuditResult`` asserts the invariant raw = kept + dropped + review + quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from integrity.policy import FLAW_CLASSES, Policy, flag_rows

VERDICTS = ("keep", "review", "drop")
# Bump when a change here changes verdicts for the same input (Dagster code_version).
CODE_VERSION = "audit-3"


@dataclass
class AuditResult:
    verdicts: pl.DataFrame       # example_id, verdict, reasons (list of flaw classes)
    rows_in: int                 # raw rows in, quarantined ones included
    quarantined: int

    def __post_init__(self) -> None:
        counted = self.verdicts.height + self.quarantined
        if counted != self.rows_in:
            raise AssertionError(f"{self.rows_in} raw rows but {counted} audited + quarantined")

    def counts(self) -> dict[str, int]:
        found = dict(self.verdicts.group_by("verdict").len().iter_rows())
        return {verdict: found.get(verdict, 0) for verdict in VERDICTS}

    def reasons(self) -> dict[str, dict[str, int]]:
        """verdict -> reason -> rows (a row with two reasons counts under both)."""
        exploded = self.verdicts.explode("reasons").drop_nulls("reasons")
        table = exploded.group_by("verdict", "reasons").len().sort("verdict", "reasons")
        result: dict[str, dict[str, int]] = {}
        for verdict, reason, count in table.iter_rows():
            result.setdefault(verdict, {})[reason] = count
        return result


def audit_rows(scored_pairs: pl.DataFrame, policy: Policy, *, rows_in: int,
               quarantined: int, reviews: list[dict] | None = None) -> AuditResult:
    """One verdict per example of ``scored_pairs`` (the scored_sft "pairs" table).

    ``reviews`` (example_id, verdict) are human verdicts: they replace the automatic verdict
    and add the reason ``human_review``.
    """
    flags = flag_rows(scored_pairs, policy, also_any=("dup_is_copy",)).with_columns(
        duplicate=pl.col("duplicate") & pl.col("dup_is_copy").fill_null(False)
    )
    actions = policy.audit.actions.model_dump()
    # Reasons in FLAW_CLASSES order, gathered from the long form: 4x faster than a list per row.
    flagged = flags.unpivot(index="example_id", on=list(FLAW_CLASSES), variable_name="reason")
    reasons = flagged.filter(pl.col("value").fill_null(False)).group_by("example_id").agg(
        reasons="reason")
    flags = flags.join(reasons, on="example_id", how="left", maintain_order="left")
    by_action = {
        action: [name for name in FLAW_CLASSES if actions[name] == action]
        for action in ("drop", "review")
    }

    def any_of(names: list[str]) -> pl.Expr:
        return pl.any_horizontal(pl.col(name).fill_null(False) for name in names) if names \
            else pl.lit(False)

    verdicts = flags.select(
        "example_id",
        verdict=pl.when(any_of(by_action["drop"])).then(pl.lit("drop"))
        .when(any_of(by_action["review"])).then(pl.lit("review"))
        .otherwise(pl.lit("keep")),
        reasons=pl.col("reasons").fill_null(pl.lit([], dtype=pl.List(pl.String))),
    )
    if reviews:
        human = pl.DataFrame([{"example_id": r["example_id"], "human": r["verdict"]}
                              for r in reviews], schema={"example_id": pl.String,
                                                         "human": pl.String})
        verdicts = verdicts.join(human, on="example_id", how="left", maintain_order="left").select(
            "example_id",
            verdict=pl.coalesce("human", "verdict"),
            reasons=pl.when(pl.col("human").is_not_null())
            .then(pl.col("reasons").list.concat(pl.lit(["human_review"])))
            .otherwise("reasons"),
        )
    return AuditResult(verdicts=verdicts, rows_in=rows_in, quarantined=quarantined)
