"""The audit policy: thresholds from a YAML file, validated, and the evaluators checks call.

Detectors measure; the policy decides. Every evaluator returns a ``Verdict`` (passed, a
sentence saying why, and the figures behind it) so Dagster checks and the CLI stay thin.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

import integrity.detect  # noqa: F401  (registers every detector)
from integrity import yaml_files
from integrity.detect import registry
from integrity.detect.registry import Action, Columns, flaw_classes
from integrity.errors import UserError

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "policies" / "default.yaml"  # package data


class PolicyError(UserError, ValueError):
    """The policy file is missing or invalid; the message names the file and the bad key."""


class IngestPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_quarantine_rate: float = Field(0.05, ge=0.0, le=1.0)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _escape(message: str) -> str:
    return message.replace("{", "{{").replace("}", "}}")


def _registry_sections(data, kind: str, sections: dict[str, Callable[[object], object]]):
    """Validate ``data`` (a mapping) key by key with ``sections`` (key -> validator); unknown
    keys and bad values become one ValidationError whose locations name the key."""
    if isinstance(data, BaseModel):
        data = data.model_dump()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{kind} must be a mapping")
    errors: list[InitErrorDetails] = []
    for key in data:
        if key not in sections:
            errors.append(InitErrorDetails(
                type=PydanticCustomError("unknown_flaw_class",
                                         _escape(f"no registered detector decides {key!r}; "
                                                 f"known: {', '.join(sections)}")),
                loc=(key,), input=data[key]))
    values = {}
    for key, validate in sections.items():
        try:
            values[key] = validate(data.get(key))
        except ValidationError as error:
            errors += [InitErrorDetails(type=PydanticCustomError(item["type"],
                                                                 _escape(item["msg"])),
                                        loc=(key, *item["loc"]), input=item["input"])
                       for item in error.errors()]
    if errors:
        raise ValidationError.from_exception_data(kind, errors)
    return values


class _RegistrySections(BaseModel):
    """A mapping with one entry per flaw class of the detector registry, validated entry by
    entry (``_validators``); unknown keys are named, missing ones take their defaults."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def _validators(cls) -> dict[str, Callable[[object], object]]:
        raise NotImplementedError

    @model_validator(mode="wrap")
    @classmethod
    def _from_registry(cls, data, handler):
        if isinstance(data, cls) and set(data.model_extra or {}) == set(flaw_classes()):
            return data
        return handler(_registry_sections(data, cls.__name__, cls._validators()))


class Signals(_RegistrySections):
    """``signals:``: one section per flaw class, each validated by the detector's own model
    (``registry.Flaw.policy``)."""

    @classmethod
    def _validators(cls) -> dict[str, Callable[[object], object]]:
        return {flaw.name: (lambda value, model=flaw.policy: model.model_validate(
            value if value is not None else {})) for flaw in registry.flaws()}

    def section(self, flaw_class: str) -> BaseModel:
        return getattr(self, flaw_class)


_ACTION = TypeAdapter(Action)


class Actions(_RegistrySections):
    """``audit.actions:``: drop | review | keep for every flaw class (default: the flaw's own
    ``action``)."""

    @classmethod
    def _validators(cls) -> dict[str, Callable[[object], object]]:
        return {flaw.name: (lambda value, default=flaw.action: _ACTION.validate_python(
            default if value is None else value)) for flaw in registry.flaws()}


class ScoringPolicy(_Strict):
    min_signal_std: float = Field(0.001, ge=0.0)
    # The model must tell an image's own answer from another image's more often than this
    # (AUC of matched vs shuffled image-answer pairs), or scored_sft blocks naming the model.
    min_model_fit_auc: float = Field(0.75, ge=0.0, le=1.0)
    # Signals scored_sft_distribution requires to vary (an empty list would pass everything).
    model_signals: list[str] = Field(
        default_factory=lambda: ["grounding_cos", "grounding_margin"], min_length=1
    )

    @field_validator("model_signals")
    @classmethod
    def _known_signals(cls, names: list[str]) -> list[str]:
        known = registry.column_worse()
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"unknown signal(s) {unknown}: a detector's numeric column, e.g. "
                             "grounding_cos, grounding_margin, answer_support_prob")
        return names


class AuditPolicy(_Strict):
    actions: Actions = Field(default_factory=Actions)
    weak_grounding_margin: float = 0.0
    max_weak_grounding_share: float = Field(0.05, ge=0.0, le=1.0)
    max_drop_rate: float = Field(0.3, ge=0.0, le=1.0)
    # Over-audit guard across sources (WARN): a source's drop rate may differ from the drop rate
    # over all audited sources by at most this much.
    max_drop_rate_disparity: float = Field(0.15, ge=0.0, le=1.0)
    # Diversity kept (WARN): at least this share of a source's question templates and of its
    # image clusters must keep at least one row.
    diversity_floor: float = Field(0.8, ge=0.0, le=1.0)
    # Which copy of a row found in several sources is kept: the row of the source listed first
    # here, then of the source whose name sorts first; every other copy gets ``duplicate``.
    source_priority: list[str] = Field(default_factory=list)

    def source_rank(self, source: str) -> tuple[int, str]:
        """Lower keeps: the position in ``source_priority`` (unlisted after), then the name."""
        order = self.source_priority
        return (order.index(source) if source in order else len(order), source)


class CurriculumStage(_Strict):
    """One stage of the curriculum: rows of ``modality`` whose difficulty (0 easy .. 1 hard)
    is at most ``max_difficulty`` (None: every remaining row of that modality)."""

    name: str
    modality: Literal["text", "image-text"]
    max_difficulty: float | None = Field(None, ge=0.0, le=1.0)


def _default_stages() -> list[CurriculumStage]:
    return [CurriculumStage(name="text_warmup", modality="text"),
            CurriculumStage(name="easy_visual", modality="image-text", max_difficulty=0.5),
            CurriculumStage(name="hard_visual", modality="image-text")]


MAX_SOURCE_WEIGHT = 100.0  # a source repeated 100 times is already more than a mix should be


class MixPolicy(_Strict):
    """How training_mix balances and orders the kept rows of every audited source."""

    image_share: float = Field(0.5, ge=0.0, le=1.0)  # target share of image-text rows
    image_share_tolerance: float = Field(0.05, ge=0.0, le=0.5)  # the band is target +/- this
    source_weights: dict[str, float] = Field(default_factory=dict)  # relative; default 1.0

    @field_validator("source_weights")
    @classmethod
    def _sane_weights(cls, weights: dict[str, float]) -> dict[str, float]:
        bad = {name: weight for name, weight in weights.items()
               if not (math.isfinite(weight) and 0.0 <= weight <= MAX_SOURCE_WEIGHT)}
        if bad:  # NaN broke the mix; 1e9 copies of a source asked for 8 GB and aborted
            raise ValueError(f"weights must be finite, from 0 to {MAX_SOURCE_WEIGHT:g}: {bad}")
        return weights
    seed: int = 0
    # Rows with several images in the LLaVA export: leave_out (LLaVA-1.5 reads one image per
    # row) or list (the image list LLaVA-NeXT / OneVision read).
    llava_multi_image: Literal["leave_out", "list"] = "leave_out"
    curriculum: list[CurriculumStage] = Field(default_factory=_default_stages, min_length=1)


class CalibrationPolicy(_Strict):
    """How the auditor itself is judged from a labelled sample (``integrity calibrate``)."""

    confidence: float = Field(0.95, gt=0.0, lt=1.0)  # of every interval
    # A threshold is recommended where the labelled sample's precision reaches this.
    target_precision: float = Field(0.9, ge=0.0, le=1.0)
    # WARN (audited_sft_calibrated_precision) when a dropping rule's estimated precision is
    # below this: the rule removes too many good rows.
    min_precision: float = Field(0.8, ge=0.0, le=1.0)


class CheckpointPolicy(_Strict):
    """What a trained checkpoint must show before anything downstream (an RL export) uses it."""

    # The metric the trainer reports for visual reliance (accuracy with the image minus with it
    # blanked); the demo trainer also reports the probability-mass version, which moves first.
    reliance_metric: str = "sampled_visual_reliance"
    min_visual_reliance: float = 0.3
    min_cka: float = Field(0.5, ge=0.0, le=1.0)  # vision tower vs its pretrained self (linear CKA)


class RLProbePolicy(_Strict):
    """When short RL runs from a checkpoint count as reward hacking, and how many may
    (training_rl_probe_hacking_rate; integrity/decide/rl_probe.py)."""

    # A run is a hacking incident when its reward rises while its visual reliance (probability
    # of the right answer with the image minus without) falls by more than this.
    reliance_margin: float = Field(0.1, gt=0.0, le=1.0)
    # Incidents per 100 runs the check allows.
    max_incidents_per_100: float = Field(20.0, ge=0.0, le=100.0)
    # Fewer runs than this fail the check: a rate over a handful of runs says little.
    min_runs: int = Field(3, ge=1)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)  # of the rate's Wilson interval


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ingest: IngestPolicy = Field(default_factory=IngestPolicy)
    signals: Signals = Field(default_factory=Signals)
    scoring: ScoringPolicy = Field(default_factory=ScoringPolicy)
    audit: AuditPolicy = Field(default_factory=AuditPolicy)
    mix: MixPolicy = Field(default_factory=MixPolicy)
    calibration: CalibrationPolicy = Field(default_factory=CalibrationPolicy)
    checkpoint: CheckpointPolicy = Field(default_factory=CheckpointPolicy)
    rl_probe: RLProbePolicy = Field(default_factory=RLProbePolicy)

    def digest(self) -> str:
        """A short hash of the effective policy: part of every version the policy shapes."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


def load_policy(path: str | Path = DEFAULT_POLICY) -> Policy:
    path = Path(path)
    if not path.is_file():
        raise PolicyError(f"policy file {path} does not exist")
    return yaml_files.load_model(path, Policy, PolicyError)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    description: str
    figures: dict = field(default_factory=dict)


def has_rows_verdict(source: str, records_in: int, accepted: int) -> Verdict:
    """Pass when the source gave at least one record (an empty or blank file is a mistake far
    more often than an empty dataset)."""
    if records_in == 0:
        return Verdict(False, f"source {source} holds no records (an empty or blank file)",
                       {"records_in": 0, "accepted": 0})
    return Verdict(True, f"{records_in} records, {accepted} rows accepted",
                   {"records_in": records_in, "accepted": accepted})


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


def flag_expressions(signals: Signals, columns: set[str]) -> dict[str, pl.Expr]:
    """For each flaw class of the registry, a boolean expression over scored pairs: null where
    the class was not evaluated (a column it needs is absent, e.g. scored without a model)."""
    col = Columns(columns)
    flags = {}
    for flaw in registry.flaws():
        if not col.has(*flaw.needs):
            flags[flaw.name] = pl.lit(None, dtype=pl.Boolean)
            continue
        flags[flaw.name] = flaw.flag(signals.section(flaw.name), col).fill_null(False)
    return flags


def action_scope(signals: Signals, columns: set[str]) -> dict[str, pl.Expr]:
    """flaw class -> which of its flagged pairs the class's action applies to, for the classes
    that narrow it (duplicates: the copies, never the original of a group)."""
    col = Columns(columns)
    return {flaw.name: flaw.acts_on(signals.section(flaw.name), col).fill_null(False)
            for flaw in registry.flaws() if flaw.acts_on is not None}


def flag_rows(scored_pairs: pl.DataFrame, policy: Policy, *,
              acted_on: bool = False) -> pl.DataFrame:
    """example_id -> one boolean per flaw class (any of its pairs flagged). With ``acted_on``,
    a class that narrows its action (``Flaw.acts_on``) flags only the pairs in that scope: the
    copies of a duplicate group, not its original. That is what the audit acts on."""
    columns = set(scored_pairs.columns)
    expressions = flag_expressions(policy.signals, columns)
    if acted_on:
        expressions |= {name: expressions[name] & scope
                        for name, scope in action_scope(policy.signals, columns).items()}
    return scored_pairs.select("example_id", **expressions).group_by(
        "example_id", maintain_order=True
    ).agg(pl.col(name).max() for name in expressions)


def coverage_verdict(raw_ids: pl.Series, rows: pl.DataFrame) -> Verdict:
    """Pass when every accepted raw row has exactly one scored row and no signal is NaN."""
    missing = raw_ids.filter(~raw_ids.is_in(rows["example_id"].implode())).len()
    extra = rows.height - rows["example_id"].n_unique() + rows.filter(
        ~pl.col("example_id").is_in(raw_ids.implode())).height
    floats = [name for name, dtype in rows.schema.items() if dtype.is_float()]
    nans = {name: rows[name].is_nan().sum() for name in floats if rows[name].is_nan().any()}
    passed = missing == 0 and extra == 0 and not nans
    problems = [f"{missing} raw rows unscored"] if missing else []
    problems += [f"{extra} scored rows without a raw row"] if extra else []
    problems += [f"NaN in {', '.join(nans)}"] if nans else []
    return Verdict(
        passed=passed,
        description="; ".join(problems) or f"all {raw_ids.len()} rows scored, no NaN",
        figures={"raw_rows": raw_ids.len(), "scored_rows": rows.height, "unscored": missing,
                 "nan_columns": len(nans)},
    )


def distribution_verdict(rows: pl.DataFrame, policy: Policy) -> Verdict:
    """Fail when a model signal is (near) constant over the source: the encoder is broken."""
    bound = policy.scoring.min_signal_std
    present = [name for name in policy.scoring.model_signals if name in rows.columns]
    stds = {name: float(rows[name].drop_nulls().std() or 0.0) for name in present
            if rows[name].drop_nulls().len() > 1}
    flat = sorted(name for name, std in stds.items() if std < bound)
    if not present:
        return Verdict(True, "no model signals in this version (scored without an encoder)")
    return Verdict(
        passed=not flat,
        description=(f"near-constant: {', '.join(flat)} (std < {bound})" if flat
                     else f"all {len(stds)} model signals vary (std >= {bound})"),
        figures={f"std_{name}": std for name, std in stds.items()},
    )


def model_fit_auc(pairs: pl.DataFrame,
                  raw: pl.DataFrame | None = None) -> tuple[float | None, int]:
    """(AUC, pairs) of matched vs shuffled image-answer pairs: the share of image pairs whose
    answer fits its own image better than another image of the source (ties count half).
    None without model scores. With the source's ``raw`` rows, answers nobody claims are right
    (a preference pair's rejected or unranked side) are left out: they are wrong on purpose, and
    would count the data's design against the model."""
    if not {"grounding_cos", "grounding_shuffled_cos"} <= set(pairs.columns):
        return None, 0
    if raw is not None and "pref_role" in raw.columns:
        unclaimed = raw.filter(pl.col("pref_role").is_not_null()
                               & (pl.col("pref_role") != "chosen"))["example_id"]
        pairs = pairs.filter(~pl.col("example_id").is_in(unclaimed.implode()))
    judged = pairs.filter(pl.col("grounding_cos").is_not_null()
                          & pl.col("grounding_shuffled_cos").is_not_null())
    if judged.is_empty():
        return None, 0
    own, other = pl.col("grounding_cos"), pl.col("grounding_shuffled_cos")
    auc = judged.select(((own > other).cast(pl.Float64) + 0.5 * (own == other).cast(pl.Float64))
                        .mean()).item()
    return float(auc), judged.height


def model_fit_verdict(auc: float | None, pairs: int, model_id: str | None, source: str,
                      policy: Policy) -> Verdict:
    """Pass when the model tells matched from shuffled image-answer pairs apart on ``source``
    (AUC at least ``scoring.min_model_fit_auc``). A model that cannot scores noise: every
    grounding and support figure it gives is meaningless there."""
    bound = policy.scoring.min_model_fit_auc
    figures = {"model_fit_auc": auc, "min_model_fit_auc": bound, "pairs": pairs,
               "model_id": model_id}
    if auc is None:
        return Verdict(True, f"no image-answer pairs scored with a model on source {source}",
                       figures)
    if auc < bound:
        return Verdict(False, f"{model_id} cannot tell matched from shuffled image-answer pairs "
                              f"on source {source}: AUC {auc:.2f} < {bound:.2f}; choose a model "
                              "that fits this data (the sources file's model:)", figures)
    return Verdict(True, f"{model_id} tells matched from shuffled pairs apart on source "
                         f"{source}: AUC {auc:.2f} (bound {bound:.2f}, {pairs} pairs)", figures)


def kept_grounding_verdict(verdicts: pl.DataFrame, policy: Policy, *,
                           model_fit: float | None = None,
                           model_id: str | None = None) -> Verdict:
    """The share of kept image rows whose grounding margin is below the policy's is bounded."""
    audit = policy.audit
    if "grounding_margin" not in verdicts.columns:
        return Verdict(True, "no grounding scores (scored without a model)")
    kept = verdicts.filter((pl.col("verdict") == "keep") & (pl.col("modality") == "image-text"))
    if kept.is_empty():  # "0/0 weakly grounded" read as a pass on evidence there was none of
        return Verdict(True, "skipped: no image row was kept, so there is no grounding to "
                             "judge", {"kept_image_rows": 0})
    weak = kept.filter(pl.col("grounding_margin") < audit.weak_grounding_margin).height
    share = weak / kept.height
    passed = share <= audit.max_weak_grounding_share
    cause = ""
    if not passed and model_fit is not None and model_fit < policy.scoring.min_model_fit_auc:
        cause = (f"; the likely cause is the model: {model_id} fits this source poorly "
                 f"(AUC {model_fit:.2f} < {policy.scoring.min_model_fit_auc:.2f})")
    return Verdict(
        passed=passed,
        description=f"{weak}/{kept.height} kept image rows weakly grounded ({share:.1%}, "
                    f"bound {audit.max_weak_grounding_share:.1%}){cause}",
        figures={"weak_grounding_share": share, "max_weak_grounding_share":
                 audit.max_weak_grounding_share, "weak_grounding_margin":
                 audit.weak_grounding_margin, "kept_image_rows": kept.height},
    )


def none_kept_verdict(verdicts: pl.DataFrame, flaw_class: str) -> Verdict:
    """Pass when no kept row carries ``flaw_class`` among its reasons."""
    kept = verdicts.filter((pl.col("verdict") == "keep")
                           & pl.col("reasons").list.contains(flaw_class)).height
    return Verdict(kept == 0, f"{kept} kept rows flagged {flaw_class}",
                   {f"kept_{flaw_class}": kept})


def nothing_lost_verdict(counts: dict[str, int], rows_in: int, quarantined: int,
                         kept_rows: int) -> Verdict:
    """raw rows in = kept + dropped + review + quarantined, and every kept row was written."""
    total = sum(counts.values()) + quarantined
    passed = total == rows_in and kept_rows == counts.get("keep", 0)
    return Verdict(passed, f"{rows_in} in = {counts.get('keep', 0)} kept + "
                           f"{counts.get('drop', 0)} dropped + {counts.get('review', 0)} review + "
                           f"{quarantined} quarantined" + ("" if passed else " (does not add up)"),
                   {"rows_in": rows_in, "quarantined": quarantined, **counts})


def over_audit_verdict(counts: dict[str, int], rows_in: int,
                       all_sources: dict[str, tuple[int, int]], policy: Policy) -> Verdict:
    """Over-audit guard: the dropped share of this source's rows stays under the policy's bound,
    and differs from the share over every audited source by at most the disparity bound.

    ``all_sources``: source -> (dropped, rows in) of each source's latest audit, this one too.
    A detector that misfires on one source's style shows as that source's drop rate alone.
    """
    rate = counts.get("drop", 0) / rows_in if rows_in else 0.0
    dropped = sum(drop for drop, _ in all_sources.values())
    total = sum(rows for _, rows in all_sources.values())
    overall = dropped / total if total else rate
    disparity = abs(rate - overall)
    audit = policy.audit
    problems = []
    if rate > audit.max_drop_rate:
        problems.append(f"{rate:.1%} dropped > {audit.max_drop_rate:.0%}")
    if disparity > audit.max_drop_rate_disparity:
        problems.append(f"drop rate {rate:.1%} vs {overall:.1%} over {len(all_sources)} sources "
                        f"differs by more than {audit.max_drop_rate_disparity:.0%}")
    return Verdict(
        passed=not problems,
        description="; ".join(problems) or f"{rate:.1%} dropped (bound {audit.max_drop_rate:.0%}),"
                    f" {overall:.1%} over {len(all_sources)} sources",
        figures={"drop_rate": rate, "max_drop_rate": audit.max_drop_rate,
                 "drop_rate_all_sources": overall, "drop_rate_disparity": disparity,
                 "max_drop_rate_disparity": audit.max_drop_rate_disparity,
                 "sources": len(all_sources)},
    )


def diversity_verdict(diversity: dict[str, int], policy: Policy) -> Verdict:
    """Diversity kept: the share of question templates and of image clusters with at least one
    kept row is at least the policy's floor (keys as ``audit.diversity_kept`` counts them)."""
    floor = policy.audit.diversity_floor
    figures: dict = {"diversity_floor": floor}
    problems, shares = [], []
    for key in ("question_templates", "image_clusters"):
        total, kept = diversity.get(key, 0), diversity.get(f"{key}_kept", 0)
        if not total:
            continue  # e.g. no image clusters when scored without a model
        share = kept / total
        figures[f"{key}_kept_share"] = share
        shares.append(f"{kept}/{total} {key.replace('_', ' ')}")
        if share < floor:
            problems.append(f"only {kept}/{total} {key.replace('_', ' ')} keep a row "
                            f"({share:.0%} < {floor:.0%})")
    return Verdict(not problems, "; ".join(problems) or
                   (", ".join(shares) + f" keep a row (floor {floor:.0%})" if shares
                    else "nothing to measure"), figures)


def checkpoint_verdicts(metrics: dict, policy: Policy) -> dict[str, Verdict]:
    """The visual-neglect check (reliance) and the modality-alignment check (CKA) of a
    checkpoint's reported metrics; a metric the trainer did not report fails, naming it."""
    bounds = policy.checkpoint
    verdicts = {}
    for check, metric, bound in (("visual_reliance", bounds.reliance_metric,
                                  bounds.min_visual_reliance),
                                 ("cka", "cka", bounds.min_cka)):
        value = metrics.get(metric)
        if not isinstance(value, int | float):
            verdicts[check] = Verdict(False, f"the trainer reported no {metric!r}",
                                      {f"min_{check}": bound})
            continue
        verdicts[check] = Verdict(value >= bound, f"{metric} {value:.3f} (bound >= {bound})",
                                  {metric: value, f"min_{check}": bound})
    return verdicts
