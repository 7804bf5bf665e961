"""Answer support (answer_support: swap, answer_claims, claim_support, score_answer_support)
with the demo's shapes CLIP on its own images: each claim word of an answer swapped for its
alternatives, the pixels' preference for the answer as written, and the weakest claim."""

import numpy as np
import polars as pl
import pytest

from integrity.detect import score_pairs
from integrity.detect.answer_support import (
    MAX_CLAIMS,
    answer_claims,
    claim_support,
    score_answer_support,
    swap,
)
from integrity.detect.claims import source_claims
from integrity.detect.embeddings import image_matrix
from integrity.detect.text import word_token
from tests.detect.conftest import COLORS, color_labels, make_raw, shape_row


def _scored(rows, encoder) -> dict[str, dict]:
    pairs = score_pairs(make_raw(rows), encoder=encoder)
    return {row["example_id"]: row for row in pairs.iter_rows(named=True)}


def test_answer_support_ranks_the_pixels_answer_first(images, encoder):
    rows = color_labels(images) + [
        shape_row(images, "red", "Blue.", caption="two blue circles on the left", row_id="leak"),
        {"id": "text", "qa": [("What color is the sky?", "Blue.")]},
    ]
    scored = _scored(rows, encoder)
    labels = [scored[f"{c}{layout}-{c.capitalize()}."] for c in COLORS for layout in (0, 1)]
    assert all(r["answer_support_prob"] > 0.5 and r["answer_support_rank"] == 1 for r in labels)
    assert all(r["answer_support_candidates"] == 6 for r in labels)
    leak = scored["leak"]
    assert leak["answer_support_prob"] < 0.1 and leak["answer_support_rank"] > 1
    assert leak["answer_support_claim"] == "blue" and leak["leak_claim"] == "blue"
    assert leak["leak_text_support"] == 1.0 and leak["leak_score"] > 0.9
    assert all(r["leak_score"] < 0.1 for r in labels)
    assert scored["text"]["answer_support_prob"] is None  # text-only: nothing to look at


def test_prose_answers_get_a_support_score_for_every_claim(images, encoder):
    """Prose answers never got an answer-support score, so leak_score was null for them."""
    rows = color_labels(images) + [
        shape_row(images, color, f"The image shows two large {color} circles on the left. They "
                                 "are evenly spaced.", question="Describe the image.",
                  row_id=f"prose-{color}") for color in COLORS] + [
        shape_row(images, "red", "The image shows two large green circles on the left. They are "
                                 "evenly spaced.", question="Describe the image.", row_id="wrong",
                  caption="two large green circles on the left")]
    scored = _scored(rows, encoder)
    assert all(scored[f"prose-{c}"]["answer_support_prob"] > 0.5 for c in COLORS)
    wrong = scored["wrong"]
    assert wrong["answer_support_prob"] < 0.2 and wrong["answer_support_claim"] == "green"
    assert wrong["leak_score"] > 0.8


@pytest.mark.parametrize(("sentence", "word", "alternative", "swapped"), [
    ("Two red circles.", "Two", "three", "Three red circles."),  # capitalised as written
    ("A RED square.", "RED", "blue", "A BLUE square."),
    ("Three red circles.", "circles", "square", "Three red squares."),  # plural kept
    ("Six boxes.", "boxes", "dress", "Six dresses."),
    ("Two berries.", "berries", "cherry", "Two cherries."),
    ("There are 2 circles.", "2", "three", "There are three circles."),  # a digit: a word
    ("A glass.", "glass", "cup", "A cup."),  # a singular ending in s stays singular
])
def test_a_swapped_word_keeps_the_number_and_capitals_it_was_written_in(
        sentence, word, alternative, swapped):
    start = sentence.index(word)
    assert swap(sentence, start, start + len(word), word_token(word), alternative) == swapped


def test_claims_are_the_words_with_alternatives_once_per_sentence_in_reading_order():
    alternatives = {"red": ["blue", "green"], "two": ["three"]}
    claims = answer_claims(["Two red circles. The red one is big, red.", "Nothing here.", "Red."],
                           alternatives)
    assert claims.rows() == [
        (0, "two", "Two red circles.", ["Three red circles."]),
        (0, "red", "Two red circles.", ["Two blue circles.", "Two green circles."]),
        (0, "red", "The red one is big, red.", ["The blue one is big, red.",
                                                "The green one is big, red."]),
        (2, "red", "Red.", ["Blue.", "Green."]),
    ]
    assert answer_claims(["Nothing here."], alternatives).is_empty()


def test_a_long_answer_is_checked_on_its_first_claims_only():
    words = [f"w{i}" for i in range(MAX_CLAIMS + 5)]
    claims = answer_claims([" ".join(words) + "."], {word: ["x"] for word in words})
    assert claims["word"].to_list() == words[:MAX_CLAIMS]


ALTERNATIVES = {"red": ["blue", "green"], "blue": ["red", "green"], "green": ["red", "blue"]}


def test_a_claims_support_is_how_far_the_pixels_prefer_it_over_its_best_alternative(
        pairs_of, images, encoder):
    pairs = pairs_of([
        shape_row(images, "red", "Red."),
        {"id": "text", "qa": [("What color is the sky?", "Blue.")]},
        shape_row(images, "green", "Two circles.", question="How many?"),  # no claim word
        shape_row(images, "red", "Two red circles. They are blue.", question="Describe it."),
    ])
    per_claim = claim_support(pairs, encoder=encoder, image_embeddings=image_matrix(pairs, encoder),
                              alternatives=ALTERNATIVES)
    assert per_claim.select("pair_row", "word").rows() == [(0, "red"), (3, "red"), (3, "blue")]
    assert per_claim["candidates"].to_list() == [3, 3, 3]
    red_image = encoder.encode_images([images["red", 0][0]], [images["red", 0][1]])[0]
    for (row, word, support, rank, _), own in zip(
            per_claim.rows(), ["Red.", "Two red circles.", "They are blue."], strict=True):
        alts = [swap(own, own.lower().index(word), own.lower().index(word) + len(word), word,
                     alt) for alt in ALTERNATIVES[word]]
        cos = encoder.encode_texts([own, *alts]) @ red_image
        expected = 1 / (1 + np.exp(-encoder.logit_scale * (cos[0] - cos[1:].max())))
        assert support == pytest.approx(expected, abs=1e-4)
        assert rank == 1 + int((cos[1:] > cos[0]).sum())
    supports = dict(zip(per_claim["word"][1:], per_claim["support"][1:], strict=True))
    assert supports["red"] > 0.5 > supports["blue"]  # the pixels show red, not blue
    assert per_claim["rank"][2] > 1


def test_no_claim_words_give_an_empty_frame(pairs_of, images, encoder):
    pairs = pairs_of([shape_row(images, "red", "Two circles.", question="How many?")])
    per_claim = claim_support(pairs, encoder=encoder, image_embeddings=image_matrix(pairs, encoder),
                              alternatives=ALTERNATIVES)
    assert per_claim.is_empty()
    assert per_claim.columns == ["pair_row", "word", "support", "rank", "candidates"]


def test_the_answer_is_as_supported_as_its_weakest_claim_else_as_its_grounding_margin(
        pairs_of, images, encoder):
    pairs = pairs_of(color_labels(images) + [
        shape_row(images, "red", "The shapes are red. The shapes are blue.",
                  question="Describe the image.", row_id="mixed"),
        shape_row(images, "red", "Two circles on the left.", question="How many?",
                  row_id="margin"),
        shape_row(images, "blue", "Two circles on the left.", question="How many?",
                  row_id="even"),
        {"id": "text", "qa": [("What color is the sky?", "Blue.")]},
    ])
    margins = pl.Series([0.3] * 12 + [0.3, 0.1, 0.0, None], dtype=pl.Float32)
    columns, per_claim = score_answer_support(
        pairs, encoder=encoder, image_embeddings=image_matrix(pairs, encoder),
        claims=source_claims(pairs), grounding_margin=margins)
    assert columns.columns == ["answer_support_prob", "answer_support_rank",
                               "answer_support_candidates", "answer_support_claim"]
    assert columns.height == pairs.height
    mixed = per_claim.filter(pl.col("pair_row") == 12)
    assert sorted(mixed["word"]) == ["blue", "red"]
    weakest = mixed.sort("support").row(0, named=True)
    assert weakest["word"] == "blue"
    assert columns.row(12) == (pytest.approx(weakest["support"]), weakest["rank"], 6, "blue")
    # no claim words: the grounding margin through the model's temperature
    prob, rank, candidates, claim = columns.row(13)
    assert prob == pytest.approx(1 / (1 + np.exp(-encoder.logit_scale * 0.1)), abs=1e-6)
    assert (rank, candidates, claim) == (None, None, None)
    assert columns["answer_support_prob"][14] == 0.5
    assert columns.row(15) == (None, None, None, None)
    labels = columns.head(12)
    assert labels["answer_support_claim"].to_list() == [c for c in COLORS for _ in (0, 1)]
    assert (labels["answer_support_rank"] == 1).all()
