"""Diversity keys: question templates and image clusters."""

import numpy as np

from integrity.detect.diversity import image_clusters, score_diversity


def test_templates_are_the_first_words_of_the_normalised_question(pairs_of):
    pairs = pairs_of([
        {"id": "a", "image": "i1", "qa": [("What color is the square?", "Red.")]},
        {"id": "b", "image": "i2", "qa": [("what COLOR is it", "Blue.")]},
        {"id": "c", "qa": [("How many?", "Two."), ("Why", "Because.")]},
    ])
    columns = score_diversity(pairs)
    assert columns["div_question_template"].to_list() == [
        "what color is", "what color is", "how many", "why"]
    assert columns["div_image_cluster"].null_count() == pairs.height  # no encoder, no clusters


def test_clusters_never_mix_well_separated_groups():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 32))
    vectors = np.repeat(centers, 25, axis=0) + 0.05 * rng.normal(size=(100, 32))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    clusters = image_clusters(vectors)
    truth = np.repeat(np.arange(4), 25)
    for cluster in set(clusters.tolist()):
        assert len(set(truth[clusters == cluster].tolist())) == 1
    assert (image_clusters(vectors) == clusters).all()  # seeded: the same every time


def test_pairs_of_one_image_share_its_cluster(pairs_of):
    pairs = pairs_of([
        {"id": "a", "image": "i1", "qa": [("What color?", "Red."), ("What shape?", "Square.")]},
        {"id": "b", "image": "i2", "qa": [("What color?", "Blue.")]},
        {"id": "c", "qa": [("Hi?", "Hello.")]},
    ])
    rows = np.array([0, 1, 2])
    image_of_row = np.array([0, 0, 1])
    images = np.eye(2, dtype=np.float32)
    cluster = score_diversity(pairs, image_embeddings=(rows, image_of_row, images))[
        "div_image_cluster"].to_list()
    assert cluster[0] == cluster[1] and cluster[2] is not None and cluster[3] is None
