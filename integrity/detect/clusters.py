"""Spherical k-means over unit vectors: image clusters (diversity) and near-copy cells
(duplicates) share it."""

from __future__ import annotations

import numpy as np
import scipy.sparse

ITERATIONS = 15


def spherical_kmeans(vectors: np.ndarray, k: int, *, seed: int = 0,
                     iterations: int = ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
    """(a cluster per row, the unit centroids) of unit ``vectors``: seeded spherical k-means,
    ``k`` centroids drawn from the rows, each pass one (rows x k) matrix product."""
    centroids = vectors[np.random.default_rng(seed).choice(len(vectors), size=k, replace=False)]
    assignment = np.zeros(len(vectors), dtype=np.int64)
    for _ in range(iterations):
        assignment = np.argmax(vectors @ centroids.T, axis=1)
        # Per-cluster sums as a sparse (k x rows) one-hot product: the same sums, in the same
        # order, as np.add.at, several times faster.
        one_hot = scipy.sparse.csr_matrix(
            (np.ones(len(vectors), dtype=vectors.dtype), (assignment, np.arange(len(vectors)))),
            shape=(k, len(vectors)))
        sums = np.asarray(one_hot @ vectors)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        filled = norms[:, 0] > 0  # an empty cluster keeps its centroid
        centroids[filled] = sums[filled] / norms[filled]
    return assignment, centroids
