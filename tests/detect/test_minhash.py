"""Near-duplicate texts (minhash.near_duplicate_texts): exact Jaccard in small buckets, LSH
candidates in large ones, identical texts collapsed, rows never compared across buckets."""

import random

import numpy as np
import polars as pl
import pytest

from integrity.detect.minhash import EXACT_BUCKET_ROWS, MAX_BUCKET_ROWS, near_duplicate_texts


def _shingles(texts: list[list]) -> pl.DataFrame:
    """(row, shingle) for the words of each text, hashed to u64 as the detector's shingles are."""
    rows = [(row, str(word)) for row, words in enumerate(texts) for word in words]
    return pl.DataFrame(rows, schema=["row", "word"], orient="row").select(
        "row", shingle=pl.col("word").hash())


def _best(texts: list[list], buckets: list[str]) -> dict[int, tuple[float, int]]:
    found = near_duplicate_texts(_shingles(texts), pl.Series(buckets))
    return {row: (sim, of) for row, sim, of in found.iter_rows()}


def test_text_only_near_copies_are_found_by_lsh_in_a_large_bucket():
    rng = random.Random(0)
    vocabulary = [f"w{i}" for i in range(400)]
    texts = [rng.sample(vocabulary, 30) for _ in range(200)]
    texts.append(texts[7][:28] + ["extra1", "extra2"])  # row 200 copies row 7, lightly edited
    rows = [(row, word) for row, words in enumerate(texts) for word in words]
    shingles = pl.DataFrame(rows, schema=["row", "word"], orient="row").select(
        "row", shingle=pl.col("word").hash())
    found = near_duplicate_texts(shingles, pl.Series([""] * len(texts)))
    best = {row: (sim, of) for row, sim, of in found.iter_rows()}
    assert best[200][1] == 7 and best[200][0] > 0.8 and best[7][1] == 200
    assert all(sim < 0.5 for row, (sim, _) in best.items() if row not in (7, 200))


def test_a_small_bucket_scores_every_pair_by_its_exact_jaccard():
    texts = [["a", "b", "c", "d"], ["a", "b", "c", "e"], ["x", "y", "z", "a"]]
    best = _best(texts, ["img"] * 3)
    assert best[0] == (pytest.approx(3 / 5), 1)  # {a,b,c} of {a,b,c,d,e}
    assert best[1] == (pytest.approx(3 / 5), 0)
    assert best[2] == (pytest.approx(1 / 7), 0)  # only "a" shared: a weak match, still reported
    found = near_duplicate_texts(_shingles(texts), pl.Series(["img"] * 3))
    assert found.schema == {"row": pl.Int64, "text_sim": pl.Float32, "text_of": pl.Int64}


def test_identical_texts_in_different_buckets_are_never_compared():
    texts = [["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"], ["p", "q"]]
    best = _best(texts, ["img1", "img2", "img1", "img2"])
    assert best[0] == (1.0, 2) and best[2] == (1.0, 0)
    assert best[1] == (0.0, 3) and best[3] == (0.0, 1)  # its bucket holds nothing like it


def test_identical_texts_collapse_to_the_first_and_each_copy_points_at_it():
    texts = [["a", "b", "c"]] * 3 + [["a", "b", "d"]]
    best = _best(texts, [""] * 4)
    assert best[0] == (1.0, 1)  # the first of a set of copies points at the second
    assert best[1] == (1.0, 0) and best[2] == (1.0, 0)
    assert best[3] == (pytest.approx(2 / 4), 0)  # the copies share their best match: row 0


def test_ties_go_to_the_earlier_row():
    texts = [["a", "b", "c", "d"], ["a", "b", "c", "x"], ["a", "b", "c", "y"]]
    best = _best(texts, [""] * 3)
    assert best[0] == (pytest.approx(3 / 5), 1)
    assert best[1][1] == 0 and best[2][1] == 0


def test_repeated_shingles_count_once():
    texts = [["a", "b", "a", "a"], ["a", "b", "c"]]
    assert _best(texts, [""] * 2)[0] == (pytest.approx(2 / 3), 1)


def test_rows_without_shingles_and_single_rows_find_nothing():
    texts = [["a", "b"], [], ["a", "b", "c"]]
    best = _best(texts, [""] * 3)
    assert set(best) == {0, 2} and best[0] == (pytest.approx(2 / 3), 2)
    assert near_duplicate_texts(_shingles([["a", "b"]]), pl.Series([""])).is_empty()
    empty = pl.DataFrame(schema={"row": pl.Int64, "shingle": pl.UInt64})
    assert near_duplicate_texts(empty, pl.Series(["", ""])).is_empty()


def test_exact_copies_are_found_in_a_large_bucket_without_lsh_luck():
    rng = random.Random(1)
    texts = [[f"w{rng.randrange(10_000)}" for _ in range(20)]
             for _ in range(EXACT_BUCKET_ROWS * 3)]
    texts.append(list(texts[5]))
    best = _best(texts, [""] * len(texts))
    assert best[len(texts) - 1] == (1.0, 5) and best[5] == (1.0, len(texts) - 1)


def test_a_band_bucket_too_large_to_join_still_pairs_every_row_with_a_neighbour():
    """More rows than MAX_BUCKET_ROWS that all agree in a band are chained in row order rather
    than joined pairwise: every row still finds a near copy."""
    base = [f"w{i}" for i in range(200)]
    texts = [base + [f"own{row}"] for row in range(MAX_BUCKET_ROWS + 36)]
    best = _best(texts, [""] * len(texts))
    assert set(best) == set(range(len(texts)))
    assert all(sim == pytest.approx(200 / 202) and of != row for row, (sim, of) in best.items())


def test_signatures_are_the_least_universal_hash_of_each_rows_shingles():
    """The signature is min over a row's shingles of ((a x h + b) mod 2^64) mod (2^61 - 1):
    the fold that replaced the division must give the same values, also for hashes whose
    product lands just below 2^64 or on a multiple of 2^61 - 1, and rows given out of order."""
    from integrity.detect.minhash import PERMUTATIONS, _MERSENNE, _signatures

    rng = np.random.default_rng(5)
    shingle = np.concatenate([rng.integers(0, 2**64 - 1, size=500, dtype=np.uint64),
                              np.array([0, 1, 2**61 - 1, 2**61, 2**64 - 1], dtype=np.uint64)])
    row = rng.integers(0, 40, size=len(shingle))
    signature = _signatures(row, shingle, 41)
    a_rng = np.random.default_rng(0)
    a = a_rng.integers(1, 1 << 61, size=PERMUTATIONS, dtype=np.uint64) | np.uint64(1)
    b = a_rng.integers(0, 1 << 61, size=PERMUTATIONS, dtype=np.uint64)
    for r in range(41):
        mine = shingle[row == r]
        for p in range(PERMUTATIONS):
            expected = min((int(a[p]) * int(h) + int(b[p])) % 2**64 % int(_MERSENNE)
                           for h in mine) if len(mine) else 2**64 - 1
            assert int(signature[r, p]) == expected
