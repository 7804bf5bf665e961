"""Over-audit and fairness: what an audit removes, slice by slice, and what diversity survives.

An auditor that is right on average can still wipe out one kind of data: every "how many"
question, every image of one visual cluster, most of one source. Slices are the diversity
detector's keys (``div_question_template``, ``div_image_cluster``) and the source itself; a row
is *removed* when its verdict is not keep (dropped, or held for review: either way training
does not see it). Measures:

- ``removal_by_slice``: rows, kept, dropped, review and the removal rate of every template and
  image cluster (a row counts in every template its questions have).
- ``diversity_change``: how many templates and clusters exist and how many keep a row; the
  Shannon entropy (bits) of the template and of the cluster distribution over rows before and
  after the audit; cluster coverage, the share of image rows whose cluster keeps a row (the
  image-embedding space the kept rows still cover, at cluster granularity).
- ``most_removed``: the slices with the highest removal rate (at least ``min_rows`` rows), the
  ones a reviewer should look at first.
Needs no model (the clusters were computed at scoring); polars group-bys over the pairs.
"""

from __future__ import annotations

import polars as pl

SLICE_COLUMNS = {"question_template": "div_question_template",
                 "image_cluster": "div_image_cluster"}
# A slice smaller than this is not ranked among the most removed: one dropped row of two is noise.
MIN_SLICE_ROWS = 10


def slice_rows(scored_pairs: pl.DataFrame, verdicts: pl.DataFrame) -> pl.DataFrame:
    """One row per (example, slice kind, slice key) with the example's verdict: what
    ``removal_by_slice`` counts (and the report shows examples of)."""
    frames = []
    for kind, column in SLICE_COLUMNS.items():
        if column in scored_pairs.columns:
            frames.append(scored_pairs.select("example_id", key=pl.col(column))
                          .drop_nulls("key").unique()
                          .with_columns(kind=pl.lit(kind)))
    if not frames:
        return pl.DataFrame(schema={"example_id": pl.String, "key": pl.String,
                                    "kind": pl.String, "verdict": pl.String})
    return pl.concat(frames).join(verdicts.select("example_id", "verdict"), on="example_id")


def removal_by_slice(rows: pl.DataFrame) -> pl.DataFrame:
    """kind, key, rows, kept, dropped, review, removal_rate: one row per slice of ``rows``
    (``slice_rows``), most removed first."""
    return (rows.group_by("kind", "key")
            .agg(rows=pl.len(), kept=(pl.col("verdict") == "keep").sum(),
                 dropped=(pl.col("verdict") == "drop").sum(),
                 review=(pl.col("verdict") == "review").sum())
            .with_columns(removal_rate=1 - pl.col("kept") / pl.col("rows"))
            .sort(["removal_rate", "rows", "kind", "key"], descending=[True, True, False, False]))


def most_removed(slices: pl.DataFrame, *, top: int = 5,
                 min_rows: int = MIN_SLICE_ROWS) -> pl.DataFrame:
    """The ``top`` slices of each kind with the highest removal rate among those with at least
    ``min_rows`` rows (and at least one row removed)."""
    return (slices.filter((pl.col("rows") >= min_rows) & (pl.col("kept") < pl.col("rows")))
            .group_by("kind", maintain_order=True).head(top))


def _entropy(counts: pl.Series) -> float:
    """Shannon entropy in bits of a distribution given by counts."""
    total = counts.sum()
    if not total:
        return 0.0
    shares = counts.filter(counts > 0) / total
    return float(-(shares * shares.log(2)).sum())


def diversity_change(slices: pl.DataFrame) -> dict:
    """Diversity before and after the audit, from ``slices`` (``removal_by_slice``; see the
    module docstring); {} without slices.

    Keys per kind (``question_templates``, ``image_clusters``): the count, ``_kept`` (slices
    keeping a row), ``_entropy_bits`` and ``_entropy_bits_kept``; plus ``cluster_coverage``.
    """
    figures: dict = {}
    for kind, name in (("question_template", "question_templates"),
                       ("image_cluster", "image_clusters")):
        of_kind = slices.filter(pl.col("kind") == kind)
        if of_kind.is_empty():
            continue
        figures[name] = of_kind.height
        figures[f"{name}_kept"] = int((of_kind["kept"] > 0).sum())
        figures[f"{name}_entropy_bits"] = _entropy(of_kind["rows"])
        figures[f"{name}_entropy_bits_kept"] = _entropy(of_kind["kept"])
        if kind == "image_cluster":
            figures["cluster_coverage"] = float(
                of_kind.filter(pl.col("kept") > 0)["rows"].sum() / of_kind["rows"].sum())
    return figures
