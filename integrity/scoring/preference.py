"""Preference pollution: preference data flattened into SFT rows.

Measures, per pair:
- ``pref_field``: the row came from a preference file (pref_role chosen/rejected is set).
- ``pref_marker``: the first phrase in the question or answer that only preference/judge data
  writes ("Response A is better", "Chosen response:", "Rating: 4/5", "[[A]]", ...), or null.
- ``pref_hedged``: the answer hedges ("I think", "possibly", "not sure"): how rejected
  responses of preference pairs typically read, and never how a ground-truth label reads.
- ``pref_divergent``: the same image + question has other answers in the frame, and the group
  holds prose or hedged answers: what a chosen/rejected pair looks like once flattened.
  Conflicting plain short labels are contradictions instead (contradiction.py).
- ``pref_contradictory``: the same (image, question, answer) is chosen in one row and
  rejected in another.
Needs no model. Cost: one regex pass and two group-bys, O(pairs).
"""

from __future__ import annotations

import polars as pl

# Phrases of reward-model, judge and preference-annotation outputs (case-insensitive).
MARKER_PATTERNS = (
    r"\b(response|answer|assistant|output) [a-d1-4] is (better|worse|preferred|superior)",
    r"\b(chosen|rejected|preferred|winning|losing) (response|answer|completion)\b",
    r"\[\[?(a|b|preferred|chosen|rejected)\]?\]",
    r"\brating\s*[:=]\s*\d+(\.\d+)?\s*(/|out of)\s*\d+",
    r"\bscore\s*[:=]\s*\d+(\.\d+)?\s*(/|out of)\s*10\b",
    r"\b(first|second|former|latter) (one|response|answer) is (better|worse|preferred)",
    r"\bof the two (responses|answers)\b",
    r"\bi (prefer|would choose) (response|answer|assistant) [a-d1-4]\b",
)
MARKER_REGEX = "(?i)(" + "|".join(MARKER_PATTERNS) + ")"
HEDGE_REGEX = (
    r"(?i)\b(i think|i believe|i guess|possibly|perhaps|maybe|might be|could be|probably"
    r"|not sure|hard to tell|it seems|seems to be|likely)\b"
)


def hedged() -> pl.Expr:
    return pl.col("answer").str.contains(HEDGE_REGEX)


def divergent_group() -> tuple[pl.Expr, pl.Expr]:
    """(distinct answers of the pair's image+question group, whether all are plain labels)."""
    answers = pl.col("answer_norm").n_unique().over(group_key())
    plain_labels = (pl.col("short_answer") & ~hedged()).all().over(group_key())
    return answers, plain_labels


def group_key() -> list[pl.Expr]:
    """Same image (or none) and same normalised question."""
    return [pl.col("image_sha256").fill_null(""), pl.col("question_norm")]


def score_preference(pairs: pl.DataFrame) -> pl.DataFrame:
    """Columns pref_field, pref_marker, pref_hedged, pref_divergent, pref_contradictory."""
    text = pl.col("question") + pl.lit("\n") + pl.col("answer")
    answers, plain_labels = divergent_group()
    roles_of_answer = pl.col("pref_role").drop_nulls().n_unique().over(
        [*group_key(), pl.col("answer_norm")]
    )
    return pairs.select(
        pref_field=pl.col("pref_role").is_not_null(),
        pref_marker=text.str.extract(MARKER_REGEX, 1),
        pref_hedged=hedged(),
        pref_divergent=(answers > 1) & ~plain_labels,
        pref_contradictory=roles_of_answer > 1,
    )
