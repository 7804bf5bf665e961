"""Preference pollution: preference data flattened into SFT rows.

Measures, per pair:
- ``pref_field``: the row came from a preference file (pref_role chosen/rejected is set).
- ``pref_marker``: the first judge or preference wording in the answer (and, in the question,
  a pair of labelled responses set out for judging), or null. Judge wording is composed from
  parts (``lexicon``): a judgement about one of several named responses ("Response A is
  better", "the second completion is superior", "I would pick answer B", "model A outperforms
  model B"), a verdict or ranking label ("Winner: Response 1", "[[B]]", "Ranking: B > A"), a
  rating label or a rating given to a response ("Score: 7/10", "Helpfulness: 4/5", "I'd give
  this response 4 stars"), or preference role words ("chosen response", "rejected answer").
  Code and math spans are read as blank, so ``x[A]`` or ``$[A]$`` is never a verdict.
- ``pref_hedged``: the answer hedges ("I think", "possibly", "hard to tell", "my best guess"):
  how rejected responses of preference pairs read, never how a ground-truth label reads.
- ``pref_divergent``: other pairs answer the same context (same images, same system turn and
  turns up to the question) with a different claim, some hedged and some not: what a
  chosen/rejected pair looks like once flattened. Conflicting confident labels are
  contradictions instead (contradiction.py); different descriptions of one image or different
  samples for one prompt are neither; unrelated dialogs never share a context.
- ``pref_contradictory``: the same context and claim is chosen in one row and rejected in
  another.
Needs no model. Cost: one regex pass per distinct text and two group-bys, O(pairs).
"""

from __future__ import annotations

import re

import polars as pl
from pydantic import BaseModel, ConfigDict

from integrity.detect.lexicon import (
    JUDGEMENT_STEMS,
    PREFERENCE_WORDS,
    RATING_LABELS,
    RATING_VERBS,
    RESPONSE_IDS,
    RESPONSE_NOUNS,
    ROLE_WORDS,
    VERDICT_LABELS,
)
from integrity.detect.pairs import CLAIM_KEY_READS, CONTEXT_KEY_READS, claim_keys, context_key
from integrity.detect.registry import Detector, Flaw, register
from integrity.detect.text import hedged, without_code


def _alternation(words) -> str:
    return "(?:" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in
                            sorted(words, key=len, reverse=True)) + ")"


_NOUN = _alternation(RESPONSE_NOUNS)
# Letters name responses in capitals ("Response A") or in brackets ("output (b)"): a lower-case
# "a" is the article ("the answer a student gives is better").
_LETTER = r"(?-i:[A-D])"
_ID = (rf"(?:\({_LETTER}\)|\([a-d]\)|{_LETTER}|\(?[1-4]\)?|#[1-4]|"
       + _alternation([i for i in RESPONSE_IDS
                       if not re.fullmatch(r"\(?[a-d1-4]\)?|#[1-4]", i)]) + ")")
_NAMED = rf"(?:{_NOUN}\s*{_ID}(?:['’]s)?|(?:the\s+)?{_ID}\s+{_NOUN})"
_JUDGE = "(?:" + "|".join(JUDGEMENT_STEMS) + ")"
_GAP = r"[^.!?\n]{0,60}?"
_NUMBER = r"\d+(?:\.\d+)?"
_OUT_OF = rf"{_NUMBER}\s*(?:/|out\s+of)\s*\d+"
JUDGE_PATTERNS: tuple[str, ...] = (
    # a judgement about a named response, either order: "Response A is better", "I prefer B's"
    rf"\b{_NAMED}(?:\b|\W){_GAP}\b{_JUDGE}\b",
    rf"\b{_JUDGE}\b{_GAP}\b{_NAMED}(?:\b|\s|$)",
    # a judgement between lettered responses after a response noun: "outputs ... A edges out B"
    rf"\b{_NOUN}\b[^.!?\n]{{0,80}}?\b{_LETTER}\s+{_JUDGE}\s+{_LETTER}\b",
    # a preference over another response: "preferred over the alternative answer"
    rf"\b{_alternation(PREFERENCE_WORDS)}\s+(?:over|to|than)\s+(?:\w+\s+){{0,3}}?{_NOUN}\b",
    # preference role words: "chosen response", "the rejected answer", "best response:"
    rf"\b{_alternation(ROLE_WORDS)}\s+{_NOUN}\b",
    # a verdict or ranking label: "Winner: Response 1", "Ranking: B > A", "Verdict - 2"
    rf"\b{_alternation(VERDICT_LABELS)}\s*[:=\-–>]+\s*\[*\s*(?:{_NAMED}|{_ID}\b)",
    # a preference role as a bracketed tag: "[Preferred]", "(chosen)", "[Rejected]"
    rf"(?:^|[\s:])[\[(]\s*{_alternation(ROLE_WORDS)}\s*[\])]",
    # MT-Bench style verdict tokens, never glued to code: "[[A]]", "[[tie]]"
    r"(?:^|[\s:(])\[\[\s*(?:[a-d1-4]|tie)\s*\]\]",
    # a rating label: "Score: 7/10", "Helpfulness: 4/5", "Score of the assistant: 8 out of 10"
    rf"\b{_alternation(RATING_LABELS)}(?:\s+(?:of|for)\s+(?:the\s+|this\s+)?{_NOUN}(?:\s*{_ID})?)?"
    rf"\s*[:=]\s*{_OUT_OF}",
    # a rating given to a response: "(rated 4 out of 5)", "I'd give this response 4 stars"
    rf"\brated\s+{_OUT_OF}",
    rf"\b{_alternation(RATING_VERBS)}\s+(?:this|that|the|it|them)(?:\s+{_NOUN})?\s+(?:an?\s+)?"
    rf"{_NUMBER}\s*(?:/\s*\d+|out\s+of\s+\d+|stars?|points?)",
    r"[★☆]{3,}",
)
# In a question, only responses set out for judging: "Response A: ... Response B: ...".
PAIR_SET_OUT = rf"\b{_NOUN}\s*{_ID}\s*[:\]].*\b{_NOUN}\s*{_ID}\s*[:\]]"
JUDGE_REGEX = "(?is)(" + "|".join(JUDGE_PATTERNS) + ")"
QUESTION_JUDGE_REGEX = "(?is)(" + PAIR_SET_OUT + r"|(?:^|[\s:(])\[\[\s*(?:[a-d1-4]|tie)\s*\]\])"


def judge_marker(answers: pl.Series, questions: pl.Series) -> pl.Series:
    """The first judge wording of each answer (or response pair set out in its question), or
    null; each distinct text is read once."""
    frame = pl.DataFrame({"answer": answers, "question": questions})
    distinct = frame.unique().with_columns(
        marker=pl.coalesce(
            without_code(pl.col("answer")).str.extract(JUDGE_REGEX, 1),
            without_code(pl.col("question")).str.extract(QUESTION_JUDGE_REGEX, 1)))
    marker = frame.join(distinct, on=["answer", "question"], how="left", maintain_order="left",
                        nulls_equal=True)["marker"]
    return marker.str.strip_chars().str.replace_all(r"\s+", " ")


def score_preference(pairs: pl.DataFrame, *, claims=None,
                     claim: pl.Series | None = None) -> pl.DataFrame:
    """Columns pref_field, pref_marker, pref_hedged, pref_divergent, pref_contradictory;
    ``claim``: the pairs' ``claim_keys`` when the caller has them."""
    if claim is None:
        claim = claim_keys(pairs, claims and claims.paradigm)
    claimed = pairs.with_columns(claim=claim, hedged=hedged(pl.col("answer")))
    group = context_key()
    answers = pl.col("claim").n_unique().over(group)
    # A flattened chosen/rejected pair: different claims, one of them unsure. Different
    # confident answers are contradictions; different descriptions of one image (five COCO
    # captions) or different samples for one prompt are neither.
    unsure = pl.col("hedged").any().over(group) & (~pl.col("hedged")).any().over(group)
    roles_of_answer = pl.col("pref_role").drop_nulls().n_unique().over([*group, pl.col("claim")])
    return claimed.select(
        pref_field=pl.col("pref_role").is_not_null(),
        pref_marker=judge_marker(pairs["answer"], pairs["question"]),
        pref_hedged="hedged",
        pref_divergent=(answers > 1) & unsure,
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
    reads=("question", "answer", "pref_role", *CONTEXT_KEY_READS, *CLAIM_KEY_READS),
    description="preference data (judge wording, chosen/rejected rows, divergent answers) "
                "flattened into SFT",
    columns={"pref_field": "any", "pref_marker": "first", "pref_hedged": "any",
             "pref_divergent": "any", "pref_contradictory": "any"},
    score=lambda context: score_preference(context.pairs, claim=context.claim_keys()),
    flaws=(Flaw(
        "preference_pollution", PreferencePollution, blocking_none_kept=True,
        description="preference or judge data flattened into SFT rows",
        flag=lambda s, col: (col("pref_marker").is_not_null() & s.markers)
        | (col("pref_field") & s.preference_rows)
        | ((col("pref_divergent") | col("pref_contradictory")) & s.divergent_answers),
    ),),
))
