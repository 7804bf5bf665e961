from integrity.detect.contradiction import score_contradiction
from integrity.detect.preference import score_preference


def test_markers_fields_and_hedges(pairs_of):
    pairs = pairs_of([
        {"id": "a", "image": "s1", "qa": [("Which is better?", "Response A is better. Red.")]},
        {"id": "b", "image": "s2", "qa": [("Q?", "Rating: 4/5. The shapes are red.")]},
        {"id": "c", "image": "s3", "qa": [("Q?", "[[B]]")]},
        {"id": "d", "image": "s4", "qa": [("Q?", "Red.")], "pref_role": "chosen", "pref_group": "g"},
        {"id": "e", "image": "s5", "qa": [("What color?", "I think it might be blue.")]},
        {"id": "f", "image": "s6", "qa": [("Why is the response so short?", "It is brief.")]},
    ])
    scores = score_preference(pairs)
    assert scores["pref_marker"].to_list() == ["Response A is better", "Rating: 4/5", "[[B]]",
                                               None, None, None]
    assert scores["pref_field"].to_list() == [False, False, False, True, False, False]
    assert scores["pref_hedged"].to_list() == [False, False, False, False, True, False]


def test_divergent_answers_split_into_preference_and_contradiction(pairs_of):
    pairs = pairs_of([
        # a flattened chosen/rejected pair: same image + question, one answer hedges
        {"id": "p1", "image": "s1", "qa": [("What color are the shapes?", "Red.")]},
        {"id": "p2", "image": "s1", "qa": [("What color are the shapes?", "Possibly blue.")]},
        # conflicting plain labels: a contradiction
        {"id": "c1", "image": "s2", "qa": [("How many shapes?", "Two.")]},
        {"id": "c2", "image": "s2", "qa": [("How many shapes?", "Three.")]},
        # agreeing duplicates and a different image: neither
        {"id": "d1", "image": "s3", "qa": [("How many shapes?", "One.")]},
        {"id": "d2", "image": "s3", "qa": [("How many shapes?", "One.")]},
        {"id": "x", "image": "s4", "qa": [("How many shapes?", "Four.")]},
    ])
    pref = score_preference(pairs)["pref_divergent"].to_list()
    contra = score_contradiction(pairs)
    assert pref == [True, True, False, False, False, False, False]
    assert contra["contra_conflict"].to_list() == [False, False, True, True, False, False, False]
    assert contra["contra_answers"].to_list() == [2, 2, 2, 2, 1, 1, 1]


def test_same_answer_chosen_and_rejected_is_contradictory(pairs_of):
    pairs = pairs_of([
        {"id": "a#chosen", "image": "s1", "qa": [("Q?", "Red.")], "pref_role": "chosen",
         "pref_group": "a"},
        {"id": "b#rejected", "image": "s1", "qa": [("Q?", "Red.")], "pref_role": "rejected",
         "pref_group": "b"},
        {"id": "c#chosen", "image": "s2", "qa": [("Q?", "Red.")], "pref_role": "chosen",
         "pref_group": "c"},
    ])
    assert score_preference(pairs)["pref_contradictory"].to_list() == [True, True, False]
