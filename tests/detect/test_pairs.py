import polars as pl

from integrity.detect.pairs import normalise, qa_pairs
from tests.detect.conftest import make_raw


def test_pairs_split_dialogs_in_order_with_normalised_text():
    raw = make_raw([
        {"id": "a", "image": "s1", "caption": "two red circles",
         "qa": [("What color are the shapes?", "Red."), ("How many?", "There are two circles.")]},
        {"id": "b", "qa": [("What is 2 plus 2?", "4")]},
    ])
    pairs = qa_pairs(raw)
    assert pairs.select("example_id", "pair").rows() == [("a", 0), ("a", 1), ("b", 0)]
    first = pairs.row(0, named=True)
    assert first["question_norm"] == "what color are the shapes"
    assert first["answer_norm"] == "red" and first["short_answer"] is True
    assert first["caption"] == "two red circles" and first["image_sha256"] == "s1"
    assert pairs.row(1, named=True)["short_answer"] is False  # four words
    assert pairs.row(2, named=True)["image_sha256"] is None


def test_system_turns_are_not_pairs():
    raw = make_raw([{"id": "a", "qa": [("Q?", "A.")]}]).with_columns(
        turns=pl.concat_list(pl.lit([{"role": "system", "content": "Be nice."}],
                                    dtype=pl.List(pl.Struct({"role": pl.String,
                                                             "content": pl.String}))),
                             "turns"))
    pairs = qa_pairs(raw)
    assert pairs.select("question", "answer").rows() == [("Q?", "A.")]


def test_normalise():
    frame = pl.DataFrame({"t": ["<image>\nWhat's  the COLOR?!", "Ünïcode, ok."]})
    assert frame.select(normalise(pl.col("t")))["t"].to_list() == ["what s the color", "ünïcode ok"]


def test_content_words_per_distinct_text_equal_those_of_every_row():
    """qa_pairs computes tokens once per distinct text and joins them back: the same lists, in
    row order, repeated and null texts included."""
    import polars as pl

    from integrity.detect.pairs import _with_tokens
    from integrity.detect.text import tokens

    texts = ["There are 2 red circles.", None, "What colour?", "There are 2 red circles.",
             "", "What colour?", "Blue squares"]
    frame = pl.DataFrame({"text": texts, "row": range(len(texts))})
    expected = frame.with_columns(tokens(pl.col("text")).alias("words"))
    assert _with_tokens(frame, {"words": "text"}).equals(expected)


def test_rows_split_in_chunks_give_the_same_pairs_as_all_at_once(monkeypatch):
    """At 1M rows building the pairs frame held 3.6 GB beyond the rows (the turns exploded and
    joined at once); every pair depends on its own row only, so chunks of rows give the same
    frame, in the same order, with the same content words."""
    import integrity.detect.pairs as pairs_module

    rows = [{"id": f"r{i}", "image": f"s{i % 3}", "caption": f"caption {i % 4}",
             "qa": [(f"Question {i % 5}?", f"Answer {i}."), ("And?", f"{i % 2} more.")][:1 + i % 2]}
            for i in range(23)]
    raw = make_raw(rows)
    whole = qa_pairs(raw)
    monkeypatch.setattr(pairs_module, "QA_CHUNK_ROWS", 4)
    chunked = qa_pairs(raw)
    assert chunked.equals(whole)
    assert chunked.height == sum(1 + i % 2 for i in range(23))
    assert chunked["example_id"].unique(maintain_order=True).to_list() == [f"r{i}" for i in range(23)]


def test_claim_keys_computed_per_distinct_text_are_each_pairs_own(pairs_of):
    """Blind, preference and contradiction share claim keys computed once per distinct
    (question, answer) and joined back: row for row they are the per-pair expression's."""
    from integrity.detect.claims import source_claims
    from integrity.detect.pairs import claim_key, claim_keys

    rows = [{"id": f"{color}{i}", "image": f"img{i % 4}",
             "qa": [("What color is it?", f"{color.capitalize()}."),
                    ("How many shapes?", "Two." if i % 2 else "There are three shapes.")]}
            for color in ("red", "blue", "green") for i in range(5)]
    rows.append({"id": "prose", "image": "img9",
                 "qa": [("Describe it.", "A red circle beside a blue square.")]})
    pairs = pairs_of(rows)
    claims = source_claims(pairs)
    words = pl.col("answer_tokens").list.set_intersection(claims.paradigm["word"].implode())
    expected = pairs.select(claim_key(words))["answer_tokens"].to_list()
    assert claim_keys(pairs, claims.paradigm).to_list() == expected
    assert "red" in expected and "two" in expected  # the keys say something
    without = pairs.select(claim_key(pl.lit([], dtype=pl.List(pl.String))))
    assert claim_keys(pairs).to_list() == without.to_series().to_list()
