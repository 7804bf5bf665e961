"""Verdicts: each scored row gets keep / drop / review with every reason, under a policy.

Detectors measured; ``flag_rows`` (policy.py) turned evidence into one flag per flaw class of
the detector registry; here each flag becomes its class's action (``audit.actions``), the
strictest winning (drop > review > keep). A class may narrow the rows its action applies to
(``Flaw.acts_on``): duplicates drop only the copies, one original of each group is kept and
carries no reason. ``AuditResult`` asserts the invariant raw = kept + dropped + review + quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from integrity.decide.policy import Policy, flag_rows
from integrity.detect.registry import flaw_classes
from integrity.detect.registry import flaws as registry_flaws

VERDICTS = ("keep", "review", "drop")
# Bump when a change here changes verdicts for the same input (Dagster code_version).
CODE_VERSION = "audit-5"


def none_kept_check_name(flaw_class: str) -> str:
    """The name of the blocking audited_sft check that no kept row carries ``flaw_class``."""
    return f"audited_sft_no_{flaw_class}"


def blocking_check_names() -> tuple[str, ...]:
    """The blocking checks on audited_sft a consumer's gate requires to have passed."""
    return ("audited_sft_grounding",
            *(none_kept_check_name(f.name) for f in registry_flaws() if f.blocking_none_kept),
            "audited_sft_nothing_lost")


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


_KIND_ORDER = {"exact": 0, "near_text": 1, "near_image": 2}


def counted_matches(matches: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """The cross-source matches (``cross_source.MATCH_SCHEMA``) that are copies under the
    policy's duplicate thresholds (``signals.duplicate``), as within one source."""
    duplicate = policy.signals.duplicate
    return matches.filter(
        ((pl.col("kind") == "exact") & duplicate.exact)
        | ((pl.col("kind") == "near_text") & (pl.col("similarity") >= duplicate.text_sim_min))
        | ((pl.col("kind") == "near_image")
           & (pl.col("similarity") >= duplicate.near_image_sim_min)))


def copies_of_better_sources(matches: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """source, example_id, duplicate_of ("<source>/<example_id>"): every row that copies a row
    of a source the keep rule ranks first (``audit.source_priority``, then the source name),
    under the policy's duplicate thresholds; the copy named is the first-ranked one. The rule
    looks at sources, never at which was indexed first, so any order gives the same rows."""
    counted = counted_matches(matches, policy)
    names = sorted(set(counted["source"]) | set(counted["other_source"]),
                   key=policy.audit.source_rank)
    rank = {name: position for position, name in enumerate(names)}
    schema = {"source": pl.String, "example_id": pl.String, "duplicate_of": pl.String}
    if counted.is_empty():
        return pl.DataFrame(schema=schema)
    return counted.with_columns(
        rank=pl.col("source").replace_strict(rank, return_dtype=pl.Int64),
        other_rank=pl.col("other_source").replace_strict(rank, return_dtype=pl.Int64),
        kind_order=pl.col("kind").replace_strict(_KIND_ORDER, return_dtype=pl.Int64),
    ).filter(pl.col("other_rank") < pl.col("rank")).sort(
        ["source", "example_id", "other_rank", "kind_order", "similarity", "other_example_id"],
        descending=[False, False, False, False, True, False],
    ).unique(["source", "example_id"], keep="first", maintain_order=True).select(
        "source", "example_id",
        duplicate_of=pl.concat_str("other_source", "other_example_id", separator="/"))


def audit_rows(scored_pairs: pl.DataFrame, policy: Policy, *, rows_in: int,
               quarantined: int, reviews: list[dict] | None = None,
               copies: pl.DataFrame | None = None) -> AuditResult:
    """One verdict per example of ``scored_pairs`` (the scored_sft "pairs" table).

    ``reviews`` (example_id, verdict) are human verdicts: they replace the automatic verdict
    and add the reason ``human_review``. ``copies`` (example_id, duplicate_of: from
    ``copies_of_better_sources``) are rows another source holds first: flagged ``duplicate``,
    and the verdicts name the row kept (``duplicate_of``, null elsewhere).
    """
    classes = list(flaw_classes())
    flags = flag_rows(scored_pairs, policy, acted_on=True)
    copies = (copies if copies is not None else pl.DataFrame(
        schema={"example_id": pl.String, "duplicate_of": pl.String})).select(
        "example_id", "duplicate_of")
    flags = flags.join(copies, on="example_id", how="left", maintain_order="left").with_columns(
        duplicate=pl.col("duplicate").fill_null(False) | pl.col("duplicate_of").is_not_null())
    actions = policy.audit.actions.model_dump()
    # Reasons in registry order, gathered from the long form: 4x faster than a list per row.
    flagged = flags.unpivot(index="example_id", on=classes, variable_name="reason")
    reasons = flagged.filter(pl.col("value").fill_null(False)).group_by("example_id").agg(
        reasons="reason")
    flags = flags.join(reasons, on="example_id", how="left", maintain_order="left")
    by_action = {
        action: [name for name in classes if actions[name] == action]
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
        duplicate_of="duplicate_of",
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
            duplicate_of="duplicate_of",
        )
    return AuditResult(verdicts=verdicts, rows_in=rows_in, quarantined=quarantined)
