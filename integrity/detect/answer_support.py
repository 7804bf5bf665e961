"""Answer support: do the pixels pick what the answer claims over what it could have claimed?

Every image-pair answer, one word or a paragraph, is split into claims: each sentence
(``text.split_sentences``) and each claim word in it (a word the source's own short answers
show to have alternatives, ``claims.paradigms``: colors, counts, objects ...). For each claim
the sentence is shown to the model as written and with the claim word swapped for each of its
alternatives ("The image shows two red circles." against "... two blue circles.", "... two green
circles.", ...); the pixels support the claim as much as they prefer the sentence as written
over its strongest alternative: sigmoid(logit scale x (cos(image, own) - max cos(image, alt))).
Because the sentences differ in one word, what the model makes of the rest of the wording cancels
out; a synonym among the alternatives ties rather than wins.

- ``answer_support_prob``: the weakest claim's support (low: the image disagrees with something
  the answer says). An answer without claim words falls back to its grounding margin against
  other images, sigmoid(logit scale x grounding_margin), so every image answer has a score.
- ``answer_support_rank``: the weakest claim's rank among its sentences (1: the image prefers
  it as written).
- ``answer_support_candidates``: 1 + the weakest claim's alternatives (null on the fallback).
- ``answer_support_claim``: the weakest claim word (shown in reports; caption_leakage asks
  whether the row's own text states it).
Needs an Encoder and the source's paradigms. Cost: one text encode per distinct sentence and
swapped sentence (cached), one image encode per distinct image (cached, shared), a Python pass
over the distinct answers, and (pairs x claims x alternatives) dot products in blocks.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from integrity.detect.embeddings import rows_per_block
from integrity.detect.claims import CLAIMS_READS
from integrity.detect.pairs import IMAGE_READS
from integrity.detect.registry import Detector, register
from integrity.detect.text import split_sentences, surface_words

# Claims checked per distinct answer (the first ones, in reading order).
MAX_CLAIMS = 12


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if len(word) > 2 and word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def swap(sentence: str, start: int, end: int, token: str, alternative: str) -> str:
    """``sentence`` with the word at [start, end) (``token`` as written there) replaced by
    ``alternative``, in the same number and capitalisation."""
    surface = sentence[start:end]
    word = alternative
    if not surface.isdigit() and surface.lower() != token and surface.lower().endswith("s"):
        word = _plural(alternative)
    if surface.isupper() and len(surface) > 1:
        word = word.upper()
    elif surface[:1].isupper():
        word = word[:1].upper() + word[1:]
    return sentence[:start] + word + sentence[end:]


def answer_claims(answers: list[str], alternatives: dict[str, list[str]]) -> pl.DataFrame:
    """(answer, word, own, alts) for the claims of each distinct answer: the sentence holding
    the claim word as written and with the word swapped for each alternative."""
    rows = []
    for answer_id, answer in enumerate(answers):
        found = 0
        for sentence in split_sentences(answer) or [answer]:
            seen = set()
            for start, end, token in surface_words(sentence):
                if token in seen or token not in alternatives or found >= MAX_CLAIMS:
                    continue
                seen.add(token)
                found += 1
                rows.append((answer_id, token, sentence,
                             [swap(sentence, start, end, token, alt)
                              for alt in alternatives[token]]))
    return pl.DataFrame(rows, schema={"answer": pl.Int64, "word": pl.String, "own": pl.String,
                                      "alts": pl.List(pl.String)}, orient="row")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def claim_support(pairs: pl.DataFrame, *, encoder, image_embeddings,
                  alternatives: dict[str, list[str]]) -> pl.DataFrame:
    """(pair, word, support, rank, candidates) for every claim of every image pair."""
    rows, image_of_row, images = image_embeddings
    image_position = np.full(pairs.height, -1, dtype=np.int64)
    image_position[rows] = image_of_row
    with_image = pairs.select("image_sha256", "answer").with_row_index("pair_row").filter(
        pl.col("image_sha256").is_not_null())
    distinct = with_image.select("answer").unique(maintain_order=True).with_row_index("answer_id")
    claims = answer_claims(distinct["answer"].to_list(), alternatives).with_row_index("claim")
    empty = pl.DataFrame(schema={"pair_row": pl.Int64, "word": pl.String, "support": pl.Float32,
                                 "rank": pl.Int32, "candidates": pl.Int32})
    if claims.is_empty():
        return empty
    texts = pl.concat([claims["own"], claims["alts"].explode()]).unique(maintain_order=True)
    index = {text: i for i, text in enumerate(texts.to_list())}
    vectors = encoder.encode_texts(texts.to_list())
    width = int(claims["alts"].list.len().max())
    own_idx = np.array([index[t] for t in claims["own"].to_list()], dtype=np.int64)
    alt_idx = np.full((claims.height, width), -1, dtype=np.int64)
    for row, alts in enumerate(claims["alts"].to_list()):
        alt_idx[row, :len(alts)] = [index[t] for t in alts]
    scored = with_image.select(pl.col("pair_row").cast(pl.Int64), "answer").join(
        distinct, on="answer").join(claims.select("claim", answer_id="answer", word="word"),
                                    on="answer_id").sort("pair_row", "claim")
    pair_of = scored["pair_row"].to_numpy()
    claim_of = scored["claim"].to_numpy()
    support = np.empty(len(pair_of), dtype=np.float32)
    rank = np.empty(len(pair_of), dtype=np.int32)
    scale = encoder.logit_scale
    # (pair, claim) rows scored at once: a cache-sized (rows, alternatives, dim) gather.
    step = rows_per_block(4 * (width + 2) * images.shape[1])
    for start in range(0, len(pair_of), step):
        block = slice(start, start + step)
        image = images[image_position[pair_of[block]]]
        own = np.einsum("nd,nd->n", image, vectors[own_idx[claim_of[block]]])
        alt_rows = alt_idx[claim_of[block]]
        alt = np.einsum("nkd,nd->nk", vectors[np.maximum(alt_rows, 0)], image)
        alt = np.where(alt_rows >= 0, alt, -np.inf)
        support[block] = _sigmoid(scale * (own - alt.max(axis=1)))
        rank[block] = 1 + (alt > own[:, None]).sum(axis=1)
    return scored.select(
        "pair_row", "word", support=pl.Series(support), rank=pl.Series(rank),
        candidates=1 + pl.Series(claims["alts"].list.len().to_numpy()[claim_of]).cast(pl.Int32))


def score_answer_support(pairs: pl.DataFrame, *, encoder, image_embeddings, claims,
                         grounding_margin: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the answer_support columns, the claim-level supports) for every pair."""
    alternatives = dict(claims.paradigm.iter_rows())
    per_claim = claim_support(pairs, encoder=encoder, image_embeddings=image_embeddings,
                              alternatives=alternatives)
    weakest = per_claim.sort("pair_row", "support").group_by("pair_row", maintain_order=True).first()
    fallback = _sigmoid(encoder.logit_scale * grounding_margin.fill_null(np.nan).to_numpy())
    columns = pl.DataFrame({"pair_row": np.arange(pairs.height, dtype=np.int64)}).join(
        weakest, on="pair_row", how="left", maintain_order="left")
    return columns.select(
        answer_support_prob=pl.coalesce(pl.col("support"),
                                        pl.Series(fallback, dtype=pl.Float32).fill_nan(None)),
        answer_support_rank=pl.col("rank"),
        answer_support_candidates=pl.col("candidates"),
        answer_support_claim=pl.col("word"),
    ), per_claim


def _score(context) -> pl.DataFrame:
    claims = context.claims()
    columns, per_claim = score_answer_support(
        context.pairs, encoder=context.encoder, image_embeddings=context.image_embeddings(),
        claims=claims, grounding_margin=context.output("grounding")["grounding_margin"])
    context.shared("claim_support", lambda: per_claim)
    return columns


register(Detector(
    name="answer_support",
    reads=("answer", *IMAGE_READS, *CLAIMS_READS),
    description="the pixels pick each claim of the answer over its alternatives",
    columns={"answer_support_prob": "lower", "answer_support_rank": "higher",
             "answer_support_candidates": "higher", "answer_support_claim": "first"},
    score=_score,
    needs_encoder=True,
    after=("grounding",),
    histograms=("answer_support_prob",),
))
