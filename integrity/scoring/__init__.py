"""Detectors: each measures one kind of evidence; none decides (the policy does).

Every detector takes the QA-pair frame (``pairs.qa_pairs``) and keyword-only options and
returns only its new columns, one row per pair, prefixed with its name:

| module | columns | needs |
|---|---|---|
| blind | blind_answer_in_question, blind_prior, blind_prior_support | - |
| preference | pref_field, pref_marker, pref_hedged, pref_divergent, pref_contradictory | - |
| contradiction | contra_answers, contra_conflict | - |
| duplicates | dup_exact_size, dup_near_image_sim, dup_near_image_of, dup_eval_overlap | image stats |
| image_sanity | image_min_side, image_aspect, image_pixel_std | image stats |
| grounding | grounding_cos, grounding_margin, grounding_min_sentence_cos | encoder |
| answer_support | answer_support_prob, answer_support_rank, answer_support_candidates | encoder |
| caption_leakage | leak_answer_in_caption, leak_caption_overlap, leak_score | answer_support |
| diversity | div_question_template, div_image_cluster (null without an encoder) | grounding's images |

``score_pairs`` runs them all over one source's raw_sft rows; ``score_rows`` rolls pairs up to
one row per example (the worst pair's evidence), which is what scored_sft holds.
"""

from __future__ import annotations

import polars as pl

from integrity.scoring.blind import score_blind
from integrity.scoring.contradiction import score_contradiction
from integrity.scoring.diversity import score_diversity
from integrity.scoring.duplicates import score_duplicates
from integrity.scoring.image_sanity import image_stats, score_image_sanity
from integrity.scoring.pairs import qa_pairs
from integrity.scoring.preference import score_preference

# Bump when a detector changes its output for the same input (Dagster code_version).
CODE_VERSION = "scoring-3"

# How a pair-level column becomes a row-level one: the worst pair decides.
LOWER_IS_WORSE = frozenset({
    "grounding_cos", "grounding_margin", "grounding_min_sentence_cos", "answer_support_prob",
    "image_min_side", "image_pixel_std",
})
FIRST_OF = frozenset({"pref_marker", "dup_near_image_of"})
PAIR_KEYS = ("example_id", "pair", "question", "answer", "image_sha256")


def score_pairs(raw: pl.DataFrame, *, encoder=None, eval_images: set[str] | None = None,
                eval_questions: set[str] | None = None,
                storage_options: dict | None = None) -> pl.DataFrame:
    """Every detector over the rows of one source; one row per QA pair.

    Without an ``encoder`` the model-based columns (grounding, answer support, leakage) are
    absent; everything else needs no model.
    """
    pairs = qa_pairs(raw)
    with_image = pairs.filter(pl.col("image_sha256").is_not_null()).unique(
        "image_sha256", maintain_order=True
    )
    stats = image_stats(with_image["image_uri"].to_list(), with_image["image_sha256"].to_list(),
                        storage_options=storage_options)
    columns = [
        score_blind(pairs),
        score_preference(pairs),
        score_contradiction(pairs),
        score_duplicates(pairs, stats, eval_images=eval_images, eval_questions=eval_questions,
                         storage_options=storage_options),
        score_image_sanity(pairs, stats),
    ]
    if encoder is not None:
        from integrity.scoring.answer_support import score_answer_support
        from integrity.scoring.caption_leakage import score_caption_leakage
        from integrity.scoring.grounding import image_matrix, score_grounding

        images = image_matrix(pairs, encoder)  # encoded once, shared by both detectors
        support = score_answer_support(pairs, encoder=encoder, image_embeddings=images)
        columns += [score_grounding(pairs, encoder=encoder, image_embeddings=images), support,
                    score_caption_leakage(pairs, support),
                    score_diversity(pairs, image_embeddings=images)]
    else:
        columns.append(score_diversity(pairs))
    return pl.concat([pairs.select(PAIR_KEYS), *columns], how="horizontal")


def _row_aggregate(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if dtype == pl.Boolean:
        return column.max().alias(name)  # any(); stays null when every pair is null
    if name in FIRST_OF or dtype == pl.String:
        return column.drop_nulls().first().alias(name)
    return (column.min() if name in LOWER_IS_WORSE else column.max()).alias(name)


def score_rows(scored_pairs: pl.DataFrame) -> pl.DataFrame:
    """One row per example: each signal of its worst pair, plus ``pairs`` (how many it has)."""
    signals = [name for name in scored_pairs.columns if name not in PAIR_KEYS]
    return scored_pairs.group_by("example_id", maintain_order=True).agg(
        pl.len().alias("pairs").cast(pl.Int32),
        *(_row_aggregate(name, scored_pairs.schema[name]) for name in signals),
    )
