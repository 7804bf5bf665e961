"""The detectors' word lists (lexicon): each word in them does what its list is for where the
detectors read it: function words never become tokens, number words stand for digits, every
hedge marks an answer unsure, and every part of judge wording makes a judge marker."""

import re

import polars as pl

from integrity.detect.lexicon import (
    HEDGE_TERMS,
    JUDGEMENT_STEMS,
    NUMBER_WORDS,
    PREFERENCE_WORDS,
    RATING_LABELS,
    RATING_VERBS,
    RESPONSE_IDS,
    RESPONSE_NOUNS,
    ROLE_WORDS,
    STOPWORDS,
    VERDICT_LABELS,
)
from integrity.detect.preference import judge_marker
from integrity.detect.text import hedged, tokens


def _tokens(texts: list[str]) -> list[list[str]]:
    return pl.DataFrame({"t": texts}).select(tokens(pl.col("t")))["t"].to_list()


def _unmarked(answers: list[str]) -> list[str]:
    """The answers in which judge_marker finds no judge wording."""
    marks = judge_marker(pl.Series(answers), pl.Series(["Q?"] * len(answers)))
    return [answer for answer, mark in zip(answers, marks, strict=True) if mark is None]


def test_no_function_word_survives_as_a_token_and_yes_and_no_do():
    assert _tokens([" ".join(sorted(STOPWORDS))]) == [[]]
    assert _tokens(["Yes, there is no cat."]) == [["yes", "no", "cat"]]
    assert {"yes", "no"}.isdisjoint(STOPWORDS)


def test_digits_zero_to_twenty_read_as_their_number_words():
    assert list(NUMBER_WORDS) == [str(n) for n in range(21)]
    assert _tokens([" ".join(NUMBER_WORDS)]) == [list(NUMBER_WORDS.values())]
    assert _tokens(["0 7 13 20 21"]) == [["zero", "seven", "thirteen", "twenty", "21"]]


def test_every_hedge_term_marks_an_answer_as_unsure():
    answers = [f"Blue, {term} the left one." for term in HEDGE_TERMS] + [
        f"{term.capitalize()} blue." for term in HEDGE_TERMS]
    marked = pl.DataFrame({"a": answers}).select(hedged(pl.col("a")))["a"].to_list()
    assert [answer for answer, hedge in zip(answers, marked, strict=True) if not hedge] == []
    assert not pl.DataFrame({"a": ["The shapes are blue."]}).select(hedged(pl.col("a"))).item()


def test_every_response_noun_and_id_names_a_response_a_judgement_is_about():
    assert _unmarked([f"The {noun} B is better. Red." for noun in RESPONSE_NOUNS]) == []
    # single letters name responses in capitals: a lower-case "a" is the article
    written = [i.upper() if len(i) == 1 and i.isalpha() else i for i in RESPONSE_IDS]
    assert _unmarked([f"Response {i} is better. Red." for i in written]) == []
    assert _unmarked(["The answer a student gives is better when it is short."]) == [
        "The answer a student gives is better when it is short."]


def test_every_judgement_stem_in_its_usual_forms_judges_a_named_response():
    words = ["better", "worse", "best", "worst", "prefer", "prefers", "preferred", "preferable",
             "preference", "dispreferred", "superior", "inferior", "stronger", "weaker",
             "strongest", "weakest", "wins", "won", "winner", "winning", "loses", "lost",
             "loser", "beats", "outperforms", "outshines", "surpasses", "favored", "favoured",
             "favorite", "chose", "chosen", "chooses", "choice", "picks", "picked", "selects",
             "selected", "ranked", "ranking", "ties", "tied", "edges out", "more helpful",
             "less accurate", "higher-quality", "lower quality", "ahead", "wins out",
             "comes out ahead", "recommended"]
    assert _unmarked([f"Response A: {word}. Red." for word in words]) == []
    # ... and every stem is among them
    assert [stem for stem in JUDGEMENT_STEMS
            if not any(re.fullmatch(stem, word) for word in words)] == []


def test_role_and_preference_words_mark_preference_data():
    assert _unmarked([f"The {role} response says red." for role in ROLE_WORDS]) == []
    assert _unmarked([f"[{role.capitalize()}] Red." for role in ROLE_WORDS]) == []
    assert _unmarked([f"Red, {word} over the other answer." for word in PREFERENCE_WORDS]) == []


def test_verdict_and_rating_labels_and_verbs_mark_a_judges_output():
    assert _unmarked([f"{label.capitalize()}: Response B" for label in VERDICT_LABELS]) == []
    assert _unmarked([f"{label.capitalize()}: 7/10. Red." for label in RATING_LABELS]) == []
    assert _unmarked([f"I {verb} this response 4 out of 5." for verb in RATING_VERBS]) == []
    # the same words outside a judgement read as ordinary prose
    assert _unmarked(["The verdict was read in court.", "Her score was high."]) == [
        "The verdict was read in court.", "Her score was high."]
