"""Grounding (grounding.score_grounding, shuffled_partners) with the demo's shapes CLIP on its
own images: the answer's cosine with its image, its margin over other images, its weakest
sentence, and its cosine with a shuffled partner's image."""

import numpy as np
import polars as pl
import pytest

from integrity.detect.embeddings import image_matrix
from integrity.detect.grounding import score_grounding, shuffled_partners
from tests.detect.conftest import COLORS, color_labels, shape_row
from tests.detect.test_embeddings import s3_rows, s3_shapes

COLUMNS = ["grounding_cos", "grounding_margin", "grounding_min_sentence_cos",
           "grounding_shuffled_cos"]


def test_grounding_margin_prefers_the_matching_image(pairs_of, images, encoder):
    rows = [shape_row(images, color, f"There are two large {color} circles on the left.",
                      question="Describe the image.") for color in COLORS]
    rows.append(shape_row(images, "red", "There are two large red circles on the left. "
                                         "They are blue.", question="Describe the image.",
                          row_id="half-wrong"))
    pairs = pairs_of(rows)
    grounding = score_grounding(pairs, encoder=encoder, negatives=5)
    margins = grounding["grounding_margin"].to_list()
    assert all(margin > 0 for margin in margins[:6])
    sentences = grounding["grounding_min_sentence_cos"].to_list()
    assert sentences[6] < sentences[0]  # the invented sentence is the weakest
    assert grounding["grounding_cos"].is_not_null().all()


def _cos(encoder, image, text: str) -> float:
    vector = encoder.encode_images([image[0]], [image[1]])[0]
    return float(vector @ encoder.encode_texts([text])[0])


def test_the_cosine_is_the_image_and_answer_embeddings_and_text_pairs_stay_null(
        pairs_of, images, encoder):
    pairs = pairs_of([shape_row(images, "red", "Red."), {"id": "t", "qa": [("Hi?", "Hello.")]},
                      shape_row(images, "blue", "Two circles.", question="How many?")])
    grounding = score_grounding(pairs, encoder=encoder)
    assert grounding.columns == COLUMNS and grounding.height == 3
    assert grounding.schema == dict.fromkeys(COLUMNS, pl.Float32)
    cos = grounding["grounding_cos"].to_list()
    assert cos[0] == pytest.approx(_cos(encoder, images["red", 0], "Red."), abs=1e-5)
    assert cos[2] == pytest.approx(_cos(encoder, images["blue", 0], "Two circles."), abs=1e-5)
    assert grounding.row(1) == (None, None, None, None)


def test_with_two_images_the_margin_is_the_cosine_over_the_other_image(pairs_of, images,
                                                                       encoder):
    pairs = pairs_of([shape_row(images, "red", "Red."), shape_row(images, "blue", "Blue.")])
    margin = score_grounding(pairs, encoder=encoder, negatives=8)["grounding_margin"].to_list()
    red, blue = images["red", 0], images["blue", 0]
    assert margin[0] == pytest.approx(
        _cos(encoder, red, "Red.") - _cos(encoder, blue, "Red."), abs=1e-5)
    assert margin[1] == pytest.approx(
        _cos(encoder, blue, "Blue.") - _cos(encoder, red, "Blue."), abs=1e-5)
    assert margin[0] > 0 and margin[1] > 0


def test_one_image_has_no_other_to_compare_with_so_its_margin_is_null(pairs_of, images,
                                                                      encoder):
    pairs = pairs_of([shape_row(images, "red", "Red."),
                      shape_row(images, "red", "Two.", question="How many?")])
    grounding = score_grounding(pairs, encoder=encoder)
    assert grounding["grounding_cos"].null_count() == 0
    assert grounding["grounding_margin"].to_list() == [None, None]


def test_only_long_answers_have_a_weakest_sentence_and_one_sentence_is_its_own(
        pairs_of, images, encoder):
    one = "There are two large red circles on the left."
    two = "There are two large red circles on the left. They are evenly spaced."
    pairs = pairs_of([shape_row(images, "red", "Red."),
                      shape_row(images, "red", one, question="Describe it."),
                      shape_row(images, "red", two, question="Describe the image.")])
    grounding = score_grounding(pairs, encoder=encoder)
    weakest = grounding["grounding_min_sentence_cos"].to_list()
    cos = grounding["grounding_cos"].to_list()
    assert weakest[0] is None  # a short label: nothing to split
    assert weakest[1] == pytest.approx(cos[1], abs=1e-6)
    red = images["red", 0]
    assert weakest[2] == pytest.approx(min(_cos(encoder, red, one),
                                           _cos(encoder, red, "They are evenly spaced.")),
                                       abs=1e-5)


def test_the_shuffled_cosine_pairs_each_answer_with_its_partners_image(pairs_of, images,
                                                                       encoder):
    rows = color_labels(images) + [shape_row(images, "red", "Two.", question="How many?")]
    pairs = pairs_of(rows)
    grounding = score_grounding(pairs, encoder=encoder)
    rows_, image_of_row, vectors = image_matrix(pairs, encoder)
    partner = shuffled_partners(pairs, rows_, image_of_row)
    answers = encoder.encode_texts(pairs["answer"].to_list())
    expected = [float(vectors[p] @ answers[i]) if p >= 0 else None
                for i, p in enumerate(partner)]
    shuffled = grounding["grounding_shuffled_cos"].to_list()
    assert shuffled[-1] is None  # nobody else asks how many
    assert shuffled[:-1] == pytest.approx(expected[:-1], abs=1e-5)
    # the model fits its own data: an answer fits its own image better than its partner's
    cos = grounding["grounding_cos"].to_list()
    assert sum(c > s for c, s in zip(cos[:-1], shuffled[:-1], strict=True)) >= 11


def test_the_same_seed_gives_the_same_scores_and_shared_embeddings_change_nothing(
        pairs_of, images, encoder):
    pairs = pairs_of(color_labels(images))
    first = score_grounding(pairs, encoder=encoder, negatives=3, seed=1)
    assert first.equals(score_grounding(pairs, encoder=encoder, negatives=3, seed=1))
    shared = score_grounding(pairs, encoder=encoder, negatives=3, seed=1,
                             image_embeddings=image_matrix(pairs, encoder))
    assert shared.equals(first)
    other = score_grounding(pairs, encoder=encoder, negatives=3, seed=2)
    assert other["grounding_cos"].equals(first["grounding_cos"])
    assert not other["grounding_margin"].equals(first["grounding_margin"])


def test_a_source_without_images_gets_null_columns(pairs_of, encoder):
    pairs = pairs_of([{"id": "a", "qa": [("Q?", "A."), ("Q2?", "B.")]}])
    grounding = score_grounding(pairs, encoder=encoder)
    assert grounding.columns == COLUMNS and grounding.height == 2
    assert all(grounding[name].null_count() == 2 for name in COLUMNS)


def _partners(pairs, images_of_rows: list[int], seed: int = 0) -> list[int]:
    rows = np.arange(pairs.height)
    return shuffled_partners(pairs, rows, np.array(images_of_rows), seed=seed).tolist()


def test_a_shuffled_partner_asks_the_same_question_of_another_image_and_answers_otherwise(
        pairs_of):
    color, count = "What color are the shapes?", "How many shapes?"
    pairs = pairs_of([
        {"id": "r", "image": "i0", "qa": [(color, "Red.")]},
        {"id": "b", "image": "i1", "qa": [(color, "Blue.")]},
        {"id": "g", "image": "i2", "qa": [(color, "green")]},
        {"id": "same-answer1", "image": "i3", "qa": [(count, "Two.")]},
        {"id": "same-answer2", "image": "i4", "qa": [(count, "two")]},
        {"id": "same-image1", "image": "i5", "qa": [("Which shape?", "Circle.")]},
        {"id": "same-image2", "image": "i5", "qa": [("Which shape?", "Square.")]},
        {"id": "alone", "image": "i6", "qa": [("Is it day?", "Yes.")]},
    ])
    image_of_row = [0, 1, 2, 3, 4, 5, 5, 6]
    partner = _partners(pairs, image_of_row)
    assert partner[3:] == [-1] * 5  # same answer, same image, or nobody else asks
    for row in range(3):
        assert partner[row] in {0, 1, 2} - {image_of_row[row]}
    assert _partners(pairs, image_of_row) == partner  # seeded
    seeds = {tuple(_partners(pairs, image_of_row, seed)[:3]) for seed in range(8)}
    assert len(seeds) > 1  # the seed picks which partner


def test_grounding_reads_s3_images_with_the_storage_options_it_is_given(
        pairs_of, encoder, s3_server, monkeypatch, tmp_path):
    options, found = s3_shapes(s3_server, monkeypatch, tmp_path, ["purple", "orange"], size=80)
    grounding = score_grounding(pairs_of(s3_rows(found)), encoder=encoder,
                                storage_options=options)
    assert grounding.columns == COLUMNS and grounding.height == 2
    assert grounding["grounding_cos"].is_not_null().all()


def test_scoring_in_small_blocks_gives_the_same_columns(pairs_of, images, encoder, monkeypatch):
    """The mismatched images are gathered in blocks bounded in bytes (65,536 pairs x 8
    negatives x 768 dims was 1.6 GB at once): blocks of any size score the same."""
    import integrity.detect.grounding as grounding_module

    rows = [shape_row(images, color, f"There are two {color} circles.", row_id=f"{color}-{i}")
            for i in range(3) for color in COLORS]
    pairs = pairs_of(rows)
    whole = score_grounding(pairs, encoder=encoder, negatives=4)
    monkeypatch.setattr(grounding_module, "BLOCK_BYTES", 4 * 4 * encoder.dim * 3)  # 3 pairs
    blocked = score_grounding(pairs, encoder=encoder, negatives=4)
    assert blocked.equals(whole)
    assert whole["grounding_margin"].is_not_null().all()
