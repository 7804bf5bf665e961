"""Caption leakage (caption_leakage.score_caption_leakage and its caption_derived flaw): how
strongly the row's own text states each claim of the answer, times how little the pixels
support it; answers without claim words fall back to the share of their words the metadata and
file names hold.

The pixels' supports are given here as answer_support hands them over (one row per pair and
claim word), so each case states exactly what the image says; the model's own supports feeding
this detector are tested in test_answer_support.py."""

import polars as pl
import pytest

from integrity.detect.caption_leakage import CaptionDerived, score_caption_leakage
from integrity.detect.claims import source_claims
from integrity.detect.registry import Columns, detector

COLOR = "What color are the shapes?"


def _labels() -> list[dict]:
    """Plain color labels on images of their own: the source's color paradigm."""
    return [{"id": f"{color}{n}", "image": f"{color}{n}", "qa": [(COLOR, f"{color}.")]}
            for color in ("Red", "Blue", "Green") for n in (1, 2)]


def _leakage(pairs: pl.DataFrame, supports: dict[str, list[tuple[str, float]]],
             answer_support: dict[str, float]) -> dict[str, dict]:
    """Score every pair; ``supports``: example id -> (claim word, pixels' support) of its one
    pair, ``answer_support``: example id -> answer_support_prob (default: its weakest claim)."""
    ids = pairs["example_id"].to_list()
    per_claim = pl.DataFrame(
        [(ids.index(example), word, support) for example, claims in supports.items()
         for word, support in claims],
        schema={"pair_row": pl.Int64, "word": pl.String, "support": pl.Float32}, orient="row")
    probability = [answer_support.get(example, min((s for _, s in supports.get(example, [])),
                                                   default=None)) for example in ids]
    support = pl.DataFrame({"answer_support_prob": probability},
                           schema={"answer_support_prob": pl.Float32})
    columns = score_caption_leakage(pairs, source_claims(pairs), per_claim, support)
    assert columns.columns == ["leak_text_support", "leak_score", "leak_claim"]
    assert columns.height == pairs.height
    return dict(zip(ids, columns.iter_rows(named=True), strict=True))


def test_a_claim_the_caption_states_and_the_pixels_reject_leaks(pairs_of):
    pairs = pairs_of(_labels() + [
        {"id": "leak", "image": "s1", "caption": "two blue circles on the left",
         "qa": [(COLOR, "Blue.")]},
        {"id": "honest", "image": "s2", "caption": "two red circles on the left",
         "qa": [(COLOR, "Red.")]},
        {"id": "unsaid", "image": "s3", "caption": "a canvas photographed at dusk",
         "qa": [(COLOR, "Green.")]},
    ])
    labels = {row["id"]: [(row["id"][:-1].lower(), 0.95)] for row in _labels()}
    scores = _leakage(pairs, {**labels, "leak": [("blue", 0.05)], "honest": [("red", 0.97)],
                              "unsaid": [("green", 0.05)]}, {})
    leak = scores["leak"]
    assert leak["leak_text_support"] == 1.0 and leak["leak_claim"] == "blue"
    assert leak["leak_score"] == pytest.approx(0.95)
    # the caption says it, but so do the pixels
    assert scores["honest"]["leak_text_support"] == 1.0
    assert scores["honest"]["leak_score"] == pytest.approx(0.03)
    # the pixels reject it, but no text said it: a wrong answer, not a leaked one
    assert scores["unsaid"]["leak_text_support"] == 0.0 and scores["unsaid"]["leak_score"] == 0.0
    assert all(scores[f"{c}{n}"]["leak_score"] == 0.0 for c in ("Red", "Blue", "Green")
               for n in (1, 2))


def test_the_system_turn_and_the_file_name_are_the_rows_text_too(pairs_of):
    pairs = pairs_of(_labels() + [
        {"id": "system", "image": "s1", "system": "The caption reads: blue circles.",
         "qa": [(COLOR, "Blue.")]},
        {"id": "file", "image": "s2", "name": "images/two_green_circles_0001.png",
         "qa": [(COLOR, "Green.")]},
    ])
    scores = _leakage(pairs, {"system": [("blue", 0.1)], "file": [("green", 0.2)]}, {})
    assert scores["system"]["leak_text_support"] == 1.0
    assert scores["system"]["leak_score"] == pytest.approx(0.9)
    assert scores["file"]["leak_text_support"] == 1.0
    assert scores["file"]["leak_score"] == pytest.approx(0.8)


def test_the_leak_is_the_worst_claim_of_the_answer_not_the_weakest_supported(pairs_of):
    pairs = pairs_of(_labels() + [
        {"id": "two", "image": "s1", "caption": "blue squares beside circles",
         "qa": [(COLOR, "Red circles, blue squares.")]},
    ])
    # red: the pixels' weakest claim, but no text states it; blue: stated, and half rejected
    scores = _leakage(pairs, {"two": [("red", 0.1), ("blue", 0.5)]}, {})
    assert scores["two"]["leak_claim"] == "blue"
    assert scores["two"]["leak_text_support"] == 1.0
    assert scores["two"]["leak_score"] == pytest.approx(0.5)


def test_a_caption_in_the_sources_own_words_states_the_claim_as_strongly_as_the_source_shows(
        pairs_of):
    """"crimson" captions beside "Red." answers teach the translation; a wrong "Red." under a
    crimson caption then leaks in proportion to how surely crimson means red."""
    rows = [{"id": f"{c}{i}", "image": f"{c}{i}", "caption": f"two {word} circles",
             "qa": [(COLOR, f"{c.capitalize()}.")]}
            for c, word in (("red", "crimson"), ("blue", "azure"), ("green", "emerald"))
            for i in range(12)]
    rows.append({"id": "wrong", "image": "w", "caption": "two crimson circles",
                 "qa": [(COLOR, "Red.")]})
    pairs = pairs_of(rows)
    supports = {row["id"]: [(row["qa"][0][1].rstrip(".").lower(), 0.9)] for row in rows}
    scores = _leakage(pairs, {**supports, "wrong": [("red", 0.1)]}, {})
    stated = scores["wrong"]["leak_text_support"]
    assert 0.5 < stated < 1.0  # learned, not literal
    assert scores["wrong"]["leak_score"] == pytest.approx(stated * 0.9, rel=1e-5)
    assert scores["red0"]["leak_score"] == pytest.approx(stated * 0.1, abs=0.02)


def test_an_answer_without_claim_words_leaks_by_the_share_of_its_words_the_metadata_holds(
        pairs_of):
    describe = "Describe the image."
    pairs = pairs_of(_labels() + [
        {"id": "all", "image": "s1", "caption": "a lighthouse standing on a cliff",
         "qa": [(describe, "A lighthouse on a cliff.")]},
        {"id": "half", "image": "s2", "name": "lighthouse_0001.png",
         "qa": [(describe, "A lighthouse and a harbour.")]},
        {"id": "none", "image": "s3", "caption": "a photograph",
         "qa": [(describe, "A lighthouse and a harbour.")]},
        {"id": "text", "caption": "a lighthouse", "qa": [(describe, "A lighthouse.")]},
    ])
    scores = _leakage(pairs, {}, {"all": 0.3, "half": 0.4, "none": 0.1})
    assert scores["all"]["leak_text_support"] == 1.0
    assert scores["all"]["leak_score"] == pytest.approx(0.7)
    assert scores["half"]["leak_text_support"] == 0.5
    assert scores["half"]["leak_score"] == pytest.approx(0.3)
    assert scores["none"]["leak_text_support"] == 0.0 and scores["none"]["leak_score"] == 0.0
    assert scores["all"]["leak_claim"] is None
    # a text-only pair has no pixels to disagree with
    assert scores["text"] == {"leak_text_support": None, "leak_score": None, "leak_claim": None}


def test_the_flaw_flags_a_leak_score_at_or_above_the_policy_cut():
    (flaw,) = detector("caption_leakage").flaws
    assert flaw.name == "caption_derived" and flaw.needs == ("leak_score",)
    scores = pl.DataFrame({"leak_score": [0.9, 0.5, 0.49, None]},
                          schema={"leak_score": pl.Float32})

    def flagged(section):
        return scores.select(flaw.flag(section, Columns({"leak_score"}))).to_series().to_list()

    assert flagged(CaptionDerived()) == [True, True, False, None]
    assert flagged(CaptionDerived(leak_score_min=0.95)) == [False, False, False, None]
