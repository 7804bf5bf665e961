"""Text as detectors compare it: tokens, hedges, code and math spans."""

import polars as pl
import pytest

from integrity.detect.text import (
    hedged,
    normalise,
    split_sentences,
    surface_words,
    tokens,
    without_code,
    word_token,
)


def _tokens(*texts: str) -> list[list[str]]:
    return pl.DataFrame({"t": list(texts)}).select(tokens(pl.col("t")))["t"].to_list()


def test_tokens_fold_plurals_and_numbers_and_drop_function_words():
    assert _tokens("There are 2 red circles.", "Boxes, berries and classes", "No.", "Yes!") == [
        ["two", "red", "circle"], ["box", "berry", "class"], ["no"], ["yes"]]
    assert word_token("Circles") == "circle" and word_token("the") is None


def test_digits_joined_by_punctuation_are_one_token():
    """A license "CC0-1.0" once read as the words "one" and "zero", so a wrong count "One." was
    "stated" by the row's metadata."""
    assert _tokens("CC0-1.0, CC-BY-4.0, v1.2.3 at 12:30") == [
        ["cc010", "cc", "40", "v123", "1230"]]  # "by" is a function word


@pytest.mark.parametrize("answer", [
    "I think it might be blue.", "Possibly blue.", "It could be blue, but I'm not sure.",
    "Looks like blue to me, though I can't be certain.", "My best guess is blue.",
    "Blue, I guess.", "Hard to say - blue?", "Presumably blue.", "It appears to be blue.",
    "If I had to guess: blue.", "Blue? Not entirely sure.", "Likely blue.",
])
def test_hedges_in_many_wordings(answer):
    assert pl.DataFrame({"a": [answer]}).select(hedged(pl.col("a"))).item()


@pytest.mark.parametrize("answer", ["Blue.", "The shapes are blue.", "There are two circles.",
                                    "Use `maybe_parse(x)` here."])
def test_confident_answers_do_not_hedge(answer):
    assert not pl.DataFrame({"a": [answer]}).select(hedged(pl.col("a"))).item()


def test_code_and_math_spans_read_as_blank():
    text = "Use `x[A]`, then ```py\nA > B\n``` and $[A]$ or \\(B\\)."
    assert pl.DataFrame({"t": [text]}).select(without_code(pl.col("t"))).item().split() == [
        "Use", ",", "then", "and", "or", "."]


def test_surface_words_locate_claims_as_written():
    sentence = "There are Two small red Circles."
    assert [(sentence[a:b], token) for a, b, token in surface_words(sentence)] == [
        ("Two", "two"), ("small", "small"), ("red", "red"), ("Circles", "circle")]
    assert pl.DataFrame({"t": ["<image>\nWhat's  the COLOR?!"]}).select(
        normalise(pl.col("t"))).item() == "what s the color"


def test_split_sentences():
    assert split_sentences("A red circle. Two squares! Is it blue? yes") == [
        "A red circle.",
        "Two squares!",
        "Is it blue?",
        "yes",
    ]
    assert split_sentences('He said "stop." Then 3.5 m left.\n- item one\n\n- item two') == [
        'He said "stop."',
        "Then 3.5 m left.",
        "- item one",
        "- item two",
    ]
    assert split_sentences("  ") == []
    assert split_sentences("no end") == ["no end"]
