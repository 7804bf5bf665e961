"""Audit the auditor: precision and recall of every detector, from a labelled sample.

Reviewers label a sample of rows (example id -> the flaw classes they see, or ``clean``). Drawn
at random the sample would hold almost no flagged rows of a rare class, so ``draw_sample``
stratifies: one stratum per (source, first flaw class a row is flagged with, or "unflagged");
half the sample goes to the unflagged strata in proportion to their size, half is split equally
over the flagged strata (``allocate``). Each labelled row then weighs ``stratum rows / labelled rows of its
stratum``, and every estimate is a weighted ratio over the sample:

- precision of class c: weighted share of the rows flagged c that reviewers label c;
- recall of class c: weighted share of the rows labelled c that are flagged c (the flaws the
  auditor misses are found in the unflagged strata, so these weigh a lot);
- flaw rate: weighted share of rows with any flaw, over the whole population sampled.

Intervals are Wilson score intervals on the effective sample size of the stratified estimate
(the n whose binomial variance equals the estimator's variance, combined over strata). Each
stratum's variance uses its Agresti-Coull adjusted share: the stratum that matters most is an
unflagged one of thousands of rows in which the sample found no miss; it still may hide many,
and a variance of zero would claim certainty. Recall is built from two such shares, the
precision of the flagged rows and the miss rate of the unflagged ones (``_recall``). The
weights are design weights, so the same
labels give unbiased estimates for any later policy: flags are recomputed for the labelled
rows, the sample is not redrawn.

``threshold_curve`` sweeps one signal's threshold over the labelled rows (precision and recall
at every cut) and ``recommended_threshold`` picks the most permissive cut that still reaches the
target precision. Everything here is polars over small frames: no model, no Dagster.
"""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import polars as pl

from integrity.detect.registry import flaw_classes, thresholds
from integrity.errors import UserError
from integrity.decide.policy import Verdict

CLEAN = "clean"
UNFLAGGED = "unflagged"
# The part of a calibration sample drawn from rows the auditor does not flag (see allocate).
UNFLAGGED_SHARE = 0.5
# Below this many labelled rows at a cut, a curve point is too noisy to recommend.
MIN_CURVE_SUPPORT = 5


class CalibrationError(UserError, ValueError):
    """A sample or labels file that cannot be used; the message names the line and the key."""


def primary_flag(flags: pl.DataFrame) -> pl.Expr:
    """The stratum of each row of ``flags`` (one boolean column per flaw class): the first
    class in registry order it is flagged with, else ``unflagged``."""
    present = [name for name in flaw_classes() if name in flags.columns]
    expr = pl.lit(UNFLAGGED)
    for name in reversed(present):
        expr = pl.when(pl.col(name).fill_null(False)).then(pl.lit(name)).otherwise(expr)
    return expr


def flagged_classes(flags: pl.DataFrame) -> pl.Expr:
    """The list of flaw classes each row of ``flags`` is flagged with."""
    present = [name for name in flaw_classes() if name in flags.columns]
    if not present:
        return pl.lit([], dtype=pl.List(pl.String))
    return pl.concat_list(
        pl.when(pl.col(name).fill_null(False)).then(pl.lit([name])).otherwise(pl.lit([]))
        for name in present)


def _water_fill(sizes: dict, n: int) -> dict:
    """Split ``n`` equally over ``sizes``; a stratum smaller than its share is taken whole and
    what it leaves goes to the others."""
    take = dict.fromkeys(sizes, 0)
    open_strata = sorted(sizes, key=lambda key: (sizes[key], key))
    left = n
    while open_strata and left > 0:
        share = max(1, left // len(open_strata))
        for key in list(open_strata):
            if left == 0:
                break
            grant = min(share, sizes[key] - take[key], left)
            take[key] += grant
            left -= grant
            if take[key] == sizes[key]:
                open_strata.remove(key)
    return take


def _proportional(sizes: dict, n: int) -> dict:
    """Split ``n`` over ``sizes`` in proportion to their size (largest remainders)."""
    total = sum(sizes.values())
    if total <= n:
        return dict(sizes)
    exact = {key: n * size / total for key, size in sizes.items()}
    take = {key: int(value) for key, value in exact.items()}
    by_remainder = sorted(sizes, key=lambda key: (take[key] - exact[key], key))
    for key in by_remainder[: n - sum(take.values())]:
        take[key] += 1
    return take


def allocate(sizes: dict[tuple[str, str], int], n: int, *,
             unflagged_share: float = UNFLAGGED_SHARE) -> dict[tuple[str, str], int]:
    """How many rows to draw from each (source, stratum) of ``sizes``.

    ``unflagged_share`` of ``n`` goes to the unflagged strata in proportion to their size: the
    misses that bound recall hide there, thinly spread. The rest is split equally over the
    flagged strata, so a rare class's precision is measured as well as a common one's. A part
    that cannot use its share (strata too small) hands the rest to the other part.
    """
    if n < 1:
        raise CalibrationError(f"the sample size must be at least 1, got {n}")
    unflagged = {key: size for key, size in sizes.items() if key[1] == UNFLAGGED}
    flagged = {key: size for key, size in sizes.items() if key[1] != UNFLAGGED}
    n = min(n, sum(sizes.values()))
    want_unflagged = round(n * unflagged_share) if flagged else n
    for_unflagged = min(max(want_unflagged, n - sum(flagged.values())), sum(unflagged.values()))
    return {**_proportional(unflagged, for_unflagged), **_water_fill(flagged, n - for_unflagged)}


def draw_sample(population: pl.DataFrame, *, n: int, seed: int = 0) -> pl.DataFrame:
    """A stratified sample of ``population`` (example_id, source, one boolean per flaw class).

    Returns the sampled rows with ``stratum``, ``stratum_rows`` (rows of the stratum in the
    population), ``stratum_sampled`` and ``flagged`` (their classes), ordered by source,
    stratum and a seeded hash: the same population and seed give the same sample.
    """
    strata = population.with_columns(stratum=primary_flag(population),
                                     flagged=flagged_classes(population))
    sizes = {(source, stratum): count for source, stratum, count in
             strata.group_by("source", "stratum").len().iter_rows()}
    take = allocate(sizes, n)
    plan = pl.DataFrame(
        [{"source": s, "stratum": h, "stratum_rows": sizes[(s, h)], "stratum_sampled": k}
         for (s, h), k in take.items() if k > 0],
        schema={"source": pl.String, "stratum": pl.String, "stratum_rows": pl.Int64,
                "stratum_sampled": pl.Int64})
    order = pl.col("example_id").hash(seed)
    return (strata.join(plan, on=["source", "stratum"])
            .with_columns(_draw=order.rank("ordinal").over("source", "stratum"))
            .filter(pl.col("_draw") <= pl.col("stratum_sampled"))
            .sort("source", "stratum", order)
            .select("example_id", "source", "stratum", "stratum_rows", "stratum_sampled",
                    "flagged"))


def parse_labels(lines: list[str], *, name: str = "labels") -> pl.DataFrame:
    """Labelled sample rows from JSONL (the sample file with ``label`` filled in).

    ``label`` is ``clean``, a flaw class, or a list of flaw classes; null or absent leaves the
    row unlabelled (it is not counted, and its stratum's other rows weigh more). Returns
    example_id, source, stratum, stratum_rows, labels (list, null when unlabelled).
    """
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CalibrationError(f"{name}:{number}: not JSON ({error.msg})") from error
        missing = [key for key in ("example_id", "source", "stratum", "stratum_rows")
                   if record.get(key) in (None, "")]
        if missing:
            raise CalibrationError(f"{name}:{number}: needs {', '.join(missing)} (label the "
                                   "file `integrity calibrate sample` wrote)")
        label = record.get("label")
        if label is not None:
            label = [label] if isinstance(label, str) else label
            unknown = [value for value in label if value not in (*flaw_classes(), CLEAN)] \
                if isinstance(label, list) else [label]
            if unknown or not label or (CLEAN in label and len(label) > 1):
                raise CalibrationError(
                    f"{name}:{number}: label {record['label']!r} is not 'clean' or a list of "
                    f"flaw classes ({', '.join(flaw_classes())})")
            label = sorted(set(label) - {CLEAN})
        rows.append({"example_id": str(record["example_id"]), "source": str(record["source"]),
                     "stratum": str(record["stratum"]),
                     "stratum_rows": int(record["stratum_rows"]), "labels": label})
    frame = pl.DataFrame(rows, schema={"example_id": pl.String, "source": pl.String,
                                       "stratum": pl.String, "stratum_rows": pl.Int64,
                                       "labels": pl.List(pl.String)})
    repeated = frame.filter(pl.struct("source", "example_id").is_duplicated())
    if repeated.height:
        raise CalibrationError(f"{name}: example ids labelled twice: "
                               f"{', '.join(repeated['example_id'].unique().sort()[:5])}")
    if frame["labels"].is_not_null().sum() == 0:
        raise CalibrationError(f"{name}: no row has a label yet")
    return frame


def design_weights(labels: pl.DataFrame) -> pl.DataFrame:
    """The labelled rows with ``weight`` = stratum rows / labelled rows of the stratum."""
    labelled = labels.filter(pl.col("labels").is_not_null())
    return labelled.with_columns(
        weight=(pl.col("stratum_rows") / pl.len().over("source", "stratum")).cast(pl.Float64))


def wilson(successes: int, trials: int, *,
           confidence: float) -> tuple[float | None, float | None, float | None]:
    """(share, low, high): the Wilson score interval of ``successes`` in ``trials``; all None
    when there were no trials."""
    if trials <= 0:
        return None, None, None
    p = successes / trials
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    z2n = z * z / trials
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / trials + z2n / (4 * trials)) / (1 + z2n)
    # At 0 or every success an end equals the share in exact arithmetic; floats miss it by a
    # rounding error, which must not put the share outside its own interval.
    return p, max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def _cells(frame: pl.DataFrame, among: pl.Expr, hit: pl.Expr) -> pl.DataFrame:
    """Per stratum: the population rows it stands for among ``among`` (the sum of their
    weights), how many of them were labelled, and how many of those are ``hit``."""
    return (frame.with_columns(_among=among, _hit=among & hit)
            .group_by("source", "stratum")
            .agg(rows=pl.col("weight").filter("_among").sum(), labelled=pl.col("_among").sum(),
                 hits=pl.col("_hit").sum())
            .filter(pl.col("labelled") > 0)
            # In a fixed order: the estimates sum over cells, and floating-point sums in another
            # order differ in the last bit, which made every calibration of the same labels a
            # new version.
            .sort("source", "stratum"))


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _design_wilson(value: float, adjusted: float, variance: float,
                   z: float) -> tuple[float, float]:
    """The Wilson interval around ``value`` on the effective sample size the estimator's
    ``variance`` implies (Kish: the n whose binomial variance at ``adjusted`` equals it)."""
    if variance <= 0:
        return value, value
    n_eff = adjusted * (1 - adjusted) / variance
    z2n = z * z / n_eff
    centre = (value + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(value * (1 - value) / n_eff + z2n / (4 * n_eff)) / (1 + z2n)
    # Wilson's interval holds its estimate; say so exactly where floats round 1 to 0.999...
    return max(0.0, min(value, centre - half)), min(1.0, max(value, centre + half))


def _cell_shares(cells: pl.DataFrame, z: float) -> pl.DataFrame:
    """Each cell's hit share, its Agresti-Coull adjusted share (z^2/2 pseudo hits and misses:
    a cell where the sample saw no hit still may hold some) and that share's variance."""
    return cells.with_columns(share=pl.col("hits") / pl.col("labelled"),
                              adjusted=(pl.col("hits") + z * z / 2)
                              / (pl.col("labelled") + z * z)).with_columns(
        variance=pl.col("adjusted") * (1 - pl.col("adjusted")) / pl.col("labelled"))


def _share(frame: pl.DataFrame, hit: pl.Expr, among: pl.Expr, *, confidence: float) -> dict:
    """Weighted share of ``hit`` rows among the ``among`` rows: the strata's shares averaged by
    the rows they stand for, with their variances combined the same way."""
    cells = _cells(frame, among, hit)
    labelled, hits = int(cells["labelled"].sum()), int(cells["hits"].sum())
    if cells.is_empty():
        return {"value": None, "low": None, "high": None, "labelled": 0, "labelled_hits": 0}
    z = _z(confidence)
    weighted = _cell_shares(cells, z).with_columns(weight=pl.col("rows") / pl.col("rows").sum())
    value, adjusted, variance = weighted.select(
        value=(pl.col("weight") * pl.col("share")).sum(),
        adjusted=(pl.col("weight") * pl.col("adjusted")).sum(),
        variance=(pl.col("weight") ** 2 * pl.col("variance")).sum()).row(0)
    low, high = _design_wilson(value, adjusted, variance, z)
    return {"value": value, "low": low, "high": high, "labelled": labelled,
            "labelled_hits": hits}


def _recall(frame: pl.DataFrame, truth: pl.Expr, flagged: pl.Expr, *,
            confidence: float) -> dict:
    """Weighted recall TP / (TP + FN), from the two shares it is made of: the precision of the
    flagged rows (TP = flagged rows x precision) and the miss rate of the unflagged rows (FN =
    unflagged rows x miss rate). Recall rises with the first and falls with the second, so its
    bounds pair their opposite bounds, each taken at sqrt(confidence) so both hold at once."""
    each = math.sqrt(confidence)
    caught = _share(frame, truth, flagged, confidence=each)
    missed = _share(frame, truth, ~flagged, confidence=each)
    flagged_rows = float(frame.filter(flagged)["weight"].sum())
    unflagged_rows = float(frame.filter(~flagged)["weight"].sum())
    labelled = int(frame.filter(truth).height)
    result = {"value": None, "low": None, "high": None, "labelled": labelled,
              "labelled_hits": caught["labelled_hits"]}

    def recall(precision: float | None, miss_rate: float | None) -> float | None:
        tp = flagged_rows * (precision or 0.0)
        fn = unflagged_rows * (miss_rate or 0.0)
        return tp / (tp + fn) if tp + fn else None

    if labelled == 0:  # the sample holds no flawed row of this class
        return result
    low = recall(caught["low"], missed["high"])
    high = recall(caught["high"], missed["low"])
    return {**result, "value": recall(caught["value"], missed["value"]),
            "low": 0.0 if low is None else low, "high": 1.0 if high is None else high}


def estimate(labelled: pl.DataFrame, *, confidence: float) -> pl.DataFrame:
    """Precision and recall of every flaw class, and the flaw rate, with intervals.

    ``labelled``: design_weights output plus ``flagged`` (the classes the auditor flags each row
    with under the policy being judged). One row per (scope, flaw_class, metric); scope is
    ``all`` or a source. metric: precision, recall, rate (share of rows labelled with the class;
    flaw_class ``any`` for a row with any flaw). ``labelled``: labelled rows the estimate
    rests on (flagged ones for precision, flawed ones for recall), ``labelled_hits`` of them.
    """
    results = []
    scopes = [("all", labelled)] + [(source, part) for (source,), part in
                                    labelled.group_by("source", maintain_order=True)]
    everyone = pl.lit(True)
    for scope, frame in scopes:
        results.append({"scope": scope, "flaw_class": "any", "metric": "rate",
                        **_share(frame, pl.col("labels").list.len() > 0, everyone,
                                 confidence=confidence)})
        for name in flaw_classes():
            truth = pl.col("labels").list.contains(name)
            flagged = pl.col("flagged").list.contains(name)
            results += [
                {"scope": scope, "flaw_class": name, "metric": "precision",
                 **_share(frame, truth, flagged, confidence=confidence)},
                {"scope": scope, "flaw_class": name, "metric": "recall",
                 **_recall(frame, truth, flagged, confidence=confidence)},
                {"scope": scope, "flaw_class": name, "metric": "rate",
                 **_share(frame, truth, everyone, confidence=confidence)},
            ]
    return pl.DataFrame(results, schema={
        "scope": pl.String, "flaw_class": pl.String, "metric": pl.String, "value": pl.Float64,
        "low": pl.Float64, "high": pl.Float64, "labelled": pl.Int64, "labelled_hits": pl.Int64})


def threshold_curve(labelled: pl.DataFrame, signal: str) -> pl.DataFrame:
    """Precision and recall of flagging ``signal``'s class by ``signal`` alone, at every cut.

    ``labelled``: design_weights output with the row-level ``signal`` column. The class and
    the side flagged come from the detector registry's thresholds. One row per distinct value (the cut), from
    the strictest cut to the most permissive: threshold, precision, recall, labelled (rows
    flagged at that cut).
    """
    spec = thresholds()[signal]
    truth = pl.col("labels").list.contains(spec.flaw_class)
    total_true = float(labelled.filter(truth)["weight"].sum())
    strict_first = spec.side in (">", ">=")  # high values flagged: the strictest cut is the top
    return (
        labelled.filter(pl.col(signal).is_not_null() & pl.col(signal).cast(pl.Float64).is_finite())
        .select(threshold=pl.col(signal).cast(pl.Float64), weight="weight",
                hit=pl.when(truth).then(pl.col("weight")).otherwise(0.0))
        .group_by("threshold").agg(pl.col("weight").sum(), pl.col("hit").sum(),
                                   labelled=pl.len())
        .sort("threshold", descending=strict_first)
        .select("threshold",
                precision=pl.col("hit").cum_sum() / pl.col("weight").cum_sum(),
                # Typed even when no labelled row has the class: curves of every signal are
                # stacked into one table, and an untyped null column does not stack.
                recall=pl.col("hit").cum_sum() / total_true if total_true
                else pl.lit(None, dtype=pl.Float64),
                labelled=pl.col("labelled").cum_sum())
    )


def recommended_threshold(curve: pl.DataFrame, *, target_precision: float) -> dict | None:
    """The most permissive cut of ``curve`` whose precision reaches ``target_precision`` with at
    least MIN_CURVE_SUPPORT labelled rows flagged; None when no cut does."""
    reaching = curve.filter((pl.col("precision") >= target_precision)
                            & (pl.col("labelled") >= MIN_CURVE_SUPPORT))
    if reaching.is_empty():
        return None
    return reaching.tail(1).row(0, named=True)


def precision_verdict(estimates: pl.DataFrame, policy) -> Verdict:
    """Pass when every dropping rule's estimated precision (over all labelled sources) is at
    least ``calibration.min_precision``; a rule the sample never saw fire is not judged."""
    floor = policy.calibration.min_precision
    actions = policy.audit.actions.model_dump()
    dropping = [name for name in flaw_classes() if actions[name] == "drop"]
    rows = estimates.filter((pl.col("scope") == "all") & (pl.col("metric") == "precision")
                            & pl.col("flaw_class").is_in(dropping) & pl.col("value").is_not_null())
    figures: dict = {"min_precision": floor, "rules_judged": rows.height}
    low = []
    for row in rows.iter_rows(named=True):
        figures[f"precision_{row['flaw_class']}"] = row["value"]
        if row["value"] < floor:
            low.append(f"{row['flaw_class']} {row['value']:.2f} [{row['low']:.2f}, "
                       f"{row['high']:.2f}]")
    if low:
        return Verdict(False, f"dropping rules below precision {floor:g}: {'; '.join(low)}",
                       figures)
    return Verdict(True, f"{rows.height} dropping rules at precision >= {floor:g}", figures)
