"""The audit stage (integrity/stages/audit.py): a scored_sft version becomes one audited_sft
version (the kept raw rows and a verdict for every scored row) naming both upstream versions,
with its review rows and HTML report attached; reviewers' verdicts override the next audit;
the same input and policy make the same version; and ``latest_audits`` says what each source's
latest audit found."""

import json

import polars as pl
import pytest

from demo.model import demo_encoder_config
from integrity.decide.audit import CODE_VERSION
from integrity.decide.calibration import parse_labels
from integrity.decide.policy import Policy
from integrity.decide.review import import_reviews
from integrity.names import AUDITED_SFT, RAW_SFT, REPORT_FILE, REVIEW_FILE, SCORED_SFT
from integrity.stages import (
    audit_to_store,
    calibrate_to_store,
    calibration_sample,
    current_calibration,
    ingest_to_store,
    latest_audits,
    make_encoder,
    score_to_store,
)
from integrity.store.versions import StoreError
from tests.stages.world import (
    DROPPED,
    KEPT,
    LLAVA_ACCEPTED,
    LLAVA_RECORDS,
    REVIEW,
    archive_source,
    audit_source,
    llava_records,
    write_llava,
)


def _scored(world, source=None, encoder=None) -> tuple[str, str]:
    """(raw version, scored version) of a source of the world (the LLaVA one by default)."""
    source = source or world.llava
    _, raw = ingest_to_store(source, world.store)
    _, scored, _ = score_to_store(source, raw.version, world.store, encoder=encoder)
    return raw.version, scored.version


def _verdicts(world, version: str) -> dict[str, tuple[str, list[str]]]:
    verdicts = world.store.read(AUDITED_SFT, version, "verdicts")
    return {row["example_id"]: (row["verdict"], row["reasons"])
            for row in verdicts.iter_rows(named=True)}


def test_the_audit_keeps_the_kept_raw_rows_and_a_verdict_for_every_scored_row(world):
    raw_version, scored_version = _scored(world)
    result, manifest, _ = audit_to_store("llava", scored_version, world.store, world.policy)
    assert (manifest.asset, manifest.partition) == (AUDITED_SFT, "llava")
    assert manifest.upstream == {SCORED_SFT: scored_version, RAW_SFT: raw_version}
    assert manifest.code_version == CODE_VERSION
    assert manifest.params["policy"] == world.policy.digest()
    assert world.store.latest(AUDITED_SFT, "llava") == manifest.version

    verdicts = _verdicts(world, manifest.version)
    scored = world.store.read(SCORED_SFT, scored_version)
    assert set(verdicts) == set(scored["example_id"])  # rows in = rows out
    assert {i for i, (verdict, _) in verdicts.items() if verdict == "keep"} == KEPT
    assert {i for i, (verdict, _) in verdicts.items() if verdict == "review"} == REVIEW
    assert {i: reasons for i, (verdict, reasons) in verdicts.items() if verdict == "drop"} == \
        DROPPED
    # The kept rows are the raw rows themselves, in the raw version's order.
    raw = world.store.read(RAW_SFT, raw_version)
    kept = world.store.read(AUDITED_SFT, manifest.version)
    assert kept.equals(raw.filter(pl.col("example_id").is_in(list(KEPT))))
    stored = world.store.read(AUDITED_SFT, manifest.version, "verdicts")
    assert dict(stored.select("example_id", "modality").iter_rows()) == \
        dict(raw.select("example_id", "modality").iter_rows())

    assert result.counts() == manifest.extra["counts"] == {"keep": 13, "review": 2, "drop": 2}
    assert (manifest.extra["rows_in"], manifest.extra["quarantined"]) == (LLAVA_RECORDS, 1)
    assert manifest.extra["reasons"] == {
        "drop": {"duplicate": 1, "preference_pollution": 1}, "review": {"contradiction": 2}}
    assert manifest.extra["human_reviews"] == 0
    assert manifest.extra["policy"] == world.policy.audit.model_dump()


def test_the_review_rows_and_the_report_are_attached_beside_the_version(world):
    _, scored_version = _scored(world)
    _, manifest, files = audit_to_store("llava", scored_version, world.store, world.policy)
    assert files == {name: world.store.attachment_uri(AUDITED_SFT, manifest.version, name)
                     for name in (REVIEW_FILE, REPORT_FILE)}
    review = [json.loads(line) for line in
              world.store.read_attachment(AUDITED_SFT, manifest.version, REVIEW_FILE)
              .decode().splitlines()]
    assert {row["example_id"] for row in review} == REVIEW
    for row in review:
        assert row["source"] == "llava" and row["verdict"] is None
        assert row["reasons"] == ["contradiction"] and row["turns"] and row["image_uris"]
    page = world.store.read_attachment(AUDITED_SFT, manifest.version, REPORT_FILE).decode()
    assert f"Audit report: llava {manifest.version}" in page
    assert '<section class="fairness">' in page
    assert "Auditor calibration" not in page  # no calibration given
    assert world.store.verify(AUDITED_SFT, manifest.version) == []


def test_without_a_report_only_the_review_rows_are_attached(world):
    _, scored_version = _scored(world)
    _, manifest, files = audit_to_store("llava", scored_version, world.store, world.policy,
                                        report=False)
    assert list(files) == [REVIEW_FILE]
    with pytest.raises(StoreError, match="report.html is missing"):
        world.store.read_attachment(AUDITED_SFT, manifest.version, REPORT_FILE)


def test_the_same_input_and_policy_reuse_the_version_and_another_policy_makes_a_new_one(world):
    _, scored_version = _scored(world)
    _, first, _ = audit_to_store("llava", scored_version, world.store, world.policy,
                                 report=False)
    _, again, _ = audit_to_store("llava", scored_version, world.store, world.policy,
                                 report=False)
    assert again.version == first.version and again.created_at == first.created_at

    strict = Policy.model_validate({"audit": {"actions": {"contradiction": "drop"}}})
    _, stricter, _ = audit_to_store("llava", scored_version, world.store, strict, report=False)
    assert stricter.version != first.version
    assert stricter.params["policy"] == strict.digest()
    verdicts = _verdicts(world, stricter.version)
    assert {verdicts[example_id][0] for example_id in REVIEW} == {"drop"}
    assert stricter.extra["counts"] == {"keep": 13, "review": 0, "drop": 4}
    assert world.store.latest(AUDITED_SFT, "llava") == stricter.version


def test_a_reviewers_verdict_overrides_the_next_audit_and_is_counted(world):
    _, scored_version = _scored(world)
    _, before, _ = audit_to_store("llava", scored_version, world.store, world.policy,
                                  report=False)
    decided = world.root / "decided.jsonl"
    decided.write_text("".join(json.dumps({"source": "llava", "example_id": example_id,
                                           "verdict": verdict, "reviewer": "ana"}) + "\n"
                               for example_id, verdict in [("img-1", "keep"),
                                                           ("contra-1", "drop")]))
    assert import_reviews(world.store, decided) == {"llava": 2}
    _, after, _ = audit_to_store("llava", scored_version, world.store, world.policy,
                                 report=False)
    assert after.version != before.version
    assert after.params["reviews"] != before.params["reviews"]
    verdicts = _verdicts(world, after.version)
    assert verdicts["img-1"][0] == "keep" and verdicts["contra-1"][0] == "drop"
    assert after.extra["human_reviews"] == 2
    assert set(world.store.read(AUDITED_SFT, after.version)["example_id"]) == KEPT | {"img-1"}


def test_a_review_of_a_row_no_longer_scored_is_ignored(world):
    _, scored_version = _scored(world)
    _, plain, _ = audit_to_store("llava", scored_version, world.store, world.policy,
                                 report=False)
    decided = world.root / "decided.jsonl"
    decided.write_text(json.dumps({"source": "llava", "example_id": "contra-1",
                                   "verdict": "keep"}) + "\n")
    import_reviews(world.store, decided)
    write_llava(world.root / "llava.jsonl",
                [record for record in llava_records() if record["id"] != "contra-1"])
    _, rescored_version = _scored(world)
    _, audited, _ = audit_to_store("llava", rescored_version, world.store, world.policy,
                                   report=False)
    assert audited.extra["human_reviews"] == 0
    assert audited.params["reviews"] == plain.params["reviews"]  # as with no review at all
    assert "contra-1" not in _verdicts(world, audited.version)


def test_the_report_shows_the_peer_sources_and_the_calibration_when_given(world):
    audit_source(world, world.sharegpt)
    _, scored_version = _scored(world)
    sample = calibration_sample(world.store, ["llava"], world.policy, n=8)
    labels = parse_labels([json.dumps({**row, "label": "clean"}) for row in sample.to_dicts()])
    _, calibration, _ = calibrate_to_store(world.store, labels, world.policy)
    peers = latest_audits(world.store, ["sharegpt"])
    _, manifest, files = audit_to_store(
        "llava", scored_version, world.store, world.policy, peers=peers,
        calibration=current_calibration(world.store, world.policy))
    page = world.store.read_attachment(AUDITED_SFT, manifest.version, REPORT_FILE).decode()
    assert '<tr data-source="sharegpt"><td>sharegpt</td><td>8</td><td>8</td>' in page
    assert '<tr class="this" data-source="llava"><td><b>llava</b></td><td>17</td>' in page
    assert f"Auditor calibration</h2>\n<p>calibration <code>{calibration.version}</code>" in page


def test_the_verdicts_carry_the_grounding_margin_when_a_model_scored_the_rows(world):
    _, plain_version = _scored(world)
    _, plain, _ = audit_to_store("llava", plain_version, world.store, world.policy,
                                 report=False)
    assert "grounding_margin" not in world.store.read(AUDITED_SFT, plain.version, "verdicts")

    encoder = make_encoder(demo_encoder_config(workers=0), world.store)
    _, scored_version = _scored(world, encoder=encoder)
    _, audited, _ = audit_to_store("llava", scored_version, world.store, world.policy,
                                   report=False)
    verdicts = world.store.read(AUDITED_SFT, audited.version, "verdicts")
    scored = world.store.read(SCORED_SFT, scored_version)
    assert verdicts.height == LLAVA_ACCEPTED
    assert dict(verdicts.select("example_id", "grounding_margin").iter_rows()) == \
        dict(scored.select("example_id", "grounding_margin").iter_rows())


def test_latest_audits_names_each_audited_sources_latest_facts_and_leaves_out_the_rest(world):
    assert latest_audits(world.store, ["llava", "sharegpt"]) == {}
    *_, audited = audit_source(world, world.llava)
    assert latest_audits(world.store, ["llava", "sharegpt", "never-heard-of"]) == {
        "llava": {"version": audited.version, **audited.extra}}
    *_, sharegpt = audit_source(world, world.sharegpt)
    audits = latest_audits(world.store, ["llava", "sharegpt"])
    assert audits["sharegpt"]["version"] == sharegpt.version
    assert audits["sharegpt"]["counts"] == {"keep": 8, "review": 0, "drop": 0}


def test_an_unknown_scored_version_is_an_error_naming_it(world):
    _scored(world)
    with pytest.raises(StoreError, match="Unknown version '0123456789abcdef' of asset "
                                         "'scored_sft'"):
        audit_to_store("llava", "0123456789abcdef", world.store, world.policy)
    assert world.store.versions(AUDITED_SFT) == []


def test_the_same_scoring_audited_again_after_a_source_holding_a_row_first_came_drops_it(
        world):
    archive = archive_source(world)
    *_, before = audit_source(world, world.llava)  # indexed before the archive existed
    assert _verdicts(world, before.version)["img-2"] == ("keep", [])
    audit_source(world, archive)
    *_, after = audit_source(world, world.llava)
    assert after.version != before.version
    stored = world.store.read(AUDITED_SFT, after.version, "verdicts")
    copied = stored.filter(pl.col("duplicate_of").is_not_null())
    assert copied.select("example_id", "verdict", "duplicate_of").rows() == [
        ("img-2", "drop", "archive/a-2")]  # "archive" sorts first: its copy is kept
    assert "duplicate" in copied["reasons"][0]
    assert after.extra["copies_of_other_sources"] == {"archive": 1}
    assert "img-2" not in set(world.store.read(AUDITED_SFT, after.version)["example_id"])
    assert _verdicts(world, world.store.latest(AUDITED_SFT, "archive"))["a-2"] == ("keep", [])
