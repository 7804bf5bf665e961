"""Spherical k-means (clusters.spherical_kmeans): assignments, unit centroids at the groups'
mean directions, seeding, and empty clusters keeping their centroid."""

import numpy as np

from integrity.detect.clusters import spherical_kmeans


def _unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _groups(seed: int = 0, groups: int = 3, size: int = 20, dim: int = 16):
    rng = np.random.default_rng(seed)
    centers = _unit(rng.normal(size=(groups, dim)))
    vectors = _unit(np.repeat(centers, size, axis=0) + 0.05 * rng.normal(size=(groups * size, dim)))
    return vectors, centers, np.repeat(np.arange(groups), size)


def test_separated_groups_get_one_cluster_each_with_a_unit_centroid_at_their_direction():
    vectors, centers, truth = _groups()
    assignment, centroids = spherical_kmeans(vectors, 3)
    assert assignment.shape == (60,) and centroids.shape == (3, 16)
    # a one-to-one map between clusters and groups
    mapping = {int(c): set(truth[assignment == c].tolist()) for c in np.unique(assignment)}
    assert len(mapping) == 3 and all(len(groups) == 1 for groups in mapping.values())
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    for cluster, (group,) in mapping.items():
        mean = vectors[truth == group].sum(axis=0)
        assert float(centroids[cluster] @ (mean / np.linalg.norm(mean))) > 0.9999


def test_each_vector_is_assigned_to_its_most_similar_centroid():
    vectors = _unit(np.random.default_rng(3).normal(size=(50, 8)))  # no structure at all
    assignment, centroids = spherical_kmeans(vectors, 4)
    assert (assignment == np.argmax(vectors @ centroids.T, axis=1)).all()
    assert len(np.unique(assignment)) > 1


def test_the_same_seed_gives_the_same_clusters_and_another_seed_starts_elsewhere():
    vectors = _unit(np.random.default_rng(4).normal(size=(40, 8)))
    first, centroids = spherical_kmeans(vectors, 5, seed=7)
    again, centroids_again = spherical_kmeans(vectors, 5, seed=7)
    assert (first == again).all() and np.array_equal(centroids, centroids_again)
    _, one_pass = spherical_kmeans(vectors, 5, seed=7, iterations=1)
    _, other_seed = spherical_kmeans(vectors, 5, seed=8, iterations=1)
    assert not np.allclose(one_pass, other_seed)


def test_a_cluster_left_empty_keeps_its_centroid_rather_than_becoming_nan():
    """Two identical rows drawn as seeds: ties go to the first, the second's cluster is empty."""
    a, b = _unit(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    vectors = np.stack([a, a, b]).astype(np.float32)
    assignment, centroids = spherical_kmeans(vectors, 3)
    assert not np.isnan(centroids).any()
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1.0)
    assert len(np.unique(assignment)) == 2 and assignment[0] == assignment[1] != assignment[2]
    empty = ({0, 1, 2} - set(assignment.tolist())).pop()
    assert np.allclose(centroids[empty], a)
