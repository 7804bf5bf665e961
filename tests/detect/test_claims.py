"""Claims learned from the source: paradigms, text anywhere in a row, and what it states."""

import polars as pl

from integrity.detect.claims import (
    file_words,
    metadata_text,
    paradigms,
    source_claims,
    stated,
    wilson_lower,
)

COLORS = ["red", "blue", "green"]


def test_paradigms_are_the_words_that_answer_one_question(pairs_of):
    rows = [{"id": f"{c}{i}", "image": f"{c}{i}", "qa": [("What color are the shapes?",
                                                          f"The shapes are {c}.")]}
            for c in COLORS for i in range(2)]
    # A question that states its answer leaves filler behind ("count", "shape"): never a claim.
    rows += [{"id": f"b{i}", "image": f"b{i}",
              "qa": [("Counting two shapes, how many are there?", answer)]}
             for i, answer in enumerate(["I count two.", "Two shapes.", "I count two.",
                                         "Two shapes."])]
    found = dict(paradigms(pairs_of(rows)).iter_rows())
    assert set(found) == set(COLORS)
    assert sorted(found["red"]) == ["blue", "green"]


def test_a_caption_is_found_under_any_key_at_any_depth():
    """The caption once had to sit under one of six known keys; nested or renamed, it was never
    read, and caption-derived rows were kept."""
    metadata = pl.Series(['{"annotations": [{"alt": "two crimson discs"}], "n": 3}',
                          '{"meta": {"source": {"original_caption": "a red box"}}}', "{}", ""])
    assert metadata_text(metadata).to_list() == ["two crimson discs", "a red box", "", ""]
    too_deep = '{"a":' * 2000 + '"x"' + "}" * 2000  # past orjson's nesting limit: no caption
    assert metadata_text(pl.Series([too_deep])).to_list() == [""]
    names = pl.DataFrame({"images": [["images/two_red_circles-left.0001.png"], []]})
    assert names.select(file_words(pl.col("images")))["images"].to_list() == [
        "two red circles left 0001", ""]


def _by_example(pairs: pl.DataFrame, said: pl.DataFrame) -> dict[str, float]:
    """example_id -> what its (last) pair's text states of its claim."""
    return dict(said.join(pairs.with_row_index("pair_row").select(
        pl.col("pair_row").cast(pl.Int64), "example_id"), on="pair_row").select(
        "example_id", "stated").iter_rows())


def test_the_source_teaches_which_caption_words_state_a_claim(pairs_of):
    rows = [{"id": f"{c}{i}", "image": f"{c}{i}", "caption": f"two {word} circles",
             "qa": [("What color are the shapes?", f"{c.capitalize()}.")]}
            for c, word in (("red", "crimson"), ("blue", "azure"), ("green", "emerald"))
            for i in range(12)]
    rows.append({"id": "once", "image": "o", "caption": "a vermilion circle",
                 "qa": [("What color are the shapes?", "Red.")]})
    rows.append({"id": "seen-once", "image": "s", "caption": "a vermilion thing",
                 "qa": [("What color are the shapes?", "Red.")]})
    pairs = pairs_of(rows)
    claims = source_claims(pairs)
    by_id = _by_example(pairs, stated(claims.translation, claims.words, claims.context,
                                      claims.outside))
    assert by_id["red0"] > 0.7  # crimson beside red eleven other times
    assert by_id["once"] < 0.5  # vermilion seen beside red once more proves little


def test_wilson_lower_bound():
    frame = pl.DataFrame({"hits": [2, 20, 100, 0], "trials": [2, 20, 600, 0]})
    low = frame.select(wilson_lower(pl.col("hits"), pl.col("trials")))["hits"].to_list()
    assert [round(v, 2) for v in low] == [0.42, 0.88, 0.14, 0.0]


def test_what_a_pairs_text_states_is_the_same_computed_per_distinct_text(pairs_of):
    """Captions and questions repeat across pairs, so ``stated`` works per distinct text and
    per part (the question's context, the caption and file names): the largest over a pair's
    whole text is the largest over its parts. It must equal the pair-by-pair answer over the
    union of each pair's words (caption leakage took 11 s of 1M rows that way)."""
    from integrity.detect.claims import Texts

    rows = [{"id": f"{c}{i}", "image": f"{c}{i % 5}", "caption": f"two {word} circles",
             "qa": [("What color are the shapes?", f"{c.capitalize()}."),
                    (f"Are they {word} or dark?" if i % 3 == 0 else "How many?",
                     "Two." if i % 2 else f"{c.capitalize()}, two.")]}
            for c, word in (("red", "crimson"), ("blue", "azure"), ("green", "emerald"))
            for i in range(9)]
    rows.append({"id": "literal", "image": "l", "caption": "a red circle",
                 "qa": [("What color are the shapes?", "Red.")]})
    rows.append({"id": "silent", "image": "s", "caption": "a photo",
                 "qa": [("What color are the shapes?", "Blue.")]})
    pairs = pairs_of(rows)
    claims = source_claims(pairs)
    union = pl.concat([claims.context.per_pair(), claims.outside.per_pair()]).unique()
    one_text_per_pair = Texts(union.select("pair_row", text_id="pair_row").unique(),
                              union.rename({"pair_row": "text_id"}))
    by_parts = stated(claims.translation, claims.words, claims.context, claims.outside)
    by_pair = stated(claims.translation, claims.words, one_text_per_pair)
    assert by_parts.sort("pair_row", "word").equals(by_pair.sort("pair_row", "word"))
    assert by_parts.height == claims.words.height
    assert claims.context.tokens["text_id"].n_unique() < claims.context.ids.height  # shared
    by_id = _by_example(pairs, by_parts)
    assert by_id["literal"] == 1.0 and by_id["silent"] == 0.0 and by_id["red1"] > 0.7


def test_the_translation_counted_per_distinct_text_is_the_per_pair_count(pairs_of):
    """``learn_translation`` counts (text word, claim word) per distinct whole text, times the
    pairs of that text that claim the word: the counts must be those of every (pair, text word,
    claim word) triple (the per-pair join held 15M rows at 1M rows). A word in both the
    question and the caption counts once per pair."""
    from collections import Counter

    # Red rows' captions say crimson, but every fourth says azure; some questions repeat it.
    rows = [{"id": f"{c}{i}", "image": f"{c}{i % 4}",
             "caption": f"two {'azure' if c == 'red' and i % 4 == 3 else word} circles",
             "qa": [("What color are the shapes?" if i % 2 else f"What color, {word} or not?",
                     f"{c.capitalize()}.")]}
            for c, word in (("red", "crimson"), ("blue", "azure"), ("green", "emerald"))
            for i in range(8)]
    pairs = pairs_of(rows)
    claims = source_claims(pairs)
    whole = pl.concat([claims.context.per_pair(), claims.outside.per_pair()]).unique()
    claimed = set(claims.words["pair_row"].to_list())
    tokens_of: dict[int, set[str]] = {}
    for pair, token in whole.iter_rows():
        if pair in claimed:
            tokens_of.setdefault(pair, set()).add(token)
    share = Counter(token for tokens in tokens_of.values() for token in tokens)
    informative = {t for t, n in share.items() if n <= 0.5 * len(claimed)}
    expected = Counter((token, word) for pair, word in claims.words.iter_rows()
                       for token in tokens_of.get(pair, ()) if token in informative)
    together = claims.translation.together
    assert dict(zip(zip(together["token"], together["word"]), together["n_tw"])) == dict(expected)
    assert expected[("azure", "blue")] == 8 and expected[("azure", "red")] == 2
