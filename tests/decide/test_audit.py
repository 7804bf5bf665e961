"""Verdicts from scored pairs under a policy, and the nothing-lost invariant."""

import math

import polars as pl
import pytest

from integrity.decide.audit import audit_rows
from integrity.decide.fairness import diversity_change, removal_by_slice, slice_rows
from integrity.decide.policy import (
    Policy,
    diversity_verdict,
    kept_grounding_verdict,
    none_kept_verdict,
    nothing_lost_verdict,
    over_audit_verdict,
)


def _pairs() -> pl.DataFrame:
    return pl.DataFrame({
        "example_id": ["clean", "marker", "contra", "orig", "copy", "both", "both"],
        "pref_marker": [None, "Rating: 4/5", None, None, None, None, "[[A]]"],
        "contra_conflict": [False, False, True, False, False, True, False],
        "contra_answers": [1, 1, 2, 1, 1, 2, 1],
        "dup_exact_size": [1, 1, 1, 2, 2, 1, 1],
        "dup_exact_first": [True, True, True, True, False, True, True],
    })


def test_verdicts_take_the_strictest_action_and_keep_every_reason():
    result = audit_rows(_pairs(), Policy(), rows_in=8, quarantined=2)
    verdicts = {row["example_id"]: (row["verdict"], row["reasons"])
                for row in result.verdicts.iter_rows(named=True)}
    assert verdicts["clean"] == ("keep", [])
    assert verdicts["marker"] == ("drop", ["preference_pollution"])
    assert verdicts["contra"] == ("review", ["contradiction"])
    assert verdicts["orig"] == ("keep", [])  # one original of a duplicate group is kept
    assert verdicts["copy"] == ("drop", ["duplicate"])
    assert verdicts["both"] == ("drop", ["preference_pollution", "contradiction"])
    assert result.counts() == {"keep": 2, "review": 1, "drop": 3}
    assert result.reasons()["drop"] == {"duplicate": 1, "preference_pollution": 2,
                                        "contradiction": 1}


def test_policy_actions_change_verdicts():
    lenient = Policy.model_validate({"audit": {"actions": {"preference_pollution": "review",
                                                           "contradiction": "keep"}}})
    verdicts = dict(audit_rows(_pairs(), lenient, rows_in=6, quarantined=0)
                    .verdicts.select("example_id", "verdict").iter_rows())
    assert verdicts["marker"] == "review" and verdicts["contra"] == "keep"


def test_the_invariant_is_asserted():
    with pytest.raises(AssertionError, match="9 raw rows but 8"):
        audit_rows(_pairs(), Policy(), rows_in=9, quarantined=2)


def test_audit_check_verdicts():
    verdicts = pl.DataFrame({
        "example_id": ["a", "b", "c", "d"], "verdict": ["keep", "keep", "keep", "drop"],
        "reasons": [[], [], ["contradiction"], ["preference_pollution"]],
        "modality": ["image-text", "image-text", "text", "image-text"],
        "grounding_margin": [0.3, -0.2, None, -0.5],
    })
    grounding = kept_grounding_verdict(verdicts, Policy())
    assert not grounding.passed and grounding.figures["weak_grounding_share"] == 0.5
    # A source that kept no image row: "0/0 weakly grounded" was a pass on no evidence.
    nothing_kept = kept_grounding_verdict(verdicts.with_columns(verdict=pl.lit("drop")), Policy())
    assert nothing_kept.passed and nothing_kept.description.startswith("skipped: no image row")
    assert none_kept_verdict(verdicts, "preference_pollution").passed
    assert not none_kept_verdict(verdicts, "contradiction").passed
    counts = {"keep": 3, "drop": 1, "review": 0}
    assert nothing_lost_verdict(counts, 6, 2, kept_rows=3).passed
    assert not nothing_lost_verdict(counts, 7, 2, kept_rows=3).passed
    assert not nothing_lost_verdict(counts, 6, 2, kept_rows=2).passed


def test_over_audit_guard_bounds_the_drop_rate_and_its_disparity_across_sources():
    policy = Policy()  # max_drop_rate 0.3, max_drop_rate_disparity 0.15
    alone = over_audit_verdict({"drop": 1}, 10, {"a": (1, 10)}, policy)
    assert alone.passed and alone.figures["drop_rate_disparity"] == 0.0
    assert not over_audit_verdict({"drop": 4}, 10, {"a": (4, 10)}, policy).passed
    # 25% is under the bound, but the other sources drop 1%: this source looks over-audited.
    sources = {"a": (25, 100), "b": (1, 100), "c": (2, 200)}
    skewed = over_audit_verdict({"drop": 25}, 100, sources, policy)
    assert not skewed.passed and "differs" in skewed.description
    assert skewed.figures["drop_rate_all_sources"] == 28 / 400
    assert over_audit_verdict({"drop": 1}, 100, sources, policy).passed


def test_diversity_change_counts_templates_and_clusters_that_keep_a_row():
    pairs = pl.DataFrame({
        "example_id": ["a", "a", "b", "c", "d"],
        "div_question_template": ["what color is", "how many", "what color is", "is there a",
                                  "why"],
        "div_image_cluster": ["0", "0", "1", "2", None],
    })
    verdicts = pl.DataFrame({"example_id": ["a", "b", "c", "d"],
                             "verdict": ["keep", "drop", "drop", "review"]})
    diversity = diversity_change(removal_by_slice(slice_rows(pairs, verdicts)))
    assert {key: value for key, value in diversity.items() if "entropy" not in key} == {
        "question_templates": 4, "image_clusters": 3, "question_templates_kept": 2,
        "image_clusters_kept": 1, "cluster_coverage": 1 / 3}  # a's cluster: 1 of 3 image rows
    assert diversity["question_templates_entropy_bits"] == pytest.approx(
        -(2 / 5) * math.log2(2 / 5) - 3 * (1 / 5) * math.log2(1 / 5))
    assert diversity["question_templates_entropy_bits_kept"] == 1.0  # a's two templates
    verdict = diversity_verdict(diversity, Policy())
    assert not verdict.passed and verdict.figures["image_clusters_kept_share"] == 1 / 3
    lenient = Policy.model_validate({"audit": {"diversity_floor": 0.3}})
    assert diversity_verdict(diversity, lenient).passed
    assert diversity_verdict({}, Policy()).passed  # nothing measured: nothing to warn about


def test_human_verdicts_replace_automatic_ones_and_say_so():
    reviews = [{"example_id": "contra", "verdict": "keep"}, {"example_id": "clean",
                                                             "verdict": "drop"}]
    result = audit_rows(_pairs(), Policy(), rows_in=6, quarantined=0, reviews=reviews)
    verdicts = {row["example_id"]: (row["verdict"], row["reasons"])
                for row in result.verdicts.iter_rows(named=True)}
    assert verdicts["contra"] == ("keep", ["contradiction", "human_review"])
    assert verdicts["clean"] == ("drop", ["human_review"])
    assert verdicts["marker"] == ("drop", ["preference_pollution"])
