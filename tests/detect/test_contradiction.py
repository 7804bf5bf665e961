"""Contradictions (contradiction.score_contradiction and its flaw): plain labels of one context
(same images, system turn and turns up to the question) that make different claims.

How contradictions and preference pairs divide the cases between them is tested beside the
preference detector (test_preference.py)."""

import polars as pl

from integrity.detect.claims import source_claims
from integrity.detect.contradiction import Contradiction, score_contradiction
from integrity.detect.registry import Columns, detector

COLOR = "What color are the shapes?"


def _score(pairs, *, with_claims: bool = True) -> dict[str, tuple[int, bool]]:
    columns = score_contradiction(pairs, claims=source_claims(pairs) if with_claims else None)
    assert columns.columns == ["contra_answers", "contra_conflict"]
    assert columns.height == pairs.height
    ids = [f"{example}/{pair}" for example, pair in pairs.select("example_id", "pair").iter_rows()]
    return dict(zip(ids, columns.iter_rows(), strict=True))


def test_three_plain_labels_of_one_image_and_question_make_three_claims_and_conflict(pairs_of):
    scores = _score(pairs_of([
        {"id": "a", "image": "s1", "qa": [(COLOR, "Red.")]},
        {"id": "b", "image": "s1", "qa": [(COLOR, "Blue.")]},
        {"id": "c", "image": "s1", "qa": [(COLOR, "The shapes are green.")]},
        {"id": "d", "image": "s1", "qa": [(COLOR, "red")]},  # a claim already made
        {"id": "e", "image": "s2", "qa": [(COLOR, "Red.")]},
        {"id": "f", "qa": [("What is the capital of France?", "Paris.")]},
        {"id": "g", "qa": [("What is the capital of France?", "Lyon.")]},
    ]))
    assert [scores[f"{i}/0"] for i in "abcd"] == [(3, True)] * 4
    assert scores["e/0"] == (1, False)
    assert scores["f/0"] == scores["g/0"] == (2, True)  # text-only questions conflict too


def test_different_images_system_turns_or_earlier_turns_are_different_contexts(pairs_of):
    scores = _score(pairs_of([
        {"id": "img1", "image": "s1", "qa": [(COLOR, "Red.")]},
        {"id": "img2", "image": "s2", "qa": [(COLOR, "Blue.")]},
        {"id": "sys1", "image": "s3", "system": "Answer in one word.", "qa": [(COLOR, "Red.")]},
        {"id": "sys2", "image": "s3", "system": "Answer about the left shape.",
         "qa": [(COLOR, "Blue.")]},
        {"id": "turn1", "image": "s4", "qa": [("Look at the left.", "Done."), (COLOR, "Red.")]},
        {"id": "turn2", "image": "s4", "qa": [("Look at the right.", "Done."), (COLOR, "Blue.")]},
    ]))
    assert len(scores) == 8 and set(scores.values()) == {(1, False)}


def test_a_description_among_labels_is_a_second_claim_but_no_conflict(pairs_of):
    scores = _score(pairs_of([
        {"id": "label", "image": "s1", "qa": [(COLOR, "Red.")]},
        {"id": "prose", "image": "s1", "qa": [(COLOR, "Two large blue circles sit on the left "
                                                      "of a white canvas.")]},
        {"id": "hedge", "image": "s2", "qa": [(COLOR, "Red.")]},
        {"id": "unsure", "image": "s2", "qa": [(COLOR, "Maybe blue.")]},
    ]))
    assert scores["label/0"] == scores["prose/0"] == (2, False)
    assert scores["hedge/0"] == scores["unsure/0"] == (2, False)


def test_the_sources_claim_words_make_two_wordings_of_one_color_one_claim(pairs_of):
    """The source's own labels make a color paradigm; "Red circles." then claims "red" as
    "Red." does. Without the paradigm the extra word "circles" reads as a different claim."""
    labels = [{"id": f"{color}{n}", "image": f"{color}{n}", "qa": [(COLOR, f"{color}.")]}
              for color in ("Red", "Blue", "Green") for n in (1, 2)]
    pairs = pairs_of(labels + [{"id": "x", "image": "s9", "qa": [(COLOR, "Red circles.")]},
                               {"id": "y", "image": "s9", "qa": [(COLOR, "Red.")]}])
    assert not source_claims(pairs).paradigm.is_empty()
    with_claims = _score(pairs)
    assert with_claims["x/0"] == with_claims["y/0"] == (1, False)
    without = _score(pairs, with_claims=False)
    assert without["x/0"] == without["y/0"] == (2, True)
    assert not any(conflict for _, conflict in with_claims.values())


def test_the_flaw_needs_a_conflict_with_at_least_the_configured_number_of_answers():
    (flaw,) = detector("contradiction").flaws
    assert flaw.name == "contradiction" and flaw.action == "review" and flaw.blocking_none_kept
    scores = pl.DataFrame({"contra_answers": [1, 2, 3, 3],
                           "contra_conflict": [False, True, True, False]})

    def flagged(section):
        return scores.select(flaw.flag(section, Columns(set(scores.columns)))).to_series()

    assert flagged(Contradiction()).to_list() == [False, True, True, False]
    assert flagged(Contradiction(min_distinct_answers=3)).to_list() == [False, False, True,
                                                                         False]
