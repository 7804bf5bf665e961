"""Policy: validated thresholds, flag expressions over scored pairs, and check verdicts."""

import polars as pl
import pytest

from integrity.decide.policy import (
    Policy,
    PolicyError,
    coverage_verdict,
    distribution_verdict,
    flag_rows,
    load_policy,
    quarantine_rate_verdict,
)


def test_default_policy_loads_and_bad_keys_are_named(tmp_path):
    policy = load_policy()
    assert policy.ingest.max_quarantine_rate == 0.05
    bad = tmp_path / "p.yaml"
    bad.write_text("signals:\n  blind_answerable:\n    prior_minimum: 0.9\n")
    with pytest.raises(PolicyError, match="signals.blind_answerable.prior_minimum"):
        load_policy(bad)
    bad.write_text("ingest:\n  max_quarantine_rate: 2\n")
    with pytest.raises(PolicyError, match="ingest.max_quarantine_rate"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "missing.yaml")


def test_policy_digest_changes_with_thresholds():
    changed = Policy.model_validate({"signals": {"duplicate": {"near_image_sim_min": 0.9}}})
    assert Policy().digest() != changed.digest() and Policy().digest() == Policy().digest()


def test_quarantine_rate_verdict():
    assert quarantine_rate_verdict(100, 5, Policy()).passed
    assert not quarantine_rate_verdict(100, 6, Policy()).passed
    assert not quarantine_rate_verdict(0, 0, Policy()).passed


def _pairs(**columns) -> pl.DataFrame:
    return pl.DataFrame({"example_id": ["a", "a", "b"], **columns})


def test_flags_roll_up_to_rows_and_respect_thresholds():
    pairs = _pairs(
        blind_question_states=[0.2, 1.0, None],
        blind_prior=[0.3, 0.1, 0.95],
        dup_exact_size=[1, 1, 2],
        dup_near_image_sim=[0.99, None, 0.5],
        dup_text_sim=[None, 0.2, 0.5],
        leak_score=[0.7, 0.1, 0.2],
    )
    rows = flag_rows(pairs, Policy())
    assert rows["blind_answerable"].to_list() == [True, True]  # a: prompt states it; b: prior
    assert rows["duplicate"].to_list() == [True, True]  # a: near image; b: exact
    assert rows["caption_derived"].to_list() == [True, False]
    lenient = Policy.model_validate({"signals": {"blind_answerable": {
        "question_states_min": 1.0, "prior_min": 0.99}}})
    assert flag_rows(pairs, lenient)["blind_answerable"].to_list() == [True, False]


def test_caption_flag_is_null_when_no_model_scored():
    rows = flag_rows(_pairs(blind_prior=[0.1, 0.1, 0.1]), Policy())
    assert rows["caption_derived"].to_list() == [None, None]
    assert rows["preference_pollution"].to_list() == [False, False]


def test_coverage_and_distribution_verdicts():
    rows = pl.DataFrame({"example_id": ["a", "b"], "grounding_cos": [0.2, 0.3]})
    assert coverage_verdict(pl.Series(["a", "b"]), rows).passed
    missing = coverage_verdict(pl.Series(["a", "b", "c"]), rows)
    assert not missing.passed and "1 raw rows unscored" in missing.description
    nan = rows.with_columns(grounding_cos=pl.Series([0.2, float("nan")]))
    assert not coverage_verdict(pl.Series(["a", "b"]), nan).passed
    assert distribution_verdict(rows, Policy()).passed
    flat = pl.DataFrame({"grounding_cos": [0.25] * 10, "grounding_margin": [0.1, 0.9] * 5})
    verdict = distribution_verdict(flat, Policy())
    assert not verdict.passed and "grounding_cos" in verdict.description
    assert distribution_verdict(pl.DataFrame({"x": [1]}), Policy()).passed


def test_checkpoint_verdicts_bound_reliance_and_cka_and_name_a_missing_metric():
    from integrity.decide.policy import checkpoint_verdicts

    policy = Policy()  # sampled_visual_reliance >= 0.3, cka >= 0.5
    good = checkpoint_verdicts({"sampled_visual_reliance": 0.7, "cka": 0.9}, policy)
    assert good["visual_reliance"].passed and good["cka"].passed
    blind = checkpoint_verdicts({"sampled_visual_reliance": 0.1, "cka": 0.2}, policy)
    assert not blind["visual_reliance"].passed and not blind["cka"].passed
    other = Policy.model_validate({"checkpoint": {"reliance_metric": "visual_reliance"}})
    missing = checkpoint_verdicts({"cka": 0.9}, other)
    assert not missing["visual_reliance"].passed
    assert "'visual_reliance'" in missing["visual_reliance"].description
