from integrity.detect.blind import score_blind


def test_answer_in_question_and_plural(pairs_of):
    pairs = pairs_of([
        {"id": "a", "image": "s1", "qa": [("The shapes are red. What color are they?", "Red.")]},
        {"id": "b", "image": "s2", "qa": [("This picture shows circles. What shape?", "Circle.")]},
        {"id": "c", "image": "s3", "qa": [("What color are the shapes?", "Red.")]},
        {"id": "d", "image": "s4", "qa": [("Is it reddish?", "Red.")]},  # not a whole word
        {"id": "e", "qa": [("Say red.", "Red.")]},  # text-only: not scored
    ])
    scores = score_blind(pairs)["blind_answer_in_question"].to_list()
    assert scores == [True, True, False, False, None]


def test_prior_over_the_dataset(pairs_of):
    rows = [{"id": f"bg{i}", "image": f"s{i}", "qa": [("What color is the background?", "White.")]}
            for i in range(6)]
    colors = ["Red.", "Blue.", "Green.", "Red.", "Blue.", "Yellow."]
    rows += [{"id": f"c{i}", "image": f"t{i}", "qa": [("What color are the shapes?", color)]}
             for i, color in enumerate(colors)]
    scores = score_blind(pairs_of(rows))
    assert scores["blind_prior"].to_list()[:6] == [1.0] * 6
    assert scores["blind_prior_support"].to_list()[:6] == [6] * 6
    assert scores["blind_prior"].to_list()[6:] == [2 / 6, 2 / 6, 1 / 6, 2 / 6, 2 / 6, 1 / 6]
