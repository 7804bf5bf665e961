"""Diversity keys: what an audit must not wipe out (the audited "diversity kept" check).

Measures, per QA pair:
- ``div_question_template``: the first TEMPLATE_WORDS words of the normalised question, VQA's
  notion of a question type ("what color is", "how many shapes", "is there a"). A policy that
  drops every "how many" question teaches the model to stop counting.
- ``div_image_cluster``: the pair's image's cluster (a string key) under spherical k-means over the image
  embeddings (k about the square root of the distinct images, at most MAX_CLUSTERS); null for
  text pairs and when scored without an encoder.
Cost: no model calls beyond the image embeddings grounding already has; k-means is
ITERATIONS passes of one (images x k) matrix product.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from integrity.detect.clusters import spherical_kmeans
from integrity.detect.pairs import IMAGE_READS
from integrity.detect.registry import Detector, register

TEMPLATE_WORDS = 3
MAX_CLUSTERS = 256


def image_clusters(embeddings: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """A cluster id per row of ``embeddings`` (unit vectors): seeded spherical k-means."""
    count = len(embeddings)
    if count == 0:
        return np.zeros(0, dtype=np.int32)
    k = int(min(MAX_CLUSTERS, max(1, round(np.sqrt(count)))))
    assignment, _ = spherical_kmeans(embeddings.astype(np.float32, copy=False), k, seed=seed)
    return assignment.astype(np.int32)


def score_diversity(pairs: pl.DataFrame, *, image_embeddings=None) -> pl.DataFrame:
    """Columns div_question_template and div_image_cluster (one row per pair).

    ``image_embeddings``: ``grounding.image_matrix(pairs, encoder)``, or None without a model.
    """
    templates = pairs.select(
        div_question_template=pl.col("question_norm").str.split(" ")
        .list.head(TEMPLATE_WORDS).list.join(" ")
    )
    cluster = pl.Series("div_image_cluster", [None] * pairs.height, dtype=pl.String)
    if image_embeddings is not None:
        rows, image_of_row, images = image_embeddings
        values = np.full(pairs.height, -1, dtype=np.int32)
        values[rows] = image_clusters(images)[image_of_row]
        cluster = pl.Series("div_image_cluster", values).replace(-1, None).cast(pl.String)
    return templates.with_columns(cluster)


register(Detector(
    name="diversity",
    reads=("question_norm", *IMAGE_READS),
    description="question templates and image clusters, so an audit can show what it removes",
    columns={"div_question_template": "first", "div_image_cluster": "first"},
    score=lambda context: score_diversity(context.pairs,
                                          image_embeddings=context.image_embeddings()),
))
