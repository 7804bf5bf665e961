"""audited_sft through a real Dagster instance: verdicts, checks, WARN vs blocking failures."""

import json
from pathlib import Path

from dagster import asset, materialize

from assets.audited import audited_sft
from assets.duplicate_index import duplicate_index
from assets.partitions import sources_partitions
from assets.raw import raw_sft
from assets.resources import EncoderResource, IntegrityResource
from assets.scored import scored_sft
from checks.audited import AUDITED_SFT_CHECKS
from checks.raw import raw_sft_contract, raw_sft_quarantine_rate
from checks.scored import SCORED_SFT_CHECKS
from integrity.decide.calibration import parse_labels
from integrity.names import AUDITED_SFT, SCORED_SFT
from integrity.stages import audit_to_store, calibrate_to_store, calibration_sample, latest_audits
from integrity.store.versions import VersionStore

ASSETS = [raw_sft, scored_sft, duplicate_index, audited_sft, raw_sft_contract, raw_sft_quarantine_rate,
          *SCORED_SFT_CHECKS, *AUDITED_SFT_CHECKS]
trained: list[str] = []


@asset(partitions_def=sources_partitions, deps=[audited_sft])
def training_probe(context) -> None:
    """Stands in for training_mix: records every partition it was allowed to read."""
    trained.append(context.partition_key)


def _run(world, instance, integrity=None):
    instance.add_dynamic_partitions("sources", ["good_llava"])
    trained.clear()
    return materialize([*ASSETS, training_probe], partition_key="good_llava", instance=instance,
                       resources={"integrity": integrity or world["resource"],
                                  "encoder": EncoderResource(workers=0, batch_size=16)},
                       raise_on_error=False)


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_raw_to_audited_in_one_run_and_a_warn_failure_does_not_block(world, instance):
    result = _run(world, instance)
    assert result.success
    checks = _checks(result)
    # The 8 image rows answer "Red." to one question (blind), repeat 4 images and the images
    # are 16 px (image_defect): all dropped.
    # WARN only: 8 of 12 rows dropped; no image cluster and not "what color is" keeps a row.
    warned = {"audited_sft_over_audit", "audited_sft_diversity"}
    assert {name for name, passed in checks.items() if not passed} == warned
    assert trained == ["good_llava"]
    [audited] = result.asset_materializations_for_node("audited_sft")
    assert (audited.metadata["kept"].value, audited.metadata["dropped"].value) == (4, 8)
    store = world["resource"].store(instance)
    manifest = store.manifest(AUDITED_SFT, audited.metadata["version"].value)
    assert manifest.tables["data"].rows == 4 and manifest.params["policy"]
    verdicts = store.read(AUDITED_SFT, manifest.version, "verdicts")
    assert verdicts.filter(verdicts["verdict"] == "drop")["reasons"].list.contains(
        "blind_answerable").all()
    report = Path(audited.metadata["report"].value).read_text()
    assert "blind_answerable" in report and manifest.version in report
    assert 'class="histogram" data-signal="blind_prior"' in report  # drawn on the side thread
    assert Path(audited.metadata["review_rows"].value).read_text() == ""  # nothing to review
    markdown = audited.metadata["audit"].value
    assert "12 rows in = 4 kept + 8 dropped + 0 review + 0 quarantined" in markdown
    assert "| audit.max_drop_rate | 0.3 |" in markdown


def test_a_failing_blocking_audit_check_stops_what_comes_after(world, instance, tmp_path):
    policy = tmp_path / "keep_everything.yaml"
    policy.write_text(json.dumps({"audit": {
        "actions": {"blind_answerable": "keep", "duplicate": "keep", "image_defect": "keep"},
        "weak_grounding_margin": 10.0}}))  # every kept image row counts as weakly grounded
    strict = IntegrityResource(sources_file=world["resource"].sources_file,
                               store_root=world["resource"].store_root,
                               policy_file=str(policy))
    result = _run(world, instance, strict)
    assert not result.success
    assert _checks(result)["audited_sft_grounding"] is False
    assert result.is_node_untouched("training_probe") and trained == []


def test_a_calibration_that_finds_a_dropping_rule_imprecise_warns_and_does_not_block(
        world, instance):
    first = _run(world, instance)
    evaluation = {e.check_name: e for e in first.get_asset_check_evaluations()}
    assert evaluation["audited_sft_calibrated_precision"].passed  # nothing labelled yet
    assert "calibration" not in first.asset_materializations_for_node("audited_sft")[0].metadata

    # Reviewers call every sampled row clean: each rule that drops rows has precision 0.
    integrity = world["resource"]
    sample = calibration_sample(integrity.store(instance), ["good_llava"], integrity.policy(), n=12)
    labels = parse_labels([json.dumps({**row, "label": "clean"}) for row in sample.to_dicts()])
    _, calibration, _ = calibrate_to_store(integrity.store(instance), labels, integrity.policy())

    second = _run(world, instance)
    assert second.success and trained == ["good_llava"]  # WARN: the mix may still read it
    evaluation = {e.check_name: e for e in second.get_asset_check_evaluations()}
    warned = evaluation["audited_sft_calibrated_precision"]
    assert not warned.passed and warned.severity.value == "WARN"
    assert "blind_answerable 0.00" in warned.description
    assert warned.metadata["precision_blind_answerable"].value == 0.0
    assert warned.metadata["calibration_version"].text == calibration.version
    [audited] = second.asset_materializations_for_node("audited_sft")
    assert audited.metadata["calibration_version"].text == calibration.version
    assert "| blind_answerable | drop | 0.00 [" in audited.metadata["calibration"].value
    assert "Auditor calibration" in Path(audited.metadata["report"].value).read_text()


def test_a_run_reads_what_dagster_materialized_not_a_version_written_beside_it(world, instance):
    """One meaning of "latest": inside Dagster, the partition's last materialization. A version
    the CLI commits beside Dagster moves the store's pointer (what the CLI reads) but no peer,
    calibration or gate inside a run reads it until Dagster materializes it."""
    assert _run(world, instance).success
    integrity = world["resource"]
    in_dagster = integrity.store(instance)
    materialized = in_dagster.latest(AUDITED_SFT, "good_llava")
    policy = integrity.policy()
    stricter = policy.model_copy(update={"audit": policy.audit.model_copy(
        update={"max_drop_rate": 0.1})})
    scored = in_dagster.manifest(AUDITED_SFT, materialized).upstream[SCORED_SFT]
    _, beside, _ = audit_to_store("good_llava", scored, VersionStore(integrity.store_root),
                                  stricter, report=False)
    assert beside.version != materialized

    assert VersionStore(integrity.store_root).latest(AUDITED_SFT, "good_llava") == beside.version
    assert in_dagster.latest(AUDITED_SFT, "good_llava") == materialized
    assert latest_audits(in_dagster, ["good_llava"])["good_llava"]["version"] == materialized
    # Nothing Dagster owns was ever materialized for another source: none is latest there.
    assert in_dagster.latest(AUDITED_SFT, "good_sharegpt") is None
