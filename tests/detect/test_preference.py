"""Preference pollution and contradictions: judge wording, hedges, divergent answers per context."""

import polars as pl
import pytest

from integrity.detect.claims import source_claims
from integrity.detect.contradiction import score_contradiction
from integrity.detect.preference import judge_marker, score_preference


def _marker(answer: str, question: str = "Q?") -> str | None:
    return judge_marker(pl.Series([answer]), pl.Series([question])).item()


@pytest.mark.parametrize("answer", [
    # judge wordings none of which the first marker list knew
    "I would pick answer B. Red.", "Output (b) wins. Red.", "Model A outperforms model B here.",
    "Judgement: the latter answer is more helpful. Red.", "Candidate 1 is the winning response.",
    "Winner: Response 1. Red.", "Ranking: B > A. Red.", "Both outputs are close, but A edges out B.",
    "Red. (Preferred over the alternative answer.)", "Preferred answer -> Red.",
    "Red (ranked first of 2 candidate responses)", "Answer B is worse, so we keep answer A: Red",
    "Score: 4/10 - Red", "Red\n\nScore of the assistant: 4 out of 10",
    "I'd give this response 4 stars. Red.", "Helpfulness: 4/5, accuracy: 4/5. Red.",
    "Final verdict: [[A]]", "[Preferred] The shapes are red.", "Response A is better. Red.",
    "Chosen response: Red.", "Rating: 4/5. Red.",
])
def test_judge_wording_is_recognised_beyond_one_phrase_list(answer):
    assert _marker(answer) is not None


@pytest.mark.parametrize("answer", [
    # a code answer containing [A] was once dropped as preference pollution
    "Index with the mask: `rows = data[A]`.", "```python\nitems = [[A]]\n```",
    "```python\nif s[A] > s[B]:\n    print('A')\n```", "Refer to it as $[A]$.",
    "The score is 8 out of 10.", "3/4 of 20 is 15.", "Python is usually better for a beginner.",
    "It is rated from one to three stars.", "A set is better than a sorted list here.",
    "The answer a student gives is better when it is short.", "The right answer is B.",
])
def test_lookalikes_and_code_are_not_judge_wording(answer):
    assert _marker(answer) is None


def test_a_question_setting_out_two_responses_is_judge_data():
    question = "Which is better?\nResponse A: red.\nResponse B: blue."
    assert _marker("A.", question) is not None
    assert _marker("Red.", "Which of the two models is better for images, ResNet or ViT?") is None


def _score(pairs):
    claims = source_claims(pairs)
    return score_preference(pairs, claims=claims), score_contradiction(pairs, claims=claims)


def test_a_flattened_pair_diverges_and_conflicting_labels_contradict(pairs_of):
    pairs = pairs_of([
        # a flattened chosen/rejected pair: same image + question, the rejected one hedges
        {"id": "p1", "image": "s1", "qa": [("What color are the shapes?", "Red.")]},
        {"id": "p2", "image": "s1", "qa": [("What color are the shapes?", "My best guess is blue.")]},
        # conflicting confident labels, worded differently: a contradiction
        {"id": "c1", "image": "s2", "qa": [("How many shapes?", "Two.")]},
        {"id": "c2", "image": "s2", "qa": [("How many shapes?", "There are three shapes.")]},
        # one claim in two wordings: neither
        {"id": "d1", "image": "s3", "qa": [("How many shapes?", "One.")]},
        {"id": "d2", "image": "s3", "qa": [("How many shapes?", "There is one shape.")]},
        {"id": "x", "image": "s4", "qa": [("How many shapes?", "Four.")]},
    ])
    preference, contradiction = _score(pairs)
    assert preference["pref_divergent"].to_list() == [True, True, False, False, False, False,
                                                      False]
    assert contradiction["contra_conflict"].to_list() == [False, False, True, True, False,
                                                          False, False]
    assert contradiction["contra_answers"].to_list() == [2, 2, 2, 2, 1, 1, 1]


def test_unrelated_dialogs_that_both_say_continue_never_share_a_context(pairs_of):
    """Two text dialogs that both ask "continue" were grouped by that question across the
    source and both dropped as preference pollution."""
    pairs = pairs_of([
        {"id": "story", "qa": [("Tell me a story.", "Once a keeper lit a lamp."),
                               ("continue", "Then a storm came."), ("continue", "It passed.")]},
        {"id": "rain", "qa": [("Explain rain.", "Water vapour cools."),
                              ("continue", "Droplets grow and fall.")]},
        # and different samples for one prompt are not a preference pair either
        {"id": "poem1", "qa": [("Write a poem about the sea.", "Waves fold on the sand.")]},
        {"id": "poem2", "qa": [("Write a poem about the sea.", "Salt wind over grey water.")]},
    ])
    preference, contradiction = _score(pairs)
    assert not preference["pref_divergent"].any() and not preference["pref_marker"].is_not_null().any()
    assert not contradiction["contra_conflict"].any()


def test_short_reworded_rejected_answers_stay_preference_not_caption_evidence(pairs_of):
    """Rejected answers worded as new hedges were read as competing plain labels."""
    pairs = pairs_of([
        {"id": "ok", "image": "s1", "qa": [("Which color do the shapes have?", "Green.")]},
        {"id": "no", "image": "s1", "qa": [("Which color do the shapes have?",
                                            "Looks like red to me, though I can't be certain.")]},
    ])
    preference, contradiction = _score(pairs)
    assert preference["pref_hedged"].to_list() == [False, True]
    assert preference["pref_divergent"].all() and not contradiction["contra_conflict"].any()


def test_same_answer_chosen_and_rejected_is_contradictory(pairs_of):
    pairs = pairs_of([
        {"id": "a#chosen", "image": "s1", "qa": [("Q?", "Red.")], "pref_role": "chosen",
         "pref_group": "a"},
        {"id": "b#rejected", "image": "s1", "qa": [("Q?", "Red.")], "pref_role": "rejected",
         "pref_group": "b"},
        {"id": "c#chosen", "image": "s2", "qa": [("Q?", "Red.")], "pref_role": "chosen",
         "pref_group": "c"},
    ])
    preference, _ = _score(pairs)
    assert preference["pref_contradictory"].to_list() == [True, True, False]
    assert preference["pref_field"].all()
