"""Answer support: do the pixels pick this answer over the other answers to the same question?

The pixel-level check behind caption leakage. For each image pair with a short answer, the
candidates are the answers the dataset itself gives to the same normalised question (the
``max_candidates`` most frequent plain ones, plus the pair's own), each rendered with
``template`` (``{answer}``: the answer as the dataset most often writes it) and
scored against the image with CLIP; a softmax over candidates (temperature = the model's logit
scale) gives:
- ``answer_support_prob``: probability of the pair's own answer (low: the image disagrees).
- ``answer_support_rank``: 1 when the image prefers this answer over every other candidate.
- ``answer_support_candidates``: how many candidates competed (null: fewer than two exist, so
  the question has nothing to compare against).
Needs an Encoder and dataset-wide answer statistics. Cost: one text encode per distinct
(question, candidate) text, one image encode per distinct image (cached), and a
(pairs x candidates) matrix product per question.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from integrity.detect.embeddings import image_matrix
from integrity.detect.pairs import hedged
from integrity.detect.registry import Detector, register
from integrity.encoder import Encoder


def candidate_answers(pairs: pl.DataFrame, *, max_candidates: int) -> pl.DataFrame:
    """question_norm -> its most frequent plain short answers, most frequent first.

    Hedged answers ("Possibly red.") are not candidates: they restate another answer.
    """
    return (
        pairs.filter(pl.col("short_answer") & pl.col("image_sha256").is_not_null() & ~hedged())
        .group_by("question_norm", "answer_norm")
        .len()
        .sort(["question_norm", "len", "answer_norm"], descending=[False, True, False])
        .group_by("question_norm", maintain_order=True)
        .head(max_candidates)
    )


def score_answer_support(pairs: pl.DataFrame, *, encoder: Encoder, max_candidates: int = 16,
                         template: str = "{answer}", image_embeddings=None) -> pl.DataFrame:
    """Columns answer_support_prob, answer_support_rank, answer_support_candidates.

    ``image_embeddings``: ``image_matrix(pairs, encoder)`` when the caller already has it.
    """
    height = pairs.height
    prob = np.full(height, np.nan, dtype=np.float32)
    rank = np.zeros(height, dtype=np.int32)
    competing = np.zeros(height, dtype=np.int32)
    candidates = candidate_answers(pairs, max_candidates=max_candidates)
    scored = pairs.with_row_index("i").filter(
        pl.col("short_answer") & pl.col("image_sha256").is_not_null()
    )
    if scored.height:
        rows, image_of_row, images = image_embeddings or image_matrix(pairs, encoder)
        image_position = np.full(height, -1, dtype=np.int64)
        image_position[rows] = image_of_row
        # Each normalised answer is shown to the model as written most often ("Two.", not "two").
        spelling = dict(scored.group_by("answer_norm").agg(pl.col("answer").mode().sort().first())
                        .iter_rows())
        texts = sorted(set(candidates["answer_norm"]) | set(scored["answer_norm"]))
        vectors = dict(zip(texts, encoder.encode_texts(
            [template.format(answer=spelling.get(text, text)) for text in texts]), strict=True))
        scale = encoder.logit_scale
        by_question = dict(candidates.group_by("question_norm").agg("answer_norm").iter_rows())
        for (question,), group in scored.group_by("question_norm"):
            options = by_question.get(question, [])
            if not options:  # every answer to this question hedges: nothing to compare
                continue
            index = group["i"].to_numpy()
            own_answers = group["answer_norm"].to_list()
            image_vectors = images[image_position[index]]
            option_logits = scale * image_vectors @ np.stack([vectors[o] for o in options]).T
            own_logits = scale * np.einsum("nd,nd->n", image_vectors,
                                           np.stack([vectors[a] for a in own_answers]))
            # The own answer competes once: drop its copy among the options.
            duplicate = np.array(own_answers)[:, None] == np.array(options)[None, :]
            option_logits = np.where(duplicate, -np.inf, option_logits)
            all_logits = np.concatenate([own_logits[:, None], option_logits], axis=1)
            all_logits -= all_logits.max(axis=1, keepdims=True)
            weights = np.exp(all_logits)
            prob[index] = weights[:, 0] / weights.sum(axis=1)
            rank[index] = 1 + (all_logits[:, 1:] > all_logits[:, :1]).sum(axis=1)
            competing[index] = 1 + (~duplicate).sum(axis=1)
    valid = competing >= 2
    return pl.DataFrame({
        "answer_support_prob": pl.Series(np.where(valid, prob, np.nan)).fill_nan(None),
        "answer_support_rank": pl.Series(rank).set(pl.Series(~valid), None),
        "answer_support_candidates": pl.Series(competing).set(pl.Series(~valid), None),
    })


register(Detector(
    name="answer_support",
    description="the pixels pick this answer over the other answers to the question",
    columns={"answer_support_prob": "lower", "answer_support_rank": "higher",
             "answer_support_candidates": "higher"},
    score=lambda context: score_answer_support(context.pairs, encoder=context.encoder,
                                               image_embeddings=context.image_embeddings()),
    needs_encoder=True,
    histograms=("answer_support_prob",),
))
