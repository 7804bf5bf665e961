"""Calibration: the stratified sample, the labels file, and estimates whose intervals hold the
true precision and recall (on a synthetic population over many draws, and on the demo world
with its ground truth standing in for reviewers)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from demo.model import demo_encoder_config
from integrity.decide.calibration import (
    CLEAN,
    CalibrationError,
    allocate,
    design_weights,
    draw_sample,
    estimate,
    parse_labels,
    recommended_threshold,
    threshold_curve,
    wilson,
)
from demo.generate import DemoConfig, generate
from demo.labels import label_of, truth_classes
from integrity.ingest import SourceConfig
from integrity.detect.registry import flaw_classes
from integrity.decide.policy import Policy
from integrity.stages import (
    calibrate_to_store,
    calibration_population,
    calibration_sample,
    ingest_to_store,
    judge_auditor,
    make_encoder,
    score_to_store,
)
from integrity.store.versions import VersionStore


def test_allocation_halves_the_sample_between_unflagged_and_flagged_strata():
    sizes = {("a", "unflagged"): 1000, ("a", "duplicate"): 100, ("b", "unflagged"): 500,
             ("b", "blind_answerable"): 3, ("b", "duplicate"): 80}
    take = allocate(sizes, 120)
    assert sum(take.values()) == 120
    assert take[("a", "unflagged")] + take[("b", "unflagged")] == 60
    assert take[("a", "unflagged")] == 2 * take[("b", "unflagged")]  # in proportion to size
    assert take[("b", "blind_answerable")] == 3  # a small stratum is taken whole ...
    assert {take[("a", "duplicate")], take[("b", "duplicate")]} == {28, 29}  # ... leaves the rest
    # A part that cannot use its share hands it over.
    assert allocate({("a", "unflagged"): 1000, ("a", "duplicate"): 5}, 100) == {
        ("a", "unflagged"): 95, ("a", "duplicate"): 5}
    assert allocate(sizes, 5000) == sizes  # more than there is: everything
    with pytest.raises(CalibrationError, match="at least 1"):
        allocate(sizes, 0)


def _population(rows: int, *, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(flags, truth): class ``duplicate`` flagged on 5% of rows, 70% of them truly flawed; 2% of
    the unflagged rows are flawed too (missed); ``blind_answerable`` on two sources."""
    rng = np.random.default_rng(seed)
    flagged = rng.random(rows) < 0.05
    true = np.where(flagged, rng.random(rows) < 0.7, rng.random(rows) < 0.02)
    blind_flag = rng.random(rows) < 0.03
    blind_true = np.where(blind_flag, rng.random(rows) < 0.4, rng.random(rows) < 0.005)
    ids = [f"r{i}" for i in range(rows)]
    source = np.where(rng.random(rows) < 0.6, "big", "small")
    flags = pl.DataFrame({"example_id": ids, "source": source, "duplicate": flagged,
                          "blind_answerable": blind_flag})
    truth = pl.DataFrame({"example_id": ids, "true_duplicate": true,
                          "true_blind_answerable": blind_true})
    return flags, truth


def _labelled(sample: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """The sample labelled from ``truth``, with its weights and flags, as calibration sees it."""
    joined = sample.join(truth, on="example_id")
    labels = pl.concat_list(
        pl.when(pl.col(f"true_{name}")).then(pl.lit([name])).otherwise(pl.lit([]))
        for name in ("duplicate", "blind_answerable"))
    lines = [json.dumps({**row, "label": row["label"] or CLEAN})
             for row in joined.select("example_id", "source", "stratum", "stratum_rows",
                                      label=labels).to_dicts()]
    return design_weights(parse_labels(lines)).join(sample.select("example_id", "flagged"),
                                                    on="example_id")


def test_the_sample_is_stratified_deterministic_and_covers_every_stratum():
    flags, _ = _population(5000, seed=1)
    sample = draw_sample(flags, n=200, seed=3)
    assert sample.height == 200
    assert sample.equals(draw_sample(flags, n=200, seed=3))
    assert not sample.equals(draw_sample(flags, n=200, seed=4))
    strata = sample.group_by("source", "stratum").agg(pl.len(), pl.col("stratum_sampled").first())
    assert strata.height == 6  # 2 sources x (duplicate, blind_answerable, unflagged)
    assert (strata["len"] == strata["stratum_sampled"]).all()
    # A rare class gets as many rows as a common one: precision is measurable for both.
    flagged = strata.filter(pl.col("stratum") != "unflagged")["len"]
    assert flagged.min() == flagged.max() == 25
    assert strata.filter(pl.col("stratum") == "unflagged")["len"].sum() == 100


def test_intervals_cover_the_true_precision_recall_and_rate_over_many_draws():
    flags, truth = _population(20_000, seed=7)
    joined = flags.join(truth, on="example_id")
    true_values = {}
    for name in ("duplicate", "blind_answerable"):
        hits = (joined[name] & joined[f"true_{name}"]).sum()
        true_values[(name, "precision")] = hits / joined[name].sum()
        true_values[(name, "recall")] = hits / joined[f"true_{name}"].sum()
        true_values[(name, "rate")] = joined[f"true_{name}"].mean()
    covered = {key: 0 for key in true_values}
    widths = {key: 0.0 for key in true_values}
    draws = 120
    for seed in range(draws):
        labelled = _labelled(draw_sample(flags, n=400, seed=seed), truth)
        found = {(row["flaw_class"], row["metric"]): row for row in
                 estimate(labelled, confidence=0.95).filter(pl.col("scope") == "all").to_dicts()}
        for key, value in true_values.items():
            covered[key] += found[key]["low"] <= value <= found[key]["high"]
            widths[key] += (found[key]["high"] - found[key]["low"]) / draws
    coverage = {key: count / draws for key, count in covered.items()}
    print("coverage of 95% intervals:", coverage, "mean widths:", widths)
    assert min(coverage.values()) >= 0.93, coverage
    # ... and not by being vacuous: precision and rate are pinned down by 400 labels.
    assert max(width for (_, metric), width in widths.items() if metric != "recall") < 0.33


def test_wilson_interval_matches_the_textbook_values():
    value, low, high = wilson(50, 100, confidence=0.95)
    assert value == 0.5 and low == pytest.approx(0.4038, abs=1e-4)
    assert high == pytest.approx(0.5962, abs=1e-4)
    assert wilson(10, 10, confidence=0.95)[1:] == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert wilson(0, 0, confidence=0.95) == (None, None, None)


def test_the_threshold_curve_and_the_recommended_cut():
    labelled = pl.DataFrame({
        "leak_score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, None],
        "labels": [["caption_derived"]] * 6 + [[], ["caption_derived"], [], []],
        "weight": [1.0] * 10})
    curve = threshold_curve(labelled, "leak_score")
    assert curve["threshold"].to_list() == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    assert curve["precision"].to_list()[:6] == [1.0] * 6
    assert curve["precision"][6] == pytest.approx(6 / 7)
    assert curve["recall"][5] == pytest.approx(6 / 7)
    cut = recommended_threshold(curve, target_precision=0.85)
    assert cut["threshold"] == 0.2 and cut["recall"] == 1.0  # 7/8 >= 0.85 and every flaw
    assert recommended_threshold(curve, target_precision=0.9)["threshold"] == 0.4
    assert recommended_threshold(curve.head(4), target_precision=0.9) is None  # too few rows


@pytest.mark.parametrize(
    ("line", "message"),
    [({"example_id": "a", "source": "s", "stratum": "unflagged", "stratum_rows": 3,
       "label": "maybe"}, "label 'maybe' is not 'clean' or a list of flaw classes"),
     ({"example_id": "a", "source": "s", "stratum": "unflagged", "stratum_rows": 3,
       "label": ["clean", "duplicate"]}, "is not 'clean' or a list"),
     ({"example_id": "a", "source": "s", "label": "clean"}, "needs stratum, stratum_rows"),
     ("{not json", "labels.jsonl:1: not JSON")],
)
def test_a_bad_labels_file_names_the_line_and_the_problem(line, message):
    text = line if isinstance(line, str) else json.dumps(line)
    with pytest.raises(CalibrationError, match=message):
        parse_labels([text], name="labels.jsonl")


def test_unlabelled_rows_leave_their_stratum_to_the_labelled_ones():
    row = {"source": "s", "stratum": "unflagged", "stratum_rows": 100}
    labels = parse_labels([json.dumps({**row, "example_id": "a", "label": "clean"}),
                           json.dumps({**row, "example_id": "b", "label": None}),
                           json.dumps({**row, "example_id": "c", "label": ["duplicate"]})])
    assert design_weights(labels)["weight"].to_list() == [50.0, 50.0]
    with pytest.raises(CalibrationError, match="no row has a label yet"):
        parse_labels([json.dumps({**row, "example_id": "a"})])
    with pytest.raises(CalibrationError, match="labelled twice: a"):
        parse_labels([json.dumps({**row, "example_id": "a", "label": "clean"})] * 2)


def test_every_flaw_class_is_estimated():
    flags, truth = _population(3000, seed=2)
    labelled = _labelled(draw_sample(flags, n=300, seed=0), truth)
    estimates = estimate(labelled, confidence=0.9)
    assert set(estimates["flaw_class"]) == {*flaw_classes(), "any"}
    assert set(estimates["scope"]) == {"all", "big", "small"}
    never_flagged = estimates.filter((pl.col("flaw_class") == "image_defect")
                                     & (pl.col("metric") == "precision"))
    assert never_flagged["value"].to_list() == [None, None, None]


# --- the demo world, its ground truth standing in for reviewers ------------------------------

LOOSE_POLICY = {"signals": {"blind_answerable": {"prior_min": 0.3},
                            "duplicate": {"near_image_sim_min": 0.9, "text_sim_min": 0.5}}}


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibration")
    generate(root / "demo", DemoConfig(rows=1500, seed=4242))
    store = VersionStore(str(root / "store"))
    demo = str(root / "demo")
    sources = [SourceConfig(name="llava", uri=f"{demo}/llava.jsonl", image_root=demo),
               SourceConfig(name="sharegpt", uri=f"{demo}/sharegpt.json", format="sharegpt",
                            image_root=demo),
               SourceConfig(name="preference", uri=f"{demo}/preference_dpo.json",
                            format="preference", image_root=demo)]
    encoder = make_encoder(demo_encoder_config(workers=0), store)
    for source in sources:
        _, raw = ingest_to_store(source, store)
        score_to_store(source, raw.version, store, encoder=encoder)
    return store, [source.name for source in sources], truth_classes(
        root / "demo" / "ground_truth.jsonl")


def _true_quality(store, sources, policy, classes) -> dict:
    """(flaw class, metric) -> the value over every scored row, from the ground truth."""
    population = calibration_population(store, sources, policy)
    truth = [label_of(example_id, classes) for example_id in population["example_id"]]
    values = {}
    for name in flaw_classes():
        true = pl.Series([label != CLEAN and name in label for label in truth])
        flagged = population[name].fill_null(False)
        hits = (true & flagged).sum()
        values[(name, "precision")] = hits / flagged.sum() if flagged.sum() else None
        values[(name, "recall")] = hits / true.sum() if true.sum() else None
        values[(name, "rate")] = true.mean()
    return values


@pytest.mark.parametrize("judged_under", ["default", "loose"])
def test_on_the_demo_every_interval_contains_the_true_precision_and_recall(demo_store,
                                                                           judged_under):
    store, sources, classes = demo_store
    sample = calibration_sample(store, sources, Policy(), n=300, seed=0)
    labels = parse_labels([json.dumps({**row, "label": label_of(row["example_id"], classes)})
                           for row in sample.to_dicts()])
    # The sample was drawn under the default policy; its design weights judge any later one.
    policy = Policy() if judged_under == "default" else Policy.model_validate(LOOSE_POLICY)
    estimates = judge_auditor(store, labels, policy)["estimates"].filter(pl.col("scope") == "all")
    found = {(row["flaw_class"], row["metric"]): row for row in estimates.to_dicts()}
    judged = 0
    for key, true_value in _true_quality(store, sources, policy, classes).items():
        row = found[key]
        print(f"{judged_under} {key}: true {true_value} estimate {row['value']} "
              f"[{row['low']}, {row['high']}]")
        if true_value is None:
            assert row["value"] is None  # a class never flagged is never estimated
            continue
        if row["value"] is None:  # e.g. recall of a class the sample holds no flawed row of
            continue
        assert row["low"] <= true_value <= row["high"], key
        judged += 1
    assert judged >= 12  # precision, recall and rate of five classes, give or take


def test_labels_with_no_flawed_row_of_a_class_still_calibrate(demo_store):
    """A labelled sample in which no row has some flaw class leaves that class's curves without
    recall; the calibration still commits (it once died stacking an untyped null recall column
    beside the other signals' curves: polars SchemaError)."""
    store, sources, classes = demo_store
    sample = calibration_sample(store, sources, Policy(), n=200, seed=1)

    def without_caption_derived(example_id: str) -> list[str] | str:
        label = label_of(example_id, classes)
        kept = [name for name in label if name != "caption_derived"] if label != CLEAN else []
        return kept or CLEAN

    labels = parse_labels([json.dumps({**row, "label": without_caption_derived(row["example_id"])})
                           for row in sample.to_dicts()])
    judged, manifest, _ = calibrate_to_store(store, labels, Policy())
    curves = store.read("calibration", manifest.version, "curves")
    assert curves.schema["recall"] == pl.Float64
    leak = curves.filter(pl.col("signal") == "leak_score")  # the first curves stacked
    assert leak.height and leak["recall"].null_count() == leak.height
    assert curves.filter(pl.col("signal") == "blind_prior")["recall"].is_not_null().any()
    assert judged["recommended"]["leak_score"] is None


@pytest.mark.parametrize("trials", [3, 10, 25, 100, 300])
def test_wilson_interval_always_contains_its_share(trials):
    """At 0 or every success the ends came out a rounding error off (0 of 10: a lower end of
    2.8e-13 above the share of 0), so an interval could miss its own point."""
    for successes in range(trials + 1):
        share, low, high = wilson(successes, trials, confidence=0.95)
        assert low <= share <= high, (successes, trials, low, share, high)
