"""Detectors: each measures one kind of evidence; none decides (the policy does).

Every detector module registers itself (``registry.register``) with the columns it writes,
prefixed with its name, one row per QA pair (``pairs.qa_pairs``). Importing this package
registers them all, dependencies first; the table of what each measures is the registry
itself (``registry.detectors()``), and README's "Detectors" section.

``encoder`` is the open_clip model the model-based detectors use (batched, device-aware,
cached by content hash). ``score_pairs`` runs every registered detector over one source's
raw_sft rows; ``score_rows``
rolls pairs up to one row per example (the worst pair's evidence), which is what scored_sft
holds.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from integrity.detect.context import ScoringContext
from integrity.detect.pairs import qa_pairs
from integrity.detect.registry import column_worse, detectors

# Bump when a detector changes its output for the same input (Dagster code_version).
CODE_VERSION = "scoring-6"

# The detectors, in the order they run and their flaw classes are listed in (a detector after
# those whose columns it reads). Each module registers itself on import.
DETECTOR_MODULES = ("grounding", "answer_support", "caption_leakage", "blind", "preference",
                    "contradiction", "duplicates", "image_sanity", "diversity")
for _module in DETECTOR_MODULES:
    importlib.import_module(f"integrity.detect.{_module}")

PAIR_KEYS = ("example_id", "pair", "question", "answer", "image_sha256")


def score_pairs(raw: pl.DataFrame, *, encoder=None, eval_images: set[str] | None = None,
                eval_questions: set[str] | None = None,
                storage_options: dict | None = None) -> pl.DataFrame:
    """Every registered detector over the rows of one source; one row per QA pair.

    Without an ``encoder`` the detectors that need a model are skipped (their columns are
    absent, so the flaw classes they decide are not evaluated); everything else needs none.
    """
    started = time.perf_counter()
    context = scoring_context(qa_pairs(raw), encoder=encoder, eval_images=eval_images,
                              eval_questions=eval_questions, storage_options=storage_options,
                              qa_seconds=time.perf_counter() - started)
    return _run_detectors(context)


def scoring_context(pairs: pl.DataFrame, *, encoder=None, eval_images: set[str] | None = None,
                    eval_questions: set[str] | None = None,
                    storage_options: dict | None = None,
                    qa_seconds: float = 0.0) -> ScoringContext:
    """What the detectors of one source get: its QA pairs (``qa_pairs`` of its rows, which
    ``qa_seconds`` took) and the model. Scoring drops the pairs' columns as the detectors are
    done with them: a caller that keeps its own reference to ``pairs`` keeps every column."""
    return ScoringContext(pairs, encoder=encoder, storage_options=storage_options or {},
                          eval_images=eval_images or set(),
                          eval_questions=eval_questions or set(),
                          seconds={"qa_pairs": qa_seconds})


def score_source(context: ScoringContext) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame,
                                                   dict[str, float]]:
    """``score_pairs`` of a source's ``scoring_context`` plus its copy keys for the duplicate
    index: (scored pairs, ``cross_source.source_keys``, ``cross_source.source_images``, wall
    seconds per step); the images are decoded once for all three."""
    from integrity.detect.cross_source import KEY_READS, source_images, source_keys

    def copy_keys() -> pl.DataFrame:
        started = time.perf_counter()
        keys = source_keys(context.pairs)
        context.seconds["copy_keys"] = time.perf_counter() - started
        return keys

    pairs = _run_detectors(context, meanwhile=lambda: context.shared("copy_keys", copy_keys),
                           keep=KEY_READS)
    keys = context.shared("copy_keys", copy_keys)  # computed by ``meanwhile``
    started = time.perf_counter()
    images = source_images(context.pairs, context.image_stats())
    context.seconds["copy_keys"] += time.perf_counter() - started
    return pairs, keys, images, context.seconds


def _run_detectors(context: ScoringContext, meanwhile: Callable[[], object] | None = None,
                   keep: tuple[str, ...] = ()) -> pl.DataFrame:
    """Every runnable detector's columns beside the pair keys. ``meanwhile()``: work that reads
    no detector's output, run on this thread just before the first detector whose evidence
    was started in the background, which would otherwise wait for it (at 1M rows the copy
    keys take 5 s that used to come after that wait); at the end when there is none.

    A column of the pairs is dropped once no detector left to run ``reads`` it (nor
    ``keep``, what the caller reads after, nor the pair keys): at 1M rows the prompts,
    captions and their words are 0.6 GB nothing reads after the blind detector."""
    runnable = [detector for detector in detectors()
                if context.encoder is not None or not detector.needs_encoder]
    last_read = {column: -1 for column in context.pairs.columns}
    for position, detector in enumerate(runnable):
        for column in context.pairs.columns if detector.reads is None else detector.reads:
            last_read[column] = position
    kept = set(PAIR_KEYS) | set(keep)

    def let_go(done: int) -> None:
        unread = [column for column in context.pairs.columns
                  if column not in kept and last_read.get(column, -1) <= done]
        if unread:
            context.pairs = context.pairs.drop(unread)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence") as background:
        for detector in runnable:
            if detector.prefetch is not None:
                context.start(background, detector.name, detector.prefetch)
        let_go(-1)
        for position, detector in enumerate(runnable):
            if detector.prefetch is not None and meanwhile is not None:
                meanwhile()
                meanwhile = None
            started = time.perf_counter()
            columns = detector.score(context)
            context.seconds[detector.name] = time.perf_counter() - started
            if columns.columns != list(detector.columns) or \
                    columns.height != context.pairs.height:
                raise AssertionError(
                    f"detector {detector.name} wrote {columns.columns} x {columns.height} rows;"
                    f" it declares {list(detector.columns)} x {context.pairs.height}")
            context.outputs[detector.name] = columns
            let_go(position)
    if meanwhile is not None:
        meanwhile()
    return pl.concat([context.pairs.select(PAIR_KEYS), *context.outputs.values()],
                     how="horizontal")


def _row_aggregate(name: str, dtype: pl.DataType, worse: str | None) -> pl.Expr:
    column = pl.col(name)
    if dtype == pl.Boolean or worse == "any":
        return column.max().alias(name)  # any(); stays null when every pair is null
    if worse == "first" or dtype == pl.String:
        return column.drop_nulls().first().alias(name)
    return (column.min() if worse == "lower" else column.max()).alias(name)


def score_rows(scored_pairs: pl.DataFrame) -> pl.DataFrame:
    """One row per example: each signal of its worst pair, plus ``pairs`` (how many it has)."""
    worse = column_worse()
    signals = [name for name in scored_pairs.columns if name not in PAIR_KEYS]
    return scored_pairs.group_by("example_id", maintain_order=True).agg(
        pl.len().alias("pairs").cast(pl.Int32),
        *(_row_aggregate(name, scored_pairs.schema[name], worse.get(name)) for name in signals),
    )
