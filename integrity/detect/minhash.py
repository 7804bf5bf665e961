"""Near-duplicate texts: MinHash signatures, banded LSH candidates, exact Jaccard to verify.

``near_duplicate_texts(rows)`` finds, for each row, the most similar other row of the same
``bucket`` (rows only compete within a bucket: the same images, or no image) by the Jaccard
similarity of their shingle sets. A small bucket (the rows of one image) compares every pair;
in a large one (every text-only row) candidates come from locality-sensitive hashing: PERMUTATIONS
MinHash values per row in BANDS bands; two rows whose band values all agree in some band are
candidates (Jaccard 0.5 makes a candidate with probability 0.41 per band pair, 0.7 with 0.92,
0.85 with 0.997); each candidate's Jaccard is then computed exactly from the shingle sets. Rows
with identical shingles are collapsed first, so a text repeated ten thousand times costs one.
Cost: O(shingles x PERMUTATIONS) hashing in numpy plus polars joins over the candidates.
"""

from __future__ import annotations

import numpy as np
import polars as pl

PERMUTATIONS = 32
BANDS = 8
MAX_BUCKET_ROWS = 64  # a band bucket larger than this compares neighbours in row order only
# A bucket of at most this many distinct texts compares every pair exactly (no LSH): the rows
# of one image are few, so their copies are never missed.
EXACT_BUCKET_ROWS = 16
_MERSENNE = np.uint64((1 << 61) - 1)
SIGNATURE_CHUNK = 4096  # shingles hashed at once (4096 x 32 permutations: 1 MB)
JACCARD_CHUNK_PAIRS = 1 << 20  # candidate pairs verified at once (bounds the lists held)


def _signatures(row: np.ndarray, shingle: np.ndarray, rows: int, *,
                seed: int = 0) -> np.ndarray:
    """(rows, PERMUTATIONS) MinHash values: per permutation, the least (a x h + b) over a row's
    shingle hashes (a universal hash family over 64-bit integers)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 1 << 61, size=PERMUTATIONS, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 1 << 61, size=PERMUTATIONS, dtype=np.uint64)
    if len(row) > 1 and np.any(row[1:] < row[:-1]):  # callers mostly pass rows in order
        order = np.argsort(row, kind="stable")
        row, shingle = row[order], shingle[order]
    signature = np.full((rows, PERMUTATIONS), np.iinfo(np.uint64).max, dtype=np.uint64)
    if len(row) == 0:
        return signature
    starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    owners = row[starts]
    # Whole rows, about SIGNATURE_CHUNK shingles at a time: every permutation of a chunk at
    # once stays in cache (a pass per permutation over all shingles did not: 2-3x the time).
    ends = np.r_[starts[1:], len(row)]
    cuts = np.unique(np.r_[0, np.searchsorted(ends, np.arange(SIGNATURE_CHUNK, len(row),
                                                                 SIGNATURE_CHUNK)), len(starts)])
    for first, last in zip(cuts[:-1], cuts[1:], strict=True):
        low, high = starts[first], ends[last - 1]
        values = np.multiply.outer(shingle[low:high], a)  # wraps mod 2^64 first: still a mixer
        values += b
        # values mod (2^61 - 1) by folding the bits above 61 back in: the same values as
        # ``%``, without a 64-bit division per value (half the time).
        folded = values >> np.uint64(61)
        values &= _MERSENNE
        values += folded
        np.subtract(values, _MERSENNE, out=values, where=values >= _MERSENNE)
        signature[owners[first:last]] = np.minimum.reduceat(values, starts[first:last] - low,
                                                            axis=0)
    return signature


def _pair_code(left: pl.Expr, right: pl.Expr) -> pl.Expr:
    """A row pair as one UInt64 (left in the high half): the bands' pairs are de-duplicated as
    one integer column, not two (at 1M rows: 2.9 -> 1.7 s, and half the memory)."""
    return left.cast(pl.UInt64) * (1 << 32) + right.cast(pl.UInt64)


def _candidates(signature: np.ndarray, bucket: pl.Series) -> pl.DataFrame:
    """(left, right) row pairs, left < right, sharing a band of their signature and a bucket."""
    per_band = PERMUTATIONS // BANDS
    found = []
    for band in range(BANDS):
        values = signature[:, band * per_band:(band + 1) * per_band]
        key = pl.DataFrame(values, schema=[f"v{i}" for i in range(per_band)]).select(
            pl.struct(pl.all()).hash(seed=band))["v0"].to_numpy() \
            if per_band > 1 else values[:, 0]
        frame = pl.DataFrame({"row": np.arange(len(signature)), "bucket": bucket,
                              "key": key}).with_columns(size=pl.len().over("bucket", "key"))
        small = frame.filter((pl.col("size") > 1) & (pl.col("size") <= MAX_BUCKET_ROWS))
        pairs = small.join(small, on=["bucket", "key"], suffix="_r").filter(
            pl.col("row") < pl.col("row_r")).select(code=_pair_code(pl.col("row"),
                                                                   pl.col("row_r")))
        # Rows in order within a bucket: a stable sort, not a rank computed by a window.
        large = frame.filter(pl.col("size") > MAX_BUCKET_ROWS).sort("bucket", "key",
                                                                    maintain_order=True)
        chained = large.with_columns(previous=pl.col("row").shift(1).over("bucket", "key")) \
            .drop_nulls("previous").select(code=_pair_code(pl.min_horizontal("previous", "row"),
                                                           pl.max_horizontal("previous", "row")))
        found += [pairs, chained]
    if not found:
        return pl.DataFrame(schema={"left": pl.Int64, "right": pl.Int64})
    codes = pl.concat(found)["code"].unique()
    return pl.DataFrame({"left": (codes // (1 << 32)).cast(pl.Int64),
                         "right": (codes % (1 << 32)).cast(pl.Int64)})


def near_duplicate_texts(shingles: pl.DataFrame, buckets: pl.Series) -> pl.DataFrame:
    """For each row: its most similar other row of the same bucket and their Jaccard.

    ``shingles``: (row, shingle) with an integer row index in [0, len(buckets)) and a u64
    shingle hash; ``buckets``: each row's bucket. Returns (row, text_sim, text_of) for every row
    with a candidate (text_of: the other row; ties go to the earlier row).
    """
    rows = len(buckets)
    empty = pl.DataFrame(schema={"row": pl.Int64, "text_sim": pl.Float32, "text_of": pl.Int64})
    # Each row's distinct shingles, sorted: one group-by (a unique over every (row, shingle)
    # and a group-by after it took twice as long).
    sets = shingles.select(pl.col("row").cast(pl.Int64), pl.col("shingle").cast(pl.UInt64)) \
        .group_by("row").agg(pl.col("shingle").unique().sort())
    if sets.is_empty() or rows < 2:
        return empty
    # Buckets as integer codes: every window, group and join below compares them for equality.
    buckets = buckets.rank("dense").cast(pl.Int64)
    bucket_of = pl.DataFrame({"row": np.arange(rows, dtype=np.int64), "bucket": buckets})
    # Identical shingle sets in one bucket collapse to their first row.
    representative = (
        sets.join(bucket_of, on="row")
        .sort("row").group_by("bucket", "shingle", maintain_order=True)
        .agg(rep=pl.col("row").first(), members=pl.col("row"))
    )
    reps = representative["rep"].to_numpy()
    local = np.full(rows, -1, dtype=np.int64)
    local[reps] = np.arange(len(reps))
    # In row order, so the signatures need no sort of every shingle.
    rep_sets = sets.join(pl.DataFrame({"row": reps}), on="row", how="semi").sort("row")
    rep_shingles = rep_sets.explode("shingle")
    signature = _signatures(local[rep_shingles["row"].to_numpy()],
                            rep_shingles["shingle"].to_numpy(), len(reps))
    buckets_of_reps = representative["bucket"]
    small = representative.select("bucket").with_row_index("i").with_columns(
        size=pl.len().over("bucket")).filter(pl.col("size") <= EXACT_BUCKET_ROWS)
    every_pair = small.join(small, on="bucket", suffix="_r").filter(
        pl.col("i") < pl.col("i_r")).select(left=pl.col("i").cast(pl.Int64),
                                              right=pl.col("i_r").cast(pl.Int64))
    large = np.flatnonzero(~np.isin(np.arange(len(reps)), small["i"].to_numpy()))
    if len(large) < len(reps):  # a gather copies: at 1M rows the signatures are 250 MB
        signature = signature[large]
    banded = _candidates(signature, buckets_of_reps.gather(large))
    del signature  # not read again: freed before the lists are compared
    banded = pl.DataFrame({"left": large[banded["left"].to_numpy()],
                           "right": large[banded["right"].to_numpy()]})
    # Disjoint (banded pairs share a large bucket, every_pair's a small one), each distinct.
    candidates = pl.concat([every_pair, banded.cast(pl.Int64)])
    if candidates.is_empty():
        return _identical(representative, empty)
    candidates = pl.DataFrame({"left": reps[candidates["left"].to_numpy()],
                               "right": reps[candidates["right"].to_numpy()]})
    # Exact Jaccard of each candidate pair from the two shingle lists (distinct per row): one
    # list intersection per pair, not a join over every shared shingle (65M rows at 1M rows).
    lists = rep_sets.rename({"shingle": "shingles"})
    common = pl.col("left_shingles").list.set_intersection("right_shingles").list.len()
    scored = pl.concat([
        chunk.join(lists.rename({"row": "left", "shingles": "left_shingles"}), on="left")
        .join(lists.rename({"row": "right", "shingles": "right_shingles"}), on="right")
        .select("left", "right", sim=common / (pl.col("left_shingles").list.len()
                                              + pl.col("right_shingles").list.len() - common))
        for chunk in candidates.iter_slices(JACCARD_CHUNK_PAIRS)])
    both_ways = pl.concat([scored.select(row="left", text_of="right", text_sim="sim"),
                           scored.select(row="right", text_of="left", text_sim="sim")])
    # The most similar, ties to the earlier row (a group-by, not a sort of every pair).
    best = both_ways.group_by("row").agg(
        pl.col("text_sim").max(),
        text_of=pl.col("text_of").filter(pl.col("text_sim") == pl.col("text_sim").max()).min())
    # Every member of a collapsed set has its representative's best match.
    members = representative.select(row="rep", member="members").explode("member")
    spread = members.join(best, on="row").select(
        row="member", text_sim=pl.col("text_sim").cast(pl.Float32), text_of="text_of")
    return pl.concat([spread, _identical(representative, empty)]).sort(
        ["row", "text_sim", "text_of"], descending=[False, True, False]).group_by(
        "row", maintain_order=True).first()


def _identical(representative: pl.DataFrame, empty: pl.DataFrame) -> pl.DataFrame:
    """Rows whose shingle set another row of their bucket shares: Jaccard 1.0 with the first
    such row (the first row itself with the second)."""
    groups = representative.filter(pl.col("members").list.len() > 1).select("members")
    if groups.is_empty():
        return empty
    return groups.with_columns(
        first=pl.col("members").list.first(), second=pl.col("members").list.get(1)).explode(
        "members").select(
        row=pl.col("members"),
        text_sim=pl.lit(1.0, dtype=pl.Float32),
        text_of=pl.when(pl.col("members") == pl.col("first")).then("second")
        .otherwise("first"))
