"""Question-answer pairs: the unit most detectors score.

A raw_sft row is a dialog; ``qa_pairs`` splits it into (user turn, assistant answer) pairs with
normalised text, the row's first image, its context (system turn and every turn before the
answer) and the text about the image a row carries outside its dialog (every string of its
metadata, at any key and depth, and the words of its image file names), so detectors work on
flat columns. Row-level scores are the worst pair's (see ``integrity.detect.score_rows``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from integrity.detect.claims import PARADIGM_READS, file_words, metadata_text
from integrity.detect.text import hedged, normalise, tokens

# Answers of at most this many words are "short" (VQA-style labels rather than prose).
SHORT_ANSWER_WORDS = 3
# A plain label claims at most this many content words beyond the question's.
PLAIN_CLAIM_WORDS = 3
# The columns of the QA pairs the shared helpers read (a detector's ``reads`` names them).
IMAGE_READS = ("image_sha256", "image_uri")  # image statistics and embeddings
CONTEXT_KEY_READS = ("image_key", "context_norm")
PLAIN_LABEL_READS = ("answer", "question_tokens", "answer_tokens")
CLAIM_KEY_READS = PARADIGM_READS  # the paradigms', then question, answer and their words


# Raw rows split into pairs at once: every column of a pair depends on its own row only, so
# chunks give the same frame, and the explode and joins behind it hold one chunk at a time.
QA_CHUNK_ROWS = 200_000


def qa_pairs(raw: pl.DataFrame) -> pl.DataFrame:
    """One row per (question, answer) pair of every raw_sft row, in row then pair order.

    Columns: example_id, example_row (the row's position in ``raw``: an integer to group a
    row's pairs by, which the pairs come sorted by), pair, question, answer, question_norm,
    answer_norm, answer_words, short_answer, image_sha256 (first image or null), image_uri,
    image_key (every image), modality, pref_role, pref_group; dialog_norm (the row's whole
    normalised dialog); context_norm (normalised system turn and every turn up to this
    question: what the answer answers), prompt_text (the system turn and the user's turns up
    to this question, as written: what the model is told, not what it said); caption (every
    string of the row's metadata, joined, or null) and image_names (the words of its image
    file names); the content words (``text.tokens``) of the question, the answer, the prompt
    and the outside text (caption and image names): question_tokens, answer_tokens,
    prompt_tokens, outside_tokens.
    """
    if raw.height > QA_CHUNK_ROWS:
        with ThreadPoolExecutor(max_workers=2) as pool:
            return pl.concat(pool.map(
                lambda start: qa_pairs(raw.slice(start, QA_CHUNK_ROWS)).with_columns(
                    pl.col("example_row") + start), range(0, raw.height, QA_CHUNK_ROWS)))
    dialog = raw.select(
        "example_id",
        "modality",
        "pref_role",
        "pref_group",
        image_sha256=pl.col("image_sha256").list.first(),
        image_uri=pl.col("image_uris").list.first(),
        image_key=pl.col("image_sha256").list.join(","),
        image_names=file_words(pl.col("images")),
        caption=metadata_text(raw["metadata"]).replace("", None),
        system=pl.col("turns").list.eval(
            pl.element().filter(pl.element().struct.field("role") == "system")
            .struct.field("content")).list.join("\n"),
        turns=pl.col("turns").list.eval(
            pl.element().filter(pl.element().struct.field("role") != "system")
        ),
    ).with_row_index("row")
    turns = (
        # Each turn's position from its list (the lists hold no nulls: the filter above drops
        # them), not a window over a million rows.
        dialog.select("row", "turns", position=pl.int_ranges(pl.col("turns").list.len()))
        .explode("turns", "position")
        .drop_nulls("turns")
        .unnest("turns")
        .with_columns(pair=pl.col("position") // 2)
        .pipe(_per_text, "content", "content_norm", normalise)
    )
    questions = turns.filter(pl.col("position") % 2 == 0).select(
        "row", "pair", question="content", question_norm="content_norm")
    answers = turns.filter(pl.col("position") % 2 == 1).select(
        "row", "pair", answer="content", answer_norm="content_norm")
    dialog_turns = turns.group_by("row", maintain_order=True).agg(
        dialog_norm=pl.col("content_norm").str.join(" | "),
        norms=pl.col("content_norm"),
        # What the user wrote, turn by turn (an assistant turn reads as empty).
        prompts=pl.when(pl.col("position") % 2 == 0).then(pl.col("content")).otherwise(
            pl.lit("")))
    paired = (
        questions.join(answers, on=["row", "pair"], how="inner", maintain_order="left")
        .join(dialog.drop("turns"), on="row", how="left", maintain_order="left")
        .join(dialog_turns, on="row", how="left", maintain_order="left")
        .with_columns(
            context_norm=pl.concat_str(
                normalise(pl.col("system")),
                pl.col("norms").list.head(2 * pl.col("pair") + 1).list.join(" | "),
                separator=" || "),
            prompt_text=pl.concat_str(
                pl.col("system"), pl.col("prompts").list.head(2 * pl.col("pair") + 1)
                .list.join("\n"), separator="\n"),
        )
        .with_columns(
            answer_words=pl.col("answer_norm").str.count_matches(r"\S+").cast(pl.Int32),
            outside_text=pl.concat_str(pl.col("caption").fill_null(""), pl.col("image_names"),
                                       separator=" . "),
        )
        # Content words, computed once for every detector that compares texts.
        .pipe(_with_tokens, {"question_tokens": "question", "answer_tokens": "answer",
                             "prompt_tokens": "prompt_text", "outside_tokens": "outside_text"})
        .drop("outside_text")
        .with_columns(
            short_answer=(pl.col("answer_words") > 0)
            & (pl.col("answer_words") <= SHORT_ANSWER_WORDS)
        )
        .drop("norms", "prompts", "system")
    )
    # Every join above keeps the questions' order, which is (row, pair): sorting again would
    # gather all 25 columns (0.4 s at 1M rows) to no effect, so it only runs if that broke.
    in_order = paired.select(((pl.col("row").diff() > 0) | ((pl.col("row").diff() == 0)
                              & (pl.col("pair").diff() > 0))).all()).item()
    return (paired if in_order or paired.height < 2 else paired.sort("row", "pair")).rename(
        {"row": "example_row"})


def _per_text(frame: pl.DataFrame, text: str, name: str,
              function: Callable[[pl.Expr], pl.Expr]) -> pl.DataFrame:
    """``frame`` with ``function`` of its column ``text`` as column ``name``, computed once per
    distinct text: datasets repeat their questions, answers, prompts and captions (on the demo
    334k questions hold 3.8k distinct texts; 667k turns of 200k rows, 4.8k)."""
    distinct = frame.select(pl.col(text).unique()).with_columns(function(pl.col(text)).alias(name))
    return frame.join(distinct, on=text, how="left", maintain_order="left", nulls_equal=True)


def _with_tokens(frame: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    """``frame`` with the content words (``tokens``) of each text column as a new column."""
    for name, text in columns.items():
        frame = _per_text(frame, text, name, tokens)
    return frame


def context_key() -> list[pl.Expr]:
    """Same images (or none) and the same system turn and turns up to the question: the pairs
    of one key answer the same thing, so different answers among them disagree."""
    return [pl.col("image_key").fill_null(""), pl.col("context_norm")]


def claim_key(answer_claims: pl.Expr) -> pl.Expr:
    """What an answer says, comparable across wordings: its claim words (sorted) when it has
    some, else its content words beyond the question's ("Two." and "There are two shapes."
    both claim "two")."""
    beyond_question = pl.col("answer_tokens").list.set_difference(pl.col("question_tokens"))
    return pl.when(answer_claims.list.len() > 0).then(answer_claims).otherwise(
        beyond_question).list.unique().list.sort().list.join(" ")


def claim_keys(pairs: pl.DataFrame, paradigm: pl.DataFrame | None = None) -> pl.Series:
    """``claim_key`` of every pair, its claim words those of ``paradigm`` (``claims.paradigms``;
    none without it), computed once per distinct (question, answer): datasets repeat both."""
    words = pl.lit([], dtype=pl.List(pl.String))
    if paradigm is not None and not paradigm.is_empty():
        words = pl.col("answer_tokens").list.set_intersection(paradigm["word"].implode())
    texts = pairs.select("question", "answer")
    distinct = pairs.select("question", "answer", "question_tokens", "answer_tokens").unique(
        ["question", "answer"], keep="first").select("question", "answer", claim=claim_key(words))
    return texts.join(distinct, on=["question", "answer"], how="left", maintain_order="left",
                      nulls_equal=True)["claim"]


def plain_label() -> pl.Expr:
    """A confident label: unhedged, and claiming at most PLAIN_CLAIM_WORDS content words beyond
    the question ("Red.", "There are three shapes.", not a description or "Possibly red.")."""
    beyond_question = pl.col("answer_tokens").list.set_difference(pl.col("question_tokens"))
    return ~hedged(pl.col("answer")) & (beyond_question.list.len() <= PLAIN_CLAIM_WORDS) & (
        beyond_question.list.len() > 0)
