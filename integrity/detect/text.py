"""Text as the detectors compare it: normalised, tokenised, stemmed, code and math set aside.

Two texts say the same word when their tokens match after normalisation: lower case, no
punctuation, no function words (``lexicon.STOPWORDS``), numbers 0-20 as words ("2" -> "two"),
plurals folded ("circles" -> "circle", "boxes" -> "box", "berries" -> "berry"). ``tokens`` is
the polars expression (used on whole columns); ``word_token`` the same rule for one word in
Python, for the few places that walk distinct texts. Deliberately light: no dictionary, so any
language with spaces and Latin plurals degrades gracefully rather than failing.
"""

from __future__ import annotations

import re

import polars as pl

from integrity.detect.lexicon import HEDGE_TERMS, NUMBER_WORDS, STOPWORDS
from integrity.ingest.schema import IMAGE_TOKEN

_STOP = sorted(STOPWORDS)
# Plural folding, in order; the same three rules in polars (tokens) and Python (word_token).
_PLURALS = ((r"^(\w{2,})ies$", "${1}y", r"\1y"),
            (r"^(\w+)(x|ch|sh|ss)es$", "${1}${2}", r"\1\2"),
            (r"^(\w{2,}[^su])s$", "${1}", r"\1"))
_PLURALS_PY = [(re.compile(pattern), python) for pattern, _, python in _PLURALS]
# Code and math spans: what is written there is never a judge's or a labeller's wording.
CODE_OR_MATH = (r"(?s)```.*?```|`[^`\n]*`|\$\$.*?\$\$|\$[^$\n]*\$|\\\(.*?\\\)|\\\[.*?\\\]"
                r"|~~~.*?~~~")
_DIGIT_RUN = r"(\d)[.,:/\-](\d)"
HEDGE_REGEX = r"(?i)(?:^|[^\p{L}])(?:" + "|".join(
    re.escape(term).replace(r"\ ", r"\s+").replace("'", "['’]?") for term in HEDGE_TERMS
) + r")(?:[^\p{L}]|$)|\?\s*$"


def normalise(text: pl.Expr) -> pl.Expr:
    """Lower case, no <image> token, punctuation to spaces, single spaces. Digits joined by
    punctuation stay one token ("CC-BY-4.0", "v1.2", "12:30" never yield "four" or "one")."""
    joined = _DIGIT_RUN
    return (
        text.str.replace_all(IMAGE_TOKEN, " ", literal=True)
        .str.replace_all(joined, "${1}${2}").str.replace_all(joined, "${1}${2}")
        .str.to_lowercase()
        .str.replace_all(r"[^\p{L}\p{N}\s]", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def tokens(text: pl.Expr) -> pl.Expr:
    """The content words of ``text`` as a list: normalised, no function words, numbers as
    words, plurals folded. ``"There are 2 red circles."`` -> ``["two", "red", "circle"]``."""
    word = pl.element()
    kept = word.filter((word.str.len_chars() > 0) & ~word.is_in(_STOP)).replace(NUMBER_WORDS)
    for pattern, replacement, _ in _PLURALS:
        kept = kept.str.replace(pattern, replacement)
    return normalise(text).str.split(" ").list.eval(kept)


def word_token(word: str) -> str | None:
    """One word as ``tokens`` would keep it, or None for a function word."""
    word = word.lower()
    if not word or word in STOPWORDS:
        return None
    word = NUMBER_WORDS.get(word, word)
    for pattern, replacement in _PLURALS_PY:
        word = pattern.sub(replacement, word, count=1)
    return word


WORD = re.compile(r"[^\W_]+", re.UNICODE)


def surface_words(text: str) -> list[tuple[int, int, str]]:
    """(start, end, token) of every content word of ``text`` as written (function words left
    out): where a claim word sits, so it can be swapped for an alternative in place."""
    found = []
    for match in WORD.finditer(text):
        token = word_token(match.group())
        if token is not None:
            found.append((match.start(), match.end(), token))
    return found


def without_code(text: pl.Expr) -> pl.Expr:
    """``text`` with fenced and inline code and TeX math replaced by a space."""
    return text.str.replace_all(CODE_OR_MATH, " ")


def hedged(text: pl.Expr) -> pl.Expr:
    """The text hedges ("I think", "possibly", "hard to tell", a trailing question mark): how
    rejected responses of preference pairs read, never a confident label."""
    return without_code(text).str.contains(HEDGE_REGEX)


def contains_word(texts: pl.Series, words: pl.Series) -> pl.Series:
    """Per row: ``words`` (normalised, so safe inside a regex) or its plural is a whole word of
    ``texts``. The regex is built once per distinct (text, word): datasets repeat both."""
    keys = pl.DataFrame({"text": texts, "word": words})
    distinct = keys.unique().with_columns(
        hit=pl.col("text").str.contains(pl.lit(r"\b") + pl.col("word") + pl.lit(r"(s|es)?\b")))
    return keys.join(distinct, on=["text", "word"], how="left", maintain_order="left",
                     nulls_equal=True)["hit"]


# Sentence ends: . ! ? followed by space (optionally after a closing quote or bracket), CJK
# full stops, and line breaks (list items in long answers).
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"'”’)\]])\s+|(?<=[。！？])\s*|\n+")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``: split after . ! ? (and CJK 。！？) and at line breaks.

    A simple rule, not a linguistic parser ("Dr. No" splits); empty parts are dropped and each
    part is stripped. ``"Red. Two circles!"`` -> ``["Red.", "Two circles!"]``.
    """
    return [part.strip() for part in _SENTENCE_BREAK.split(text) if part and part.strip()]
