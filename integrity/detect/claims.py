"""What an answer claims, and which text around it says the same: learned from the source.

A source's own short answers show which words stand in for one another: the answers to one
question ("What color is the car?": red, blue, white ...) form a paradigm, and each word of it
has the others as alternatives. ``paradigms`` learns them; a *claim word* of any answer, short or
prose, is one of its words that has alternatives. Swapping a claim word for its alternatives
gives the counterfactual answers the pixels are asked to rank (answer_support.py), and the word
the pixels reject is what leaked (caption_leakage.py) when the row's own text states it.

Which text states a claim word: the word itself (``text.tokens`` equality: plurals and number
words folded), or a word the source uses for it. ``translation`` learns the latter from
co-occurrence over the source's image pairs: P(claim word w | text word t, w's paradigm), so
"crimson" in captions comes to mean "red" when the answers beside crimson captions say red,
"a pair of" comes to mean "two", and so on, in any wording the source happens to use. A pair's
own co-occurrence is left out of the estimate it is judged by, and the estimate is the lower
end of its Wilson interval, so a word seen twice next to an answer does not explain it.

Needs no model. Cost: polars group-bys and joins per distinct text (question, answer, context,
caption), linear in pairs; nothing is built per (pair, text word, claim word).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import polars as pl

from integrity.detect.text import hedged

# A text word present in more than this share of image pairs carries no information.
MAX_TEXT_WORD_SHARE = 0.5
# A paradigm word is used in answers at least this many times as often as in questions.
ANSWER_WORD_RATIO = 2.0
# One-sided 95% Wilson bound: how surely the source shows a word to mean another.
WILSON_Z = 1.645
# The QA pairs' columns (``pairs.qa_pairs``) ``paradigms`` and ``source_claims`` read.
PARADIGM_READS = ("image_sha256", "question", "answer", "question_norm", "question_tokens",
                  "answer_tokens")
CLAIMS_READS = (*PARADIGM_READS, "prompt_text", "caption", "image_names", "prompt_tokens",
                "outside_tokens")


def paradigms(pairs: pl.DataFrame, *, max_alternatives: int = 8,
              min_count: int = 2) -> pl.DataFrame:
    """word -> alternatives (list, most often co-answered first) for every word that answers a
    question of the source alongside other words.

    Only plain one-word claims count (an unhedged image-pair answer with exactly one content word
    beyond the question's: "Red.", "The shapes are red." for "What color are the shapes?"); a
    word must answer a question at least ``min_count`` times to join its paradigm, and be an
    answer word: used in answers at least ANSWER_WORD_RATIO times as often as in questions (a
    word the source mostly asks with, like "shape" or "count", is a question's topic, and left
    over when a question states its own answer: "Counting two objects, how many?" "I count two.").
    """
    # Counted per distinct (question, answer), each weighed by its image pairs: the same
    # counts as pair by pair, from far fewer rows where texts recur.
    image = pairs.select("image_sha256", "question", "answer", "question_norm",
                         "question_tokens", "answer_tokens").filter(
        pl.col("image_sha256").is_not_null()).group_by("question", "answer").agg(
        pl.len().alias("pairs"),
        pl.col("question_norm", "question_tokens", "answer_tokens").first())

    def pairs_using(tokens: str, name: str) -> pl.DataFrame:
        return image.select("pairs", word=pl.col(tokens).list.unique()).explode("word") \
            .group_by("word").agg(pl.col("pairs").sum().alias(name))

    in_questions, in_answers = pairs_using("question_tokens", "asked"), pairs_using(
        "answer_tokens", "answered")
    answer_words = in_answers.join(in_questions, on="word", how="left").filter(
        pl.col("answered") >= ANSWER_WORD_RATIO * pl.col("asked").fill_null(0)).select("word")
    single = (
        image.filter(~hedged(pl.col("answer")))
        .select("question_norm", "pairs",
                word=pl.col("answer_tokens").list.set_difference(pl.col("question_tokens")))
        .filter(pl.col("word").list.len() == 1)
        .select("question_norm", "pairs", pl.col("word").list.first())
        .join(answer_words, on="word", how="semi")
        .group_by("question_norm", "word").agg(pl.col("pairs").sum().cast(pl.UInt32)
                                               .alias("len"))
        .filter(pl.col("len") >= min_count)
    )
    return (
        single.join(single, on="question_norm", suffix="_alt")
        .filter(pl.col("word") != pl.col("word_alt"))
        .group_by("word", "word_alt").agg(weight=pl.min_horizontal("len", "len_alt").sum())
        .sort(["word", "weight", "word_alt"], descending=[False, True, False])
        .group_by("word", maintain_order=True)
        .agg(alternatives=pl.col("word_alt").head(max_alternatives))
    )


def claim_words(answer_tokens: pl.Expr, paradigm: pl.DataFrame) -> pl.Expr:
    """The answer's words that have alternatives (``paradigm`` from ``paradigms``)."""
    return answer_tokens.list.set_intersection(paradigm["word"].implode()).list.unique(
        maintain_order=True)


def metadata_text(metadata: pl.Series) -> pl.Series:
    """Every string of each row's metadata JSON, at any depth and under any key, joined by
    " . ": a caption is found wherever a dataset put it. Parsed once per distinct value."""
    texts = {value: _metadata_strings(value) for value in metadata.unique().to_list()}
    return metadata.replace_strict(texts, default="", return_dtype=pl.String)


def _metadata_strings(value: str | None) -> str:
    if not value:
        return ""
    try:
        return " . ".join(_strings(orjson.loads(value)))
    except orjson.JSONDecodeError:  # nested past orjson's limit: no caption anyone wrote
        return ""


def _strings(node, depth: int = 0) -> list[str]:
    if depth > 64:  # deeper nesting is not a caption anyone wrote by hand
        return []
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value, depth + 1)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value, depth + 1)]
    return []


def file_words(images: pl.Expr) -> pl.Expr:
    """The words of the rows' image file names ("images/two_red_circles_0001.png" -> "two red
    circles 0001"): folders and extensions left out."""
    return images.list.eval(
        pl.element().str.replace(r"^.*[/\\]", "").str.replace(r"\.[A-Za-z0-9]{2,5}$", "")
        .str.replace_all(r"[_\-.+]+", " ")
    ).list.join(" . ")


@dataclass(frozen=True)
class Translation:
    """Co-occurrence of text words and claim words over a source's image pairs."""

    # token, word, n_tw: pairs whose text holds token and claim word; n_tp: token and any word
    # of word's paradigm (only informative tokens: a text word the translation can use)
    together: pl.DataFrame
    members: pl.DataFrame      # word, member: the word and its alternatives


def learn_translation(claims: pl.DataFrame, context: Texts, outside: Texts,
                      paradigm: pl.DataFrame) -> Translation:
    """Count, over image pairs, how often each text word appears beside each claim word.

    ``claims``: (pair_row, word) for the claim words of every image pair; ``context`` and
    ``outside``: the two parts of each pair's text (``Texts``), whose words together are the
    pair's text words; ``paradigm`` as ``paradigms`` returns. Text words in more than
    MAX_TEXT_WORD_SHARE of the pairs are dropped (they say nothing).

    Counted per distinct text, not per (pair, text word, claim word): a pair's words are those
    of its context plus those of its outside text less those in both, so each count is one over
    the distinct contexts, plus one over the distinct outside texts, less one over the few
    (context, outside text) that share a word. At 1M rows the pairs' whole texts were 9M
    (text, word) rows; the words both parts share are 27k.
    """
    members = paradigm.select("word", member=pl.concat_list(pl.col("word"),
                                                            pl.col("alternatives"))).explode(
        "member")
    pair_count = max(claims["pair_row"].n_unique(), 1)
    parts = context.ids.rename({"text_id": "context"}).join(
        outside.ids.rename({"text_id": "outside"}), on="pair_row", how="left",
        maintain_order="left")
    context_tokens = context.tokens.rename({"text_id": "context"})
    outside_tokens = outside.tokens.rename({"text_id": "outside"})
    shared = context_tokens.join(outside_tokens.select("token").unique(), on="token",
                                 how="semi")
    in_both = parts.select("context", "outside").unique().join(shared, on="context").join(
        outside_tokens, on=["outside", "token"], how="semi")

    def per_token(counts: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
        """(token, *keys, n): ``counts`` (context, outside, *keys, n) summed over the pairs
        whose text holds the token."""
        counts = counts.with_columns(pl.col("n").cast(pl.Int64))
        terms = [
            counts.group_by("context", *keys).agg(pl.col("n").sum()).join(
                context_tokens, on="context").select("token", *keys, "n"),
            counts.group_by("outside", *keys).agg(pl.col("n").sum()).join(
                outside_tokens, on="outside").select("token", *keys, "n"),
            counts.join(in_both, on=["context", "outside"]).select("token", *keys, -pl.col("n")),
        ]
        return pl.concat(terms).group_by("token", *keys).agg(pl.col("n").sum())

    claimed = parts.join(claims.select("pair_row").unique(), on="pair_row", how="semi")
    informative = per_token(claimed.group_by("context", "outside").len("n"), []).filter(
        pl.col("n") <= MAX_TEXT_WORD_SHARE * pair_count).select("token")
    words = claims.join(parts, on="pair_row").group_by("context", "outside", "word").len("n")
    together = per_token(words, ["word"]).join(informative, on="token", how="semi").select(
        "token", "word", n_tw=pl.col("n").cast(pl.UInt32))
    in_paradigm = members.join(together.rename({"word": "member"}), on="member").group_by(
        "token", "word").agg(n_tp=pl.col("n_tw").sum())
    return Translation(together.join(in_paradigm, on=["token", "word"]), members)


def wilson_lower(hits: pl.Expr, trials: pl.Expr, z: float = WILSON_Z) -> pl.Expr:
    """The lower end of the Wilson score interval of hits / trials (0 without trials): a share
    seen 2 times in 2 reads 0.43, 20 in 20 reads 0.88, 100 in 600 reads 0.14."""
    n = trials.cast(pl.Float64)
    p = hits.cast(pl.Float64) / n
    z2n = z * z / n
    low = (p + z2n / 2 - z * (p * (1 - p) / n + z2n / (4 * n)).sqrt()) / (1 + z2n)
    return pl.when(n > 0).then(low.clip(0.0, 1.0)).otherwise(0.0)


@dataclass(frozen=True)
class Texts:
    """One kind of text of a source's image pairs, each distinct text once: ``ids`` (pair_row,
    text_id) and ``tokens`` (text_id, token), the text's distinct words. Pairs repeat their
    texts (the rows of an image share its caption and file name, questions recur), so what
    is computed per text costs distinct texts, not pairs."""

    ids: pl.DataFrame
    tokens: pl.DataFrame

    def per_pair(self) -> pl.DataFrame:
        """(pair_row, token) for every pair."""
        return self.ids.join(self.tokens, on="text_id").select("pair_row", "token")


def stated(translation: Translation, claims: pl.DataFrame, *texts: Texts) -> pl.DataFrame:
    """How strongly each pair's text (the union of ``texts``, parts of the text the translation
    was learned on) states each of its claim words (``claims``: (pair_row, word)).

    Returns (pair_row, word, stated), a row per claim: 1.0 when the text holds the word itself,
    else the largest, over the pair's text words t, lower Wilson bound of P(word | t, the word's
    paradigm), with the pair's own co-occurrence left out: how surely the source's other pairs
    show t to mean the word (a word seen twice beside t proves little); 0.0 when no text word
    bears on it. The largest over a union is the largest of the parts' largest, and each
    part's depends only on its text, the word and the pair's own claims: it is computed once
    per distinct (text, word, own claims).
    """
    t = translation
    own = claims.join(t.members, on="word").join(
        claims.rename({"word": "member"}), on=["pair_row", "member"], how="semi").group_by(
        "pair_row", "word").len("own_k")
    keyed = claims.join(own, on=["pair_row", "word"], how="left", maintain_order="left") \
        .with_columns(pl.col("own_k").fill_null(1))
    parts = [_stated_in(t, keyed, part).alias(f"part{i}") for i, part in enumerate(texts)]
    return claims.select("pair_row", "word").with_columns(
        stated=pl.max_horizontal(parts) if parts else pl.lit(0.0))


def _stated_in(t: Translation, keyed: pl.DataFrame, texts: Texts) -> pl.Series:
    """``stated`` of each row of ``keyed`` (pair_row, word, own_k) by one part of the text."""
    keyed = keyed.join(texts.ids, on="pair_row", how="left", maintain_order="left")
    distinct = keyed.select("text_id", "word", "own_k").drop_nulls("text_id").unique()
    # Only the text words the translation knows can bear on a claim: the others are dropped
    # before the (text, text word, claim word) join, the largest of the detectors.
    informative = texts.tokens.join(t.together.select("token").unique(), on="token",
                                    how="semi")
    learned = (
        distinct.join(informative, on="text_id")
        .join(t.together, on=["token", "word"])
        .with_columns(p=wilson_lower(pl.col("n_tw") - 1, pl.col("n_tp") - pl.col("own_k")))
        .group_by("text_id", "word", "own_k").agg(learned=pl.col("p").max())
    )
    literal = distinct.select("text_id", "word").unique().join(
        texts.tokens.rename({"token": "word"}), on=["text_id", "word"], how="semi"
    ).with_columns(literal=pl.lit(True))
    return (keyed.join(learned, on=["text_id", "word", "own_k"], how="left",
                       maintain_order="left")
            .join(literal, on=["text_id", "word"], how="left", maintain_order="left")
            .select(pl.when(pl.col("literal")).then(1.0)
                    .otherwise(pl.col("learned").fill_null(0.0).clip(0.0, 1.0)))
            .to_series())


@dataclass(frozen=True)
class Claims:
    """A source's claims, shared by the detectors that read them (``context.shared``)."""

    paradigm: pl.DataFrame     # word, alternatives
    words: pl.DataFrame        # pair, word: the claim words of every image pair
    context: Texts             # system turn and the user's turns up to the question
    outside: Texts             # metadata strings + image file names
    translation: Translation


def source_claims(pairs: pl.DataFrame, paradigm: pl.DataFrame | None = None) -> Claims:
    """Paradigms (``paradigm`` when the caller has them), claim words, the pairs' text words
    and the translation learned over them."""
    paradigm = paradigms(pairs) if paradigm is None else paradigm
    # Selected before filtered: a filter copies every column it is given. The token lists are
    # read per distinct text, never copied per pair.
    frame = pairs.with_row_index("pair_row").select(
        pl.col("pair_row").cast(pl.Int64), "image_sha256", "prompt_text", "caption",
        "image_names", claims=claim_words(pl.col("answer_tokens"), paradigm),
    ).filter(pl.col("image_sha256").is_not_null()).drop("image_sha256")
    words = split_token_lists(frame, pl.col("claims"), "word")
    context = distinct_texts(frame, ["prompt_text"], pairs["prompt_tokens"])
    outside = distinct_texts(frame, ["caption", "image_names"], pairs["outside_tokens"])
    return Claims(paradigm, words, context, outside,
                  learn_translation(words, context, outside, paradigm))


def distinct_texts(frame: pl.DataFrame, keys: list[str], tokens: pl.Series) -> Texts:
    """``Texts`` of the pairs of ``frame`` (pair_row and ``keys``, the text the tokens were
    computed from), one per distinct value of ``keys``; ``tokens`` holds the token list of
    every pair of the source, by pair_row."""
    distinct = frame.select("pair_row", *keys).unique(keys, keep="first", maintain_order=True) \
        .with_row_index("text_id").with_columns(pl.col("text_id").cast(pl.Int64))
    ids = frame.select("pair_row", *keys).join(
        distinct.select(*keys, "text_id"), on=keys, how="left", nulls_equal=True,
        maintain_order="left").select("pair_row", "text_id")
    return Texts(ids, split_token_lists(
        distinct.select(pair_row="text_id", token=tokens.gather(distinct["pair_row"])),
        pl.col("token")).rename({"pair_row": "text_id"}))


def split_token_lists(frame: pl.DataFrame, tokens: pl.Expr, name: str = "token") -> pl.DataFrame:
    """(pair, <name>) rows from a list of tokens per pair (one row per pair in ``frame``),
    distinct per pair: each list made unique before it is exploded, not a million-row unique
    after."""
    return frame.select("pair_row", tokens.list.unique().alias(name)).explode(name).drop_nulls(
        name)
