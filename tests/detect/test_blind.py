"""Blind answerability: the prompt states the answer (in any wording), or the question alone
predicts it across the source's other images."""

import polars as pl

from integrity.detect.blind import score_blind, text_only_prior
from integrity.detect.claims import source_claims

COLORS = ["red", "blue", "green", "yellow"]
SYNONYMS = {"red": "crimson", "blue": "azure", "green": "emerald", "yellow": "golden"}


def _scores(pairs) -> pl.DataFrame:
    return score_blind(pairs, claims=source_claims(pairs))


def _source(extra: list[dict]) -> list[dict]:
    """Four colors answered on eight images each, half of them captioned with a synonym: the
    source itself shows that crimson means red."""
    rows = []
    for color in COLORS:
        for i in range(8):
            row = {"id": f"{color}{i}", "image": f"{color}{i}",
                   "qa": [("What color are the shapes?", f"{color.capitalize()}.")]}
            if i % 2:
                row["caption"] = f"two {SYNONYMS[color]} circles on the left"
            rows.append(row)
    return rows + extra


def test_the_prompt_states_the_answer_in_its_own_words_or_the_sources(pairs_of):
    pairs = pairs_of(_source([
        {"id": "literal", "image": "x1", "qa": [("The shapes are red. What color?", "Red.")]},
        {"id": "plural", "image": "x2",
         "qa": [("These are red circles. What color are they?", "They are red.")]},
        {"id": "synonym", "image": "x3",
         "qa": [("Given these crimson shapes, what color are they?", "Red.")]},
        {"id": "system", "image": "x4", "system": "The picture shows azure shapes.",
         "qa": [("What color are the shapes?", "Blue.")]},
        {"id": "choice", "image": "x5", "qa": [("Are they red or blue?", "Red.")]},
        {"id": "plain", "image": "x6", "qa": [("Which color are the figures?", "Green.")]},
        {"id": "text", "qa": [("Say red.", "Red.")]},
    ]))
    states = dict(zip(pairs["example_id"], _scores(pairs)["blind_question_states"], strict=True))
    assert states["literal"] == states["plural"] == 1.0
    assert states["synonym"] > 0.5 and states["system"] > 0.5  # learned from the captions
    assert states["choice"] == 0.0  # a question offering both answers states neither
    assert states["plain"] < 0.5
    assert states["text"] is None  # text-only: nothing to be blind to


def test_an_earlier_answer_is_not_the_prompt(pairs_of):
    """A description that repeats what earlier turns established is not blind: the model is
    told the user's turns, the assistant's own answers were grounded in the image."""
    pairs = pairs_of(_source([{"id": "dialog", "image": "x1", "qa": [
        ("What color are the shapes?", "Red."), ("Describe the image.", "Two red circles.")]}]))
    states = _scores(pairs).with_columns(pairs.select("example_id", "pair")).filter(
        pl.col("example_id") == "dialog")["blind_question_states"].to_list()
    assert states[1] < 0.5


def test_a_constant_answer_asked_three_times_is_predictable_without_the_image(pairs_of):
    rows = [{"id": f"bg{i}", "image": f"bg{i}",
             "qa": [("What color is the backdrop?", "White.")]} for i in range(3)]
    rows += [{"id": f"w{i}", "image": f"w{i}",
              "qa": [("Which color is the backdrop here?", "It is white.")]} for i in range(2)]
    pairs = pairs_of(_source(rows))
    prior = dict(zip(pairs["example_id"], _scores(pairs)["blind_prior"], strict=True))
    assert all(prior[f"bg{i}"] >= 0.6 for i in range(3))  # 2 other images + the other wording
    assert all(prior[f"w{i}"] >= 0.6 for i in range(2))   # "backdrop" links the wordings
    assert max(prior[f"{color}{i}"] for color in COLORS for i in range(8)) < 0.3


def test_the_prior_leaves_the_row_s_own_image_out():
    frame = pl.DataFrame({"image_sha256": ["a", "a", "b"],
                          "question": ["What is unique here?"] * 3,
                          "label": ["x", "x", "y"]})
    # Image a's rows only have each other and image b (answering y): no evidence for x.
    assert text_only_prior(frame).to_list()[:2] == [0.0, 0.0]
