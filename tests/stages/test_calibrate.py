"""The calibration stage (integrity/stages/calibrate.py): the population of the latest scored
rows with their flags, a stratified sample a reviewer can label, the labelled rows judged
against the auditor, a calibration version naming the scored versions it judged, and the latest
calibration re-judged under another policy; labels that do not match the store are refused."""

import json

import polars as pl
import pytest

from integrity.decide.calibration import CalibrationError, parse_labels
from integrity.decide.policy import Policy
from integrity.detect.registry import flaw_classes, thresholds
from integrity.names import CALIBRATION, CALIBRATION_REPORT_FILE, RAW_SFT, SCORED_SFT
from integrity.stages import (
    CALIBRATION_CODE_VERSION,
    calibrate_to_store,
    calibration_population,
    calibration_sample,
    current_calibration,
    ingest_to_store,
    judge_auditor,
    labelled_rows,
    score_to_store,
)
from tests.stages.world import LLAVA_ACCEPTED, llava_records, write_llava

FLAGGED = {"img-0": {"duplicate"}, "copy-of-img-0": {"duplicate"},
           "img-1": {"contradiction"}, "contra-1": {"contradiction"},
           "judge": {"preference_pollution"}}


def _score(world, *sources) -> dict[str, str]:
    """source -> scored version of ``sources`` (both sources of the world by default)."""
    scored = {}
    for source in sources or (world.llava, world.sharegpt):
        _, raw = ingest_to_store(source, world.store)
        scored[source.name] = score_to_store(source, raw.version, world.store)[1].version
    return scored


def _labels(sample: pl.DataFrame, label=None) -> pl.DataFrame:
    """The sample labelled by a reviewer who agrees with the auditor (or by ``label``)."""
    lines = []
    for row in sample.select("example_id", "source", "stratum", "stratum_rows",
                             "flagged").to_dicts():
        given = label(row) if label else (row.pop("flagged") or "clean")
        lines.append(json.dumps({**row, "label": given}))
    return parse_labels(lines)


def test_the_population_is_every_row_of_each_source_s_latest_scoring_with_its_flags(world):
    scored = _score(world)
    population = calibration_population(world.store, ["llava", "sharegpt", "unscored"],
                                        world.policy)
    assert population.group_by("source").len().sort("source").rows() == [
        ("llava", LLAVA_ACCEPTED), ("sharegpt", 8)]
    assert dict(population.select("source", "scored_version").unique().iter_rows()) == scored
    assert {"example_id", *flaw_classes()} - {"caption_derived"} <= set(population.columns)
    flagged = {row["example_id"]: {name for name in flaw_classes() if row.get(name)}
               for row in population.iter_rows(named=True)}
    assert {example_id: classes for example_id, classes in flagged.items() if classes} == FLAGGED


def test_with_no_source_scored_there_is_no_population(world):
    ingest_to_store(world.llava, world.store)  # ingested, never scored
    with pytest.raises(CalibrationError, match="none of llava, sharegpt has been scored yet"):
        calibration_population(world.store, ["llava", "sharegpt"], world.policy)


def test_the_sample_is_stratified_repeatable_and_holds_what_a_reviewer_needs(world):
    scored = _score(world)
    sample = calibration_sample(world.store, ["llava", "sharegpt"], world.policy, n=10, seed=3)
    assert sample.height == 10
    assert sample.equals(calibration_sample(world.store, ["llava", "sharegpt"], world.policy,
                                            n=10, seed=3))
    # Every flagged stratum is drawn whole (it is small); the rest are unflagged rows.
    strata = dict(sample.group_by("source", "stratum").len().select(
        pl.concat_str("source", "stratum", separator="/"), "len").iter_rows())
    assert strata.items() >= {"llava/duplicate": 2, "llava/contradiction": 2,
                              "llava/preference_pollution": 1}.items()
    assert {key.split("/")[1] for key in strata} - set(flaw_classes()) == {"unflagged"}
    assert sample["label"].null_count() == sample.height
    for row in sample.iter_rows(named=True):
        assert row["scored_version"] == scored[row["source"]]
        assert set(row["flagged"]) == FLAGGED.get(row["example_id"], set())
    # The dialog and images are the raw rows' own.
    raw = world.store.read(RAW_SFT, world.store.latest(RAW_SFT, "llava"))
    drawn = sample.filter(pl.col("source") == "llava").select(
        "example_id", "turns", "image_uris", "metadata")
    assert drawn.join(raw.select(drawn.columns), on=drawn.columns).height == drawn.height


def test_labelled_rows_carry_their_weight_flags_and_signals_from_the_latest_scoring(world):
    scored = _score(world)
    sample = calibration_sample(world.store, ["llava", "sharegpt"], world.policy, n=10)
    labelled = labelled_rows(world.store, _labels(sample), world.policy)
    assert labelled.height == 10
    assert dict(labelled.select("source", "scored_version").unique().iter_rows()).items() \
        <= scored.items()
    for row in labelled.iter_rows(named=True):
        assert row["weight"] == row["stratum_rows"] / sample.filter(
            (pl.col("source") == row["source"]) & (pl.col("stratum") == row["stratum"])).height
        assert set(row["flagged"]) == FLAGGED.get(row["example_id"], set())
    assert {"blind_prior", "dup_text_sim", "image_min_side"} <= set(labelled.columns)
    assert not {"leak_score", "grounding_margin"} & set(labelled.columns)  # no model ran


def test_labels_that_do_not_match_the_latest_scoring_are_refused(world):
    _score(world, world.llava)
    sample = calibration_sample(world.store, ["llava"], world.policy, n=6)
    ghost = pl.DataFrame({"example_id": ["ghost"], "source": ["llava"], "stratum": ["unflagged"],
                          "stratum_rows": [12], "labels": [[]]}, schema=_labels(sample).schema)
    with pytest.raises(CalibrationError, match="1 labelled example ids are not in their "
                                               "source's latest scored version: ghost"):
        labelled_rows(world.store, pl.concat([_labels(sample), ghost]), world.policy)
    elsewhere = ghost.with_columns(source=pl.lit("sharegpt"))
    with pytest.raises(CalibrationError, match="labelled source 'sharegpt' has no scored_sft"):
        labelled_rows(world.store, elsewhere, world.policy)


def test_a_reviewer_who_agrees_with_the_auditor_finds_every_flagging_precise(world):
    _score(world)
    sample = calibration_sample(world.store, ["llava", "sharegpt"], world.policy, n=12)
    judged = judge_auditor(world.store, _labels(sample), world.policy)
    overall = {(row["flaw_class"], row["metric"]): row["value"] for row in
               judged["estimates"].filter(pl.col("scope") == "all").iter_rows(named=True)}
    for name in ("duplicate", "contradiction", "preference_pollution"):
        assert overall[(name, "precision")] == 1.0, name
        assert overall[(name, "recall")] == 1.0, name
    assert overall[("blind_answerable", "precision")] is None  # never flagged: no estimate
    assert set(judged["curves"]) == {name for name in thresholds()
                                     if name in judged["labelled"].columns}
    assert set(judged["recommended"]) == set(judged["curves"])


def test_a_calibration_version_holds_the_judgement_and_names_the_scorings_it_judged(world):
    scored = _score(world)
    labels = _labels(calibration_sample(world.store, ["llava", "sharegpt"], world.policy, n=10))
    judged, manifest, report = calibrate_to_store(world.store, labels, world.policy)
    assert (manifest.asset, manifest.partition) == (CALIBRATION, None)
    assert manifest.upstream == {f"{SCORED_SFT}/{name}": version
                                 for name, version in scored.items()}
    assert manifest.code_version == CALIBRATION_CODE_VERSION
    assert manifest.params == {"policy": world.policy.digest()}
    assert world.store.read(CALIBRATION, manifest.version, "labels").equals(labels)
    assert world.store.read(CALIBRATION, manifest.version, "estimates").equals(
        judged["estimates"])
    curves = world.store.read(CALIBRATION, manifest.version, "curves")
    assert set(curves["signal"]) == {name for name, curve in judged["curves"].items()
                                     if curve.height}
    assert (manifest.extra["rows_labelled"], manifest.extra["rows_in_sample"]) == (10, 10)
    assert manifest.extra["estimates"] == judged["estimates"].filter(
        pl.col("scope") == "all").to_dicts()
    assert manifest.extra["recommended"] == judged["recommended"]
    assert report == world.store.attachment_uri(CALIBRATION, manifest.version,
                                                CALIBRATION_REPORT_FILE)
    page = world.store.read_attachment(CALIBRATION, manifest.version,
                                       CALIBRATION_REPORT_FILE).decode()
    assert f"Calibration {manifest.version}" in page and "Auditor calibration" in page
    assert world.store.latest(CALIBRATION) == manifest.version


def test_the_same_labels_calibrated_again_are_the_same_version(world):
    """Estimates summed over strata in a fixed order: before, the last bit of an interval
    moved between runs and every calibration of the same labels was a new version."""
    _score(world)
    labels = _labels(calibration_sample(world.store, ["llava", "sharegpt"], world.policy, n=10))
    versions = {calibrate_to_store(world.store, labels, world.policy)[1].version
                for _ in range(6)}
    assert len(versions) == 1


def test_unlabelled_rows_are_in_the_sample_but_not_judged(world):
    _score(world)
    sample = calibration_sample(world.store, ["llava", "sharegpt"], world.policy, n=10)
    first = sample["example_id"][0]
    labels = _labels(sample, lambda row: None if row["example_id"] == first else "clean")
    judged, manifest, _ = calibrate_to_store(world.store, labels, world.policy)
    assert first not in set(judged["labelled"]["example_id"])
    assert (manifest.extra["rows_labelled"], manifest.extra["rows_in_sample"]) == (9, 10)


def test_the_current_calibration_rejudges_the_latest_labels_under_the_policy_given(world):
    _score(world)
    assert current_calibration(world.store, world.policy) is None
    labels = _labels(calibration_sample(world.store, ["llava", "sharegpt"], world.policy, n=12))
    _, manifest, _ = calibrate_to_store(world.store, labels, world.policy)
    version, judged = current_calibration(world.store, world.policy)
    assert version == manifest.version
    assert judged["labelled"]["example_id"].sort().equals(labels["example_id"].sort())

    # A policy that no longer flags the contradiction has nothing to estimate its precision on,
    # and every labelled contradiction is now a miss.
    lenient = Policy.model_validate({"signals": {"contradiction": {"min_distinct_answers": 3}}})
    version, rejudged = current_calibration(world.store, lenient)
    assert version == manifest.version
    found = {(row["flaw_class"], row["metric"]): row["value"] for row in
             rejudged["estimates"].filter(pl.col("scope") == "all").iter_rows(named=True)}
    assert found[("contradiction", "precision")] is None
    assert found[("contradiction", "recall")] == 0.0
    assert found[("duplicate", "precision")] == 1.0


def test_the_current_calibration_refuses_labels_whose_rows_left_the_latest_scoring(world):
    _score(world)
    labels = _labels(calibration_sample(world.store, ["llava", "sharegpt"], world.policy, n=12))
    calibrate_to_store(world.store, labels, world.policy)
    write_llava(world.root / "llava.jsonl",
                [record for record in llava_records() if record["id"] != "judge"])
    _score(world, world.llava)
    with pytest.raises(CalibrationError, match="not in their source's latest scored version: "
                                               "judge"):
        current_calibration(world.store, world.policy)
