"""Over-audit slices: removal per question template and image cluster, the most removed."""

import polars as pl

from integrity.decide.fairness import most_removed, removal_by_slice, slice_rows


def _audited(rows: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``rows`` rows: "how many" questions (all but one removed), "what color" (all kept),
    two image clusters; one row asks both questions."""
    ids = [f"r{i}" for i in range(rows)]
    template = ["how many shapes" if i % 2 else "what color is" for i in range(rows)]
    pairs = pl.DataFrame({"example_id": ids + ["r0"],
                          "div_question_template": template + ["how many shapes"],
                          "div_image_cluster": [str(i % 3 == 0) for i in range(rows)] + ["True"]})
    verdict = ["keep" if i % 2 == 0 or i == 1 else ("review" if i % 4 == 3 else "drop")
               for i in range(rows)]
    return pairs, pl.DataFrame({"example_id": ids, "verdict": verdict})


def test_removal_by_slice_counts_each_row_once_per_slice_and_ranks_the_most_removed():
    pairs, verdicts = _audited(40)
    slices = removal_by_slice(slice_rows(pairs, verdicts))
    how_many = slices.filter(pl.col("key") == "how many shapes").row(0, named=True)
    # 20 odd rows + r0 (asks both); kept: r0 and r1.
    assert (how_many["rows"], how_many["kept"]) == (21, 2)
    assert how_many["dropped"] + how_many["review"] == 19
    assert how_many["review"] == 10  # i % 4 == 3
    assert how_many["removal_rate"] == 19 / 21
    what_color = slices.filter(pl.col("key") == "what color is").row(0, named=True)
    assert (what_color["rows"], what_color["removal_rate"]) == (20, 0.0)
    assert slices["kind"][0] == "question_template" and slices["key"][0] == "how many shapes"

    top = most_removed(slices, min_rows=10)
    assert "what color is" not in top["key"].to_list()  # nothing removed: nothing to look at
    assert top.filter(pl.col("kind") == "question_template")["key"].to_list() == [
        "how many shapes"]
    assert most_removed(slices, min_rows=50).is_empty()  # too small to rank


def test_no_slice_columns_means_no_slices():
    verdicts = pl.DataFrame({"example_id": ["a"], "verdict": ["keep"]})
    assert removal_by_slice(slice_rows(pl.DataFrame({"example_id": ["a"]}), verdicts)).is_empty()
