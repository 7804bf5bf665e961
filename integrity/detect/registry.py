"""The detector registry: each detector declares itself here once; decisions derive from it.

A detector module ends with one ``register(Detector(...))`` call that says everything the rest of
the product needs to know about it:

- ``name`` and ``columns``: the pair-level columns it writes (prefixed by its name by
  convention), each with the direction that is worse, which is how ``score_rows`` rolls pairs
  up to one row per example (the worst pair decides);
- ``score``: the function that measures, ``(ScoringContext) -> frame of its columns``;
- ``flaws``: the flaw classes its evidence decides, each with its policy section (a pydantic
  model under ``signals:``), its flag expression, its default action under ``audit.actions:``,
  the rows an action applies to (duplicates: only the copies) and whether a blocking
  ``audited_sft_no_<class>`` check guards it;
- ``thresholds``: the continuous signals the policy cuts (report histograms draw the cut,
  calibration sweeps it) and ``histograms``: further signals the report draws.

``integrity.decide.policy`` (validation of ``signals:`` and ``audit.actions:``, flags), ``audit``
(reasons and actions), the HTML report, calibration and the audited checks read this registry,
so a new detector is one module, its default policy entry and its tests.

Detectors measure; the policy decides: a detector never holds a threshold, its flags are
expressions over its columns and its policy section.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
from pydantic import BaseModel

if TYPE_CHECKING:
    from integrity.detect.context import ScoringContext

# How a pair-level column becomes a row-level one: the worst pair's value.
Worse = Literal["higher", "lower", "any", "first"]
Action = Literal["drop", "review", "keep"]
ACTIONS: tuple[str, ...] = ("drop", "review", "keep")


class Columns:
    """Column lookup for flag expressions: a column the scored frame lacks (its detector did
    not run, e.g. no model) reads as null, so its flag is null: not evaluated."""

    def __init__(self, present: set[str] | frozenset[str]) -> None:
        self.present = frozenset(present)

    def __call__(self, name: str) -> pl.Expr:
        return pl.col(name) if name in self.present else pl.lit(None, dtype=pl.Boolean)

    def has(self, *names: str) -> bool:
        return all(name in self.present for name in names)


FlagRule = Callable[[Any, Columns], pl.Expr]


@dataclass(frozen=True)
class Flaw:
    """A flaw class: what a row flagged with it is, and how the policy decides it.

    ``flag(section, col)``: boolean expression over scored pairs (null = not evaluated).
    ``acts_on(section, col)``: the flagged pairs the class's action applies to (None: all of
    them); duplicates keep one original of each group. ``needs``: columns without which the
    class is not evaluated at all (its flag is null for every row, e.g. scored without a model).
    """

    name: str
    policy: type[BaseModel]
    flag: FlagRule
    description: str
    action: Action = "drop"
    acts_on: FlagRule | None = None
    blocking_none_kept: bool = False
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Threshold:
    """Where the policy cuts one continuous signal: the setting holding the cut (a dotted path
    into the policy), the side of it that is flagged, and the flaw class it is evidence of."""

    signal: str
    setting: str
    side: Literal["<", ">="]
    flaw_class: str

    def value(self, policy) -> float:
        node = policy
        for part in self.setting.split("."):
            node = getattr(node, part)
        return float(node)


@dataclass(frozen=True)
class Detector:
    """One kind of evidence. ``score`` returns exactly ``columns``, one row per pair."""

    name: str
    columns: dict[str, Worse]
    score: Callable[[ScoringContext], pl.DataFrame]
    description: str
    needs_encoder: bool = False
    flaws: tuple[Flaw, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    histograms: tuple[str, ...] = ()
    after: tuple[str, ...] = ()  # detectors whose columns ``score`` reads
    # The QA pairs' columns ``score``, its prefetch and the shared evidence they ask for read:
    # scoring drops a column once no detector left to run reads it. None: any column.
    reads: tuple[str, ...] | None = None
    # Shared evidence ``score`` will ask the context for that reads no detector's columns
    # (decoded images): started on a background thread when scoring starts, so it is ready,
    # or nearly, by the time ``score`` runs.
    prefetch: Callable[[ScoringContext], Any] | None = None

    def __post_init__(self) -> None:
        bad = {name: worse for name, worse in self.columns.items()
               if worse not in ("higher", "lower", "any", "first")}
        if bad:
            raise ValueError(f"detector {self.name}: unknown worse direction {bad}")


@dataclass
class _Registry:
    detectors: dict[str, Detector] = field(default_factory=dict)
    generation: int = 0


_REGISTRY = _Registry()


def register(detector: Detector) -> Detector:
    """Add ``detector`` (after the detectors it reads); a second detector of the same name, a
    column or flaw class another detector owns, or a missing dependency is an error."""
    if detector.name in _REGISTRY.detectors:
        raise ValueError(f"a detector named {detector.name!r} is registered already")
    missing = [name for name in detector.after if name not in _REGISTRY.detectors]
    if missing:
        raise ValueError(f"detector {detector.name} reads {missing}: register those first")
    owned_columns = {c for d in _REGISTRY.detectors.values() for c in d.columns}
    owned_flaws = {f.name for d in _REGISTRY.detectors.values() for f in d.flaws}
    clash = (set(detector.columns) & owned_columns) | ({f.name for f in detector.flaws}
                                                       & owned_flaws)
    if clash:
        raise ValueError(f"detector {detector.name}: {sorted(clash)} belong to another detector")
    for threshold in detector.thresholds:
        if threshold.signal not in detector.columns:
            raise ValueError(f"detector {detector.name}: threshold on {threshold.signal}, "
                             "which it does not write")
    _REGISTRY.detectors[detector.name] = detector
    _REGISTRY.generation += 1
    return detector


def unregister(name: str) -> None:
    """Remove a detector (tests that register a toy detector clean up with this)."""
    if any(name in d.after for d in _REGISTRY.detectors.values() if d.name != name):
        raise ValueError(f"other detectors read {name}")
    del _REGISTRY.detectors[name]
    _REGISTRY.generation += 1


@contextmanager
def registered(detector: Detector) -> Iterator[Detector]:
    """``detector`` registered for the duration of a with-block."""
    register(detector)
    try:
        yield detector
    finally:
        unregister(detector.name)


def detectors() -> tuple[Detector, ...]:
    """Every registered detector, in registration order (dependencies first)."""
    return tuple(_REGISTRY.detectors.values())


def detector(name: str) -> Detector:
    return _REGISTRY.detectors[name]


def flaws() -> tuple[Flaw, ...]:
    """Every flaw class, in registration order (the order reasons are listed in)."""
    return tuple(f for d in _REGISTRY.detectors.values() for f in d.flaws)


def flaw_classes() -> tuple[str, ...]:
    return tuple(f.name for f in flaws())


def thresholds() -> dict[str, Threshold]:
    """signal -> where the policy cuts it, for every thresholded signal."""
    return {t.signal: t for d in _REGISTRY.detectors.values() for t in d.thresholds}


def histogram_signals() -> tuple[str, ...]:
    """The signals the report draws: every detector's thresholds and extra histograms."""
    seen: dict[str, None] = {}
    for d in _REGISTRY.detectors.values():
        for name in (*(t.signal for t in d.thresholds), *d.histograms):
            seen.setdefault(name, None)
    return tuple(seen)


def column_worse() -> dict[str, Worse]:
    """column -> its worse direction, over every detector."""
    return {c: w for d in _REGISTRY.detectors.values() for c, w in d.columns.items()}


def generation() -> int:
    """Changes whenever a detector is registered or removed (for caches keyed on the registry)."""
    return _REGISTRY.generation
