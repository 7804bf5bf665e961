"""The blocking checks as plain functions over a store, and gate_source (integrity/decide/gate.py):
small raw_sft, scored_sft and audited_sft versions written straight into a VersionStore in
tmp_path (and one real chain made by the stages without a model), each check failing on the one
thing its version breaks, with a description that says what."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from integrity.decide import gate
from integrity.decide.audit import blocking_check_names
from integrity.decide.policy import Policy
from integrity.ingest import SourceConfig
from integrity.ingest.schema import RAW_SFT_SCHEMA
from integrity.mix.training_mix import MIX_SCHEMA
from integrity.names import AUDITED_SFT, RAW_SFT, SCORED_SFT
from integrity.store.versions import VersionStore

IDS = ["a", "b", "c"]


def raw_rows(ids: list[str], *, pref_roles: list[str | None] | None = None,
             source: str = "s") -> pl.DataFrame:
    roles = pref_roles or [None] * len(ids)
    return pl.DataFrame([{
        "example_id": example_id, "source": source, "origin_format": "llava", "row_index": n,
        "images": ["x.png"], "image_uris": ["/images/x.png"], "image_sha256": [f"{n:064x}"],
        "turns": [{"role": "user", "content": f"<image>\nWhat is in picture {example_id}?"},
                  {"role": "assistant", "content": f"Picture {example_id}."}],
        "metadata": "{}", "pref_role": role, "pref_group": None if role is None else "g",
        "modality": "image-text",
    } for n, (example_id, role) in enumerate(zip(ids, roles, strict=True))],
        schema=RAW_SFT_SCHEMA)


def scored_rows(ids: list[str] = IDS, **columns: list) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame({"example_id": ids,
                         "grounding_cos": [0.30 + 0.01 * i for i in range(n)],
                         "grounding_margin": [0.10 + 0.02 * i for i in range(n)]} | columns)


def scored_pairs(ids: list[str] = IDS, own: list[float] | None = None,
                 shuffled: list[float] | None = None) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame({"example_id": ids, "pair": [0] * n,
                         "grounding_cos": own or [0.30] * n,
                         "grounding_shuffled_cos": shuffled or [0.10] * n})


def verdict_rows(**changes: list) -> pl.DataFrame:
    table = {"example_id": IDS, "verdict": ["keep", "keep", "drop"],
             "reasons": [[], [], ["duplicate"]], "modality": ["image-text"] * 3,
             "grounding_margin": [0.10, 0.12, 0.14]} | changes
    return pl.DataFrame(table, schema_overrides={"reasons": pl.List(pl.String)})


def chain(store: VersionStore, source: str = "s", *, raw: pl.DataFrame | None = None,
          raw_extra: dict | None = None, scored: pl.DataFrame | None = None,
          pairs: pl.DataFrame | None = None, scored_extra: dict | None = None,
          verdicts: pl.DataFrame | None = None, kept: int | None = None,
          audited_extra: dict | None = None) -> dict[str, str]:
    """A raw -> scored -> audited chain of ``source`` as the stages lay it out, every part
    replaceable; by default one that passes every blocking check. Returns asset -> version."""
    raw = raw_rows(IDS, source=source) if raw is None else raw
    raw_version = store.write(
        RAW_SFT, {"data": raw}, partition=source, code_version="t",
        extra={"records_in": raw.height, "accepted": raw.height, "rows_in": raw.height,
               "quarantined": 0} | (raw_extra or {})).version
    scored_version = store.write(
        SCORED_SFT, {"data": scored_rows() if scored is None else scored,
                     "pairs": scored_pairs() if pairs is None else pairs},
        partition=source, upstream={RAW_SFT: raw_version}, code_version="t",
        extra={"model_fit_auc": 0.9, "model_fit_pairs": 3, "model_id": "ViT-test"}
        | (scored_extra or {})).version
    verdicts = verdict_rows() if verdicts is None else verdicts
    keep = verdicts.filter(pl.col("verdict") == "keep")
    data = raw.join(keep, on="example_id", how="semi")
    data = data if kept is None else data.head(kept)
    counts = {name: verdicts.filter(pl.col("verdict") == name).height
              for name in ("keep", "review", "drop")}
    audited_version = store.write(
        AUDITED_SFT, {"data": data, "verdicts": verdicts}, partition=source,
        upstream={SCORED_SFT: scored_version, RAW_SFT: raw_version}, code_version="t",
        extra={"rows_in": raw.height, "quarantined": 0, "counts": counts}
        | (audited_extra or {})).version
    return {RAW_SFT: raw_version, SCORED_SFT: scored_version, AUDITED_SFT: audited_version}


@pytest.fixture
def store(tmp_path) -> VersionStore:
    return VersionStore(str(tmp_path / "store"))


def every_check() -> list[str]:
    return [name for checks in gate.blocking_checks().values() for name in checks]


def failed(outcomes: list[gate.CheckOutcome]) -> list[str]:
    return [outcome.check for outcome in outcomes if not outcome.passed]


# --- gate_source -----------------------------------------------------------------------------
def test_a_chain_the_stages_made_passes_every_blocking_check(store, tmp_path):
    from integrity.stages import audit_to_store, ingest_to_store, score_to_store

    rows = [{"id": f"r{i}", "conversations": [{"from": "human", "value": f"What is {i}+{i}?"},
                                              {"from": "gpt", "value": str(2 * i)}]}
            for i in range(5)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    source = SourceConfig(name="s", uri=str(tmp_path / "d.jsonl"))
    _, raw = ingest_to_store(source, store)
    _, scored, _ = score_to_store(source, raw.version, store)  # no model
    _, audited, _ = audit_to_store("s", scored.version, store, Policy(), report=False)

    outcomes = gate.gate_source(store, "s", Policy())
    assert [outcome.check for outcome in outcomes] == every_check()
    assert failed(outcomes) == [], [outcome.line() for outcome in outcomes]
    versions = {RAW_SFT: raw.version, SCORED_SFT: scored.version, AUDITED_SFT: audited.version}
    assert all(outcome.version == versions[outcome.asset] for outcome in outcomes)
    assert all(outcome.source == "s" for outcome in outcomes)
    lines = [outcome.line() for outcome in outcomes]
    assert "pass  s  raw_sft_quarantine_rate: 0/5 rows quarantined (0.00%, bound 5.00%)" in lines
    assert "pass  s  audited_sft_nothing_lost: 5 in = 5 kept + 0 dropped + 0 review + " \
           "0 quarantined" in lines


def test_a_source_never_audited_fails_the_gate_with_one_outcome_saying_so(store):
    chain(store, "other")
    [outcome] = gate.gate_source(store, "s", Policy())
    assert (outcome.asset, outcome.version, outcome.check, outcome.passed) == (
        AUDITED_SFT, None, "audited", False)
    assert outcome.line() == "FAIL  s  audited: never audited: run `integrity audit` first"


def test_the_hand_made_chain_passes_every_blocking_check(store):
    """The cases below each break one thing of this chain."""
    chain(store)
    outcomes = gate.gate_source(store, "s", Policy())
    assert failed(outcomes) == [], [outcome.line() for outcome in outcomes]


@pytest.mark.parametrize(
    ("broken", "check", "description"),
    [
        ({"raw_extra": {"rows_in": 20, "quarantined": 2}}, "raw_sft_quarantine_rate",
         "2/20 rows quarantined (10.00%, bound 5.00%)"),
        ({"scored": scored_rows(["a", "b"]), "pairs": scored_pairs(["a", "b"])},
         "scored_sft_coverage", "1 raw rows unscored"),
        ({"scored": scored_rows(["a", "b", "c", "zz"])}, "scored_sft_coverage",
         "1 scored rows without a raw row"),
        ({"scored": scored_rows(grounding_cos=[0.3, float("nan"), 0.2])}, "scored_sft_coverage",
         "NaN in grounding_cos"),
        ({"scored": scored_rows(grounding_margin=[0.1, 0.1, 0.1])}, "scored_sft_distribution",
         "near-constant: grounding_margin (std < 0.001)"),
        ({"scored_extra": {"model_fit_auc": 0.6}}, "scored_sft_model_fit",
         "ViT-test cannot tell matched from shuffled image-answer pairs on source s: "
         "AUC 0.60 < 0.75"),
        ({"verdicts": verdict_rows(grounding_margin=[-0.2, 0.12, 0.14])},
         "audited_sft_grounding", "1/2 kept image rows weakly grounded (50.0%, bound 5.0%)"),
        ({"verdicts": verdict_rows(reasons=[[], ["contradiction"], ["duplicate"]])},
         "audited_sft_no_contradiction", "1 kept rows flagged contradiction"),
        ({"verdicts": verdict_rows(reasons=[["preference_pollution"], [], ["duplicate"]])},
         "audited_sft_no_preference_pollution", "1 kept rows flagged preference_pollution"),
        ({"audited_extra": {"rows_in": 4}}, "audited_sft_nothing_lost",
         "4 in = 2 kept + 1 dropped + 0 review + 0 quarantined (does not add up)"),
        ({"kept": 1}, "audited_sft_nothing_lost",  # a kept row was never written
         "3 in = 2 kept + 1 dropped + 0 review + 0 quarantined (does not add up)"),
    ],
    ids=["quarantine-rate", "unscored-row", "stray-scored-row", "nan-signal", "flat-signal",
         "model-misfit", "weak-grounding", "kept-contradiction", "kept-preference-pollution",
         "rows-lost", "kept-row-not-written"],
)
def test_a_chain_that_breaks_one_rule_fails_the_gate_on_that_check_saying_what(
        store, broken, check, description):
    versions = chain(store, **broken)
    outcomes = gate.gate_source(store, "s", Policy())
    assert failed(outcomes) == [check]
    [outcome] = [outcome for outcome in outcomes if not outcome.passed]
    assert outcome.version == versions[outcome.asset]
    assert outcome.description.startswith(description)
    assert outcome.line() == f"FAIL  s  {check}: {outcome.description}"


def test_the_gate_judges_the_latest_audit_and_the_versions_it_read(store):
    """Not the latest scored or raw version: a newer one the audit never read is not gated."""
    versions = chain(store)
    store.write(SCORED_SFT, {"data": scored_rows(["a"]), "pairs": scored_pairs(["a"])},
                partition="s", upstream={RAW_SFT: versions[RAW_SFT]}, code_version="newer")
    assert store.latest(SCORED_SFT, "s") != versions[SCORED_SFT]
    outcomes = gate.gate_source(store, "s", Policy())
    assert failed(outcomes) == []
    assert {(outcome.asset, outcome.version) for outcome in outcomes} == set(versions.items())
    # A newer audit that fails is what the gate then sees.
    chain(store, verdicts=verdict_rows(reasons=[[], ["contradiction"], []]))
    assert failed(gate.gate_source(store, "s", Policy())) == ["audited_sft_no_contradiction"]


def test_the_gate_applies_the_policy_it_is_given(store):
    chain(store, raw_extra={"rows_in": 20, "quarantined": 2})
    assert failed(gate.gate_source(store, "s", Policy())) == ["raw_sft_quarantine_rate"]
    lenient = Policy(ingest={"max_quarantine_rate": 0.2})
    assert failed(gate.gate_source(store, "s", lenient)) == []


def test_the_gate_runs_the_blocking_checks_dagster_requires():
    from assets.audited import AUDITED_SFT_BLOCKING_CHECKS
    from assets.raw import RAW_SFT_BLOCKING_CHECKS
    from assets.scored import SCORED_SFT_BLOCKING_CHECKS

    checks = gate.blocking_checks()
    assert list(checks) == [RAW_SFT, SCORED_SFT, AUDITED_SFT]
    assert tuple(checks[RAW_SFT]) == RAW_SFT_BLOCKING_CHECKS
    assert tuple(checks[SCORED_SFT]) == SCORED_SFT_BLOCKING_CHECKS
    assert tuple(checks[AUDITED_SFT]) == AUDITED_SFT_BLOCKING_CHECKS == blocking_check_names()
    assert "raw_sft_has_rows" not in checks[RAW_SFT]  # a warning, never a gate


# --- the checks one by one -------------------------------------------------------------------
def test_the_contract_check_lists_each_failed_expectation(store):
    versions = chain(store, raw=raw_rows(["a", "a", "c"]))
    verdict = gate.raw_sft_contract(store, versions[RAW_SFT], Policy())
    assert not verdict.passed
    assert re.fullmatch(r"1 of \d+ expectations failed", verdict.description)
    assert verdict.figures == {"failed_expectations": "- expect_column_values_to_be_unique "
                                                      "{'column': 'example_id'}: 2 rows"}
    good = chain(store, "t")
    verdict = gate.raw_sft_contract(store, good[RAW_SFT], Policy())
    assert verdict.passed
    assert verdict.figures == {"failed_expectations": "all expectations met"}


def test_has_rows_warns_about_a_source_that_gave_no_records(store):
    empty = chain(store, raw_extra={"records_in": 0, "accepted": 0})
    verdict = gate.raw_sft_has_rows(store, empty[RAW_SFT], Policy())
    assert not verdict.passed
    assert verdict.description == "source s holds no records (an empty or blank file)"
    full = chain(store, "t", raw_extra={"records_in": 4, "accepted": 3})
    verdict = gate.raw_sft_has_rows(store, full[RAW_SFT], Policy())
    assert verdict.passed and verdict.description == "4 records, 3 rows accepted"


def test_model_fit_without_a_recorded_fit_is_computed_from_the_pairs(store):
    versions = chain(store)
    # Scored before the fit was recorded: no model_fit_auc among the manifest's facts.
    old = store.write(SCORED_SFT, {"data": scored_rows(),
                                   "pairs": scored_pairs(own=[0.1, 0.1, 0.4],
                                                         shuffled=[0.3, 0.3, 0.3])},
                      partition="s", upstream={RAW_SFT: versions[RAW_SFT]}, code_version="old",
                      extra={"model_id": "ViT-test"})
    verdict = gate.scored_sft_model_fit(store, old.version, Policy())
    assert not verdict.passed
    assert verdict.figures["model_fit_auc"] == pytest.approx(1 / 3)
    assert verdict.figures["pairs"] == 3
    assert "AUC 0.33 < 0.75" in verdict.description


def test_model_fit_from_the_pairs_leaves_out_answers_wrong_on_purpose(store):
    """A preference pair's rejected answer is meant not to fit its image."""
    raw = raw_rows(IDS, pref_roles=["chosen", "rejected", None])
    versions = chain(store, raw=raw)
    old = store.write(SCORED_SFT, {"data": scored_rows(),
                                   "pairs": scored_pairs(own=[0.4, 0.1, 0.4],
                                                         shuffled=[0.3, 0.3, 0.3])},
                      partition="s", upstream={RAW_SFT: versions[RAW_SFT]}, code_version="old",
                      extra={"model_id": "ViT-test"})
    verdict = gate.scored_sft_model_fit(store, old.version, Policy())
    assert verdict.passed
    assert (verdict.figures["model_fit_auc"], verdict.figures["pairs"]) == (1.0, 2)


def test_a_version_scored_without_a_model_passes_the_model_checks(store):
    versions = chain(store, scored=pl.DataFrame({"example_id": IDS}),
                     pairs=pl.DataFrame({"example_id": IDS, "pair": [0, 0, 0]}),
                     scored_extra={"model_fit_auc": None, "model_fit_pairs": 0, "model_id": None},
                     verdicts=verdict_rows().drop("grounding_margin"))
    policy = Policy()
    fit = gate.scored_sft_model_fit(store, versions[SCORED_SFT], policy)
    assert fit.passed
    assert fit.description == "no image-answer pairs scored with a model on source s"
    spread = gate.scored_sft_distribution(store, versions[SCORED_SFT], policy)
    assert spread.passed
    assert spread.description == "no model signals in this version (scored without an encoder)"
    grounding = gate.audited_sft_grounding(store, versions[AUDITED_SFT], policy)
    assert grounding.passed
    assert grounding.description == "no grounding scores (scored without a model)"


def test_weak_grounding_under_a_poorly_fitting_model_names_the_model_as_the_likely_cause(store):
    versions = chain(store, scored_extra={"model_fit_auc": 0.6},
                     verdicts=verdict_rows(grounding_margin=[-0.3, -0.2, 0.1]))
    verdict = gate.audited_sft_grounding(store, versions[AUDITED_SFT], Policy())
    assert not verdict.passed
    assert verdict.description == (
        "2/2 kept image rows weakly grounded (100.0%, bound 5.0%); the likely cause is the "
        "model: ViT-test fits this source poorly (AUC 0.60 < 0.75)")


def test_grounding_counts_only_kept_image_rows(store):
    versions = chain(store, verdicts=verdict_rows(
        verdict=["keep", "drop", "keep"], reasons=[[], ["duplicate"], []],
        modality=["image-text", "image-text", "text"], grounding_margin=[0.2, -0.5, -0.5]))
    verdict = gate.audited_sft_grounding(store, versions[AUDITED_SFT], Policy())
    assert verdict.passed
    assert verdict.figures["kept_image_rows"] == 1
    only_text = chain(store, "t", verdicts=verdict_rows(modality=["text"] * 3))
    verdict = gate.audited_sft_grounding(store, only_text[AUDITED_SFT], Policy())
    assert verdict.passed and verdict.description.startswith("skipped: no image row was kept")


def test_none_kept_looks_at_kept_rows_only(store):
    versions = chain(store, verdicts=verdict_rows(
        verdict=["keep", "review", "drop"],
        reasons=[["blind_answerable"], ["contradiction"], ["contradiction"]]))
    check = gate.none_kept("contradiction")
    verdict = check(store, versions[AUDITED_SFT], Policy())
    assert verdict.passed and verdict.figures == {"kept_contradiction": 0}
    assert not gate.none_kept("blind_answerable")(store, versions[AUDITED_SFT], Policy()).passed


# --- training mix ----------------------------------------------------------------------------
def mix_of(rows: pl.DataFrame, audited_version: str) -> pl.DataFrame:
    """Kept text rows as a mix places them: the curriculum's text stage, in order."""
    return rows.with_columns(
        audited_version=pl.lit(audited_version), stage=pl.lit("text_warmup"),
        stage_index=pl.lit(0, pl.Int32), difficulty=pl.lit(0.5), replica=pl.lit(0, pl.Int32),
        position=pl.int_range(pl.len(), dtype=pl.Int64), modality=pl.lit("text"),
        images=pl.lit([], pl.List(pl.String)), image_uris=pl.lit([], pl.List(pl.String)),
        image_sha256=pl.lit([], pl.List(pl.String)),
    ).select(MIX_SCHEMA.names())


def test_a_mix_of_kept_rows_in_order_passes_the_band_curriculum_trace_and_eval_checks(store, tmp_path):
    versions = chain(store)
    kept = store.read(AUDITED_SFT, versions[AUDITED_SFT])
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"id": "e", "conversations": [
        {"from": "human", "value": "Something never asked?"}, {"from": "gpt", "value": "x"}]}))
    mix = gate.MixUnderReview(frame=mix_of(kept, versions[AUDITED_SFT]),
                              audited={f"{AUDITED_SFT}/s": versions[AUDITED_SFT]}, store=store,
                              policy=Policy(mix={"image_share": 0.0}),
                              eval_sets=[SourceConfig(name="e", uri=str(eval_file))])
    checks = [gate.training_mix_modality_band, gate.training_mix_curriculum,
              gate.training_mix_traceable, gate.training_mix_no_eval_overlap]
    for check in checks:  # each blocks the mix: registered under its name
        assert gate.TRAINING_MIX_CHECKS[check.__name__] is check
    verdicts = {check.__name__: check(mix) for check in checks}
    assert all(verdict.passed for verdict in verdicts.values()), \
        {name: verdict.description for name, verdict in verdicts.items()}
    assert verdicts["training_mix_traceable"].description.startswith("0/2 mix rows")
    assert verdicts["training_mix_no_eval_overlap"].description.startswith("0/2 mix rows")


def test_a_mix_row_its_audit_did_not_keep_is_untraceable(store):
    versions = chain(store)
    rows = store.read(RAW_SFT, versions[RAW_SFT])  # c was dropped by the audit
    mix = gate.MixUnderReview(frame=mix_of(rows, versions[AUDITED_SFT]),
                              audited={f"{AUDITED_SFT}/s": versions[AUDITED_SFT]}, store=store,
                              policy=Policy())
    verdict = gate.training_mix_traceable(mix)
    assert not verdict.passed
    assert verdict.description == (f"1/3 mix rows not among the kept rows of their audited "
                                   f"version, e.g. c of {versions[AUDITED_SFT]}")


def test_a_mix_row_asking_an_eval_question_overlaps_the_eval_set(store, tmp_path):
    versions = chain(store)
    kept = store.read(AUDITED_SFT, versions[AUDITED_SFT])
    question = kept["turns"][0][0]["content"]
    eval_file = tmp_path / "eval.json"
    eval_file.write_text(json.dumps([{"id": "e", "conversations": [
        {"from": "human", "value": question.replace("<image>\n", "")},
        {"from": "gpt", "value": "x"}]}]))
    mix = gate.MixUnderReview(frame=mix_of(kept, versions[AUDITED_SFT]),
                              audited={f"{AUDITED_SFT}/s": versions[AUDITED_SFT]}, store=store,
                              policy=Policy(),
                              eval_sets=[SourceConfig(name="e", uri=str(eval_file))])
    verdict = gate.training_mix_no_eval_overlap(mix)
    assert not verdict.passed
    assert verdict.description == "1/2 mix rows overlap the eval sets (0 by image, 1 by question)"
