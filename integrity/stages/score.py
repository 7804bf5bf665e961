"""Score a raw_sft version into a scored_sft version (rows and QA pairs)."""

from __future__ import annotations

import time

import polars as pl

from integrity import detect
from integrity.errors import redact
from integrity.ingest import SourceConfig
from integrity.names import (
    RAW_SFT,
    SCORED_SFT,
)
from integrity.decide.policy import model_fit_auc
from integrity.detect.eval_overlap import eval_overlap_keys
from integrity.report.summaries import signal_summary
from integrity.store.versions import Manifest, VersionStore


def make_encoder(config, store: VersionStore, *, progress: bool = False):
    """An Encoder whose embedding cache lives in the store (``<root>/embeddings``)."""
    from integrity.store.embedding_cache import EmbeddingCache
    from integrity.detect.encoder import Encoder

    cache = EmbeddingCache(f"{store.root.rstrip('/')}/embeddings",
                           storage_options=store.storage_options)
    return Encoder(config, cache=cache, progress=progress)


def score_to_store(
    source: SourceConfig, raw_version: str, store: VersionStore, *, encoder=None,
    eval_sets: list[SourceConfig] | None = None,
) -> tuple[pl.DataFrame, Manifest, dict]:
    """Score one source's raw_sft version; commit rows ("data"), pairs ("pairs") and the copy
    keys the duplicate index compares across sources ("keys", "images": ``cross_source``).

    Returns the rows, the manifest and this run's facts (speed, cache use, signal summary):
    when the version already existed, its manifest keeps the facts of the run that made it.
    """
    raw = store.read(RAW_SFT, raw_version)
    started = time.perf_counter()
    eval_images, eval_questions = eval_overlap_keys(eval_sets or [], store)
    rows_in, roles = raw.height, raw.select("example_id", "pref_role")
    qa_started = time.perf_counter()
    qa = detect.qa_pairs(raw)
    qa_seconds = time.perf_counter() - qa_started
    del raw  # read once: not held while the detectors run (0.5 GB of 1M rows)
    context = detect.scoring_context(
        qa, encoder=encoder, storage_options=source.storage_options, eval_images=eval_images,
        eval_questions=eval_questions, qa_seconds=qa_seconds)
    del qa  # the context's alone: scoring lets its columns go as detectors finish with them
    pairs, keys, images, step_seconds = detect.score_source(context)
    del context
    rows = detect.score_rows(pairs)
    seconds = time.perf_counter() - started
    fit_auc, fit_pairs = model_fit_auc(pairs, roles)
    cache = encoder.cache.stats() if encoder is not None and encoder.cache is not None else {}
    lookups = cache.get("hits", 0) + cache.get("misses", 0)
    extra = {
        "rows_in": rows_in,
        "rows_scored": rows.height,
        "pairs_scored": pairs.height,
        "seconds": seconds,
        # Where the time went, slowest first (the duplicate index's keys are "copy_keys").
        "step_seconds": dict(sorted(((step, round(value, 3)) for step, value
                                     in step_seconds.items()), key=lambda item: -item[1])),
        "rows_per_second": rows.height / seconds if seconds else None,
        "model_id": getattr(encoder, "model_id", None),
        "model": None if encoder is None else {
            "name": encoder.config.model, "pretrained": encoder.config.pretrained,
            "device": encoder.device_used, "precision": encoder.config.precision},
        "model_fit_auc": fit_auc,
        "model_fit_pairs": fit_pairs,
        "cache_hit_rate": cache["hits"] / lookups if lookups else None,
        "images_encoded": getattr(encoder, "images_encoded", 0),
        "texts_encoded": getattr(encoder, "texts_encoded", 0),
        "signals": signal_summary(rows),
    }
    manifest = store.write(
        SCORED_SFT,
        {"data": rows, "pairs": pairs, "keys": keys, "images": images},
        partition=source.name,
        upstream={RAW_SFT: raw_version},
        code_version=detect.CODE_VERSION,
        params={"model_id": extra["model_id"],
                "eval_sets": sorted(redact(eval_set.uri) for eval_set in eval_sets or [])},
        extra=extra,
    )
    return rows, manifest, extra
