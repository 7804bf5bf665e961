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
from pydantic import BaseModel, ConfigDict

from integrity.detect.pairs import divergent_group, group_key, hedged
from integrity.detect.registry import Detector, Flaw, register

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


class PreferencePollution(BaseModel):
    """``signals.preference_pollution``: which evidence of flattened preference data flags."""

    model_config = ConfigDict(extra="forbid")
    markers: bool = True
    preference_rows: bool = True
    divergent_answers: bool = True


register(Detector(
    name="preference",
    description="preference data (judge wording, chosen/rejected rows, divergent answers) "
                "flattened into SFT",
    columns={"pref_field": "any", "pref_marker": "first", "pref_hedged": "any",
             "pref_divergent": "any", "pref_contradictory": "any"},
    score=lambda context: score_preference(context.pairs),
    flaws=(Flaw(
        "preference_pollution", PreferencePollution, blocking_none_kept=True,
        description="preference or judge data flattened into SFT rows",
        flag=lambda s, col: (col("pref_marker").is_not_null() & s.markers)
        | (col("pref_field") & s.preference_rows)
        | ((col("pref_divergent") | col("pref_contradictory")) & s.divergent_answers),
    ),),
))
