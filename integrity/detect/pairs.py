"""Question-answer pairs: the unit most detectors score.

A raw_sft row is a dialog; ``qa_pairs`` splits it into (user turn, assistant answer) pairs with
normalised text, the row's first image and its caption, so detectors work on flat columns.
Row-level scores are the worst pair's (see ``integrity.detect.score_rows``).
"""

from __future__ import annotations

import polars as pl

from integrity.schema import IMAGE_TOKEN

# Metadata keys real datasets use for a caption or alt text of the image.
CAPTION_KEYS = ("caption", "captions", "blip_caption", "alt_text", "description", "text")
# Answers of at most this many words are "short" (VQA-style labels rather than prose).
SHORT_ANSWER_WORDS = 3


def normalise(text: pl.Expr) -> pl.Expr:
    """Lower case, no <image> token, punctuation to spaces, single spaces."""
    return (
        text.str.replace_all(IMAGE_TOKEN, " ", literal=True)
        .str.to_lowercase()
        .str.replace_all(r"[^\p{L}\p{N}\s]", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def caption_of(metadata: pl.Expr) -> pl.Expr:
    """The first caption-like field of the row's metadata JSON, or null."""
    return pl.coalesce(
        [metadata.str.json_path_match(f"$.{key}") for key in CAPTION_KEYS]
    )


def qa_pairs(raw: pl.DataFrame) -> pl.DataFrame:
    """One row per (question, answer) pair of every raw_sft row, in row then pair order.

    Columns: example_id, pair, question, answer, question_norm, answer_norm, answer_words,
    short_answer, image_sha256 (first image or null), image_uri, caption, modality, pref_role,
    pref_group, plus the row's full normalised dialog (dialog_norm) and image list key.
    """
    dialog = raw.select(
        "example_id",
        "modality",
        "pref_role",
        "pref_group",
        image_sha256=pl.col("image_sha256").list.first(),
        image_uri=pl.col("image_uris").list.first(),
        image_key=pl.col("image_sha256").list.join(","),
        caption=caption_of(pl.col("metadata")),
        turns=pl.col("turns").list.eval(
            pl.element().filter(pl.element().struct.field("role") != "system")
        ),
    ).with_row_index("row")
    turns = (
        dialog.select("row", "turns")
        .explode("turns")
        .drop_nulls("turns")
        .with_columns(position=pl.int_range(pl.len()).over("row"))
        .unnest("turns")
        .with_columns(pair=pl.col("position") // 2)
    )
    questions = turns.filter(pl.col("position") % 2 == 0).select("row", "pair", question="content")
    answers = turns.filter(pl.col("position") % 2 == 1).select("row", "pair", answer="content")
    dialog_norm = turns.group_by("row", maintain_order=True).agg(
        dialog_norm=normalise(pl.col("content")).str.join(" | ")
    )
    return (
        questions.join(answers, on=["row", "pair"], how="inner", maintain_order="left")
        .join(dialog.drop("turns"), on="row", how="left", maintain_order="left")
        .join(dialog_norm, on="row", how="left", maintain_order="left")
        .with_columns(
            question_norm=normalise(pl.col("question")),
            answer_norm=normalise(pl.col("answer")),
        )
        .with_columns(
            answer_words=pl.col("answer_norm").str.count_matches(r"\S+").cast(pl.Int32),
        )
        .with_columns(
            short_answer=(pl.col("answer_words") > 0)
            & (pl.col("answer_words") <= SHORT_ANSWER_WORDS)
        )
        .sort("row", "pair")
        .drop("row")
    )


def contains_word(texts: pl.Series, words: pl.Series) -> pl.Series:
    """Per row: ``words`` (normalised, so safe inside a regex) or its plural is a whole word of
    ``texts``. The regex is built once per distinct (text, word): datasets repeat both."""
    keys = pl.DataFrame({"text": texts, "word": words})
    distinct = keys.unique().with_columns(
        hit=pl.col("text").str.contains(pl.lit(r"\b") + pl.col("word") + pl.lit(r"(s|es)?\b")))
    return keys.join(distinct, on=["text", "word"], how="left", maintain_order="left",
                     nulls_equal=True)["hit"]


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
