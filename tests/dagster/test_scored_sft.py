"""scored_sft through a real Dagster instance with the shipped reference CLIP."""

import json
from pathlib import Path

from dagster import AssetKey, asset, materialize

from assets.partitions import sources_partitions
from assets.raw import raw_sft
from assets.resources import EncoderResource, IntegrityResource
from assets.scored import scored_sft
from checks.raw import raw_sft_contract, raw_sft_quarantine_rate
from checks.scored import SCORED_SFT_CHECKS, scored_sft_coverage, scored_sft_distribution
from integrity.names import SCORED_SFT

ASSETS = [raw_sft, scored_sft, raw_sft_contract, raw_sft_quarantine_rate, *SCORED_SFT_CHECKS]
ENCODER = EncoderResource(workers=0, batch_size=16)
consumed: list[str] = []


@asset(partitions_def=sources_partitions, deps=[scored_sft])
def audit_probe(context) -> None:
    """Stands in for audited_sft: records every partition it was allowed to read."""
    consumed.append(context.partition_key)


def _run(world, instance, resource=None):
    return materialize([*ASSETS, audit_probe], partition_key="good_llava", instance=instance,
                       resources={"integrity": resource or world["resource"], "encoder": ENCODER},
                       raise_on_error=False)


def test_scored_sft_versions_link_to_raw_and_checks_pass(world, instance):
    instance.add_dynamic_partitions("sources", ["good_llava"])
    consumed.clear()
    result = _run(world, instance)
    assert result.success, [e.message for e in result.get_step_failure_events()]
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {
        "raw_sft_contract": True, "raw_sft_quarantine_rate": True,
        "scored_sft_coverage": True, "scored_sft_distribution": True, "scored_sft_model_fit": True}
    [raw] = result.asset_materializations_for_node("raw_sft")
    [scored] = result.asset_materializations_for_node("scored_sft")
    assert scored.metadata["raw_sft_version"].value == raw.metadata["version"].value
    assert scored.metadata["model_id"].value.startswith("shapes-clip@")
    assert "grounding_margin" in scored.metadata["signals"].value
    store = world["resource"].store(instance)
    manifest = store.manifest(SCORED_SFT, scored.metadata["version"].value)
    assert manifest.upstream == {"raw_sft": raw.metadata["version"].value}
    rows = store.read(SCORED_SFT, manifest.version)
    assert rows.height == 12 and rows["grounding_cos"].is_not_null().sum() == 8
    # Every image row answers "Red." to one question: no alternative to swap in, so the support
    # score falls back to the grounding margin (every image answer has one).
    assert rows["answer_support_prob"].is_not_null().sum() == 8
    assert rows["answer_support_candidates"].is_null().all()
    assert consumed == ["good_llava"]

    # Re-running: same versions, and every embedding comes from the cache.
    again = _run(world, instance).asset_materializations_for_node("scored_sft")[0]
    assert again.metadata["version"].value == manifest.version
    assert again.metadata["images_encoded"].value == 0
    assert again.metadata["cache_hit_rate"].value == 1.0


def test_degenerate_scores_block_downstream(world, instance, tmp_path):
    """A policy demanding more spread than the scores have stands in for a broken encoder."""
    instance.add_dynamic_partitions("sources", ["good_llava"])
    policy = tmp_path / "strict.yaml"
    policy.write_text(json.dumps({"scoring": {"min_signal_std": 10.0}}))
    strict = IntegrityResource(sources_file=world["resource"].sources_file,
                               store_root=world["resource"].store_root, policy_file=str(policy))
    consumed.clear()
    result = _run(world, instance, strict)
    assert not result.success
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations["scored_sft_distribution"] is False
    assert evaluations["scored_sft_coverage"] is True
    assert result.is_node_untouched("audit_probe") and consumed == []
    assert instance.get_latest_materialization_event(AssetKey("scored_sft")) is not None
    assert Path(policy).exists()


def _scored_alone(world, instance, partition):
    """A later, separate run of scored_sft only (as a manual or scheduled run would be)."""
    return materialize([scored_sft, raw_sft, scored_sft_coverage, scored_sft_distribution],
                       selection=[scored_sft.key], partition_key=partition, instance=instance,
                       resources={"integrity": world["resource"], "encoder": ENCODER},
                       raise_on_error=False)


def _gate_error(result) -> str:
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert error.cause.cls_name == "GateClosed"
    return error.cause.message


def test_a_later_run_refuses_raw_whose_blocking_check_failed(world, instance):
    instance.add_dynamic_partitions("sources", ["dup_ids"])
    first = materialize([raw_sft, raw_sft_contract, raw_sft_quarantine_rate],
                        partition_key="dup_ids", instance=instance,
                        resources={"integrity": world["resource"]}, raise_on_error=False)
    assert not first.success  # duplicate ids: the GX contract failed, raw_sft was still written
    later = _scored_alone(world, instance, "dup_ids")
    assert not later.success and later.asset_materializations_for_node("scored_sft") == []
    assert "raw_sft_contract failed" in _gate_error(later)


def test_a_later_run_refuses_raw_whose_checks_never_ran(world, instance):
    instance.add_dynamic_partitions("sources", ["good_llava"])
    unchecked = materialize([raw_sft], partition_key="good_llava", instance=instance,
                            resources={"integrity": world["resource"]})
    assert unchecked.success
    later = _scored_alone(world, instance, "good_llava")
    assert not later.success
    message = _gate_error(later)
    assert "raw_sft_contract never ran" in message
    assert "raw_sft_quarantine_rate never ran" in message


def test_a_later_run_consumes_raw_whose_checks_passed(world, instance):
    instance.add_dynamic_partitions("sources", ["good_llava"])
    checked = materialize([raw_sft, raw_sft_contract, raw_sft_quarantine_rate],
                          partition_key="good_llava", instance=instance,
                          resources={"integrity": world["resource"]})
    assert checked.success
    later = _scored_alone(world, instance, "good_llava")
    assert later.success and len(later.asset_materializations_for_node("scored_sft")) == 1


def test_the_encoder_resource_never_falls_back_to_the_demo_weights(tmp_path):
    """INTEGRITY_MODEL=ViT-B-32 alone loaded the demo's weights into ViT-B-32 and died with
    "text pos_embed width changed!": a model without its weights is now a plain Failure, and
    device and precision reach the encoder."""
    import pytest
    from dagster import Failure

    from integrity.ingest import load_sources
    from tests.models import DEMO_MODEL_YAML

    sources = tmp_path / "sources.yaml"
    sources.write_text(DEMO_MODEL_YAML + "sources:\n  - {name: s, uri: s.jsonl}\n")
    [source] = load_sources(sources)
    with pytest.raises(Failure, match="a model and its weights go together"):
        EncoderResource(model="ViT-B-32").config_for(source, str(sources))
    config = EncoderResource(device="cpu", precision="bf16").config_for(source, str(sources))
    assert (config.model, config.device, config.precision) == ("shapes-clip", "cpu", "bf16")
    assert config.pretrained == str(source.model.pretrained)
    no_model = tmp_path / "no_model.yaml"
    no_model.write_text("sources:\n  - {name: s, uri: s.jsonl}\n")
    with pytest.raises(Failure, match="names no model for source 's'"):
        EncoderResource().config_for(load_sources(no_model)[0], str(no_model))


def test_check_metadata_shows_rounded_numbers():
    """Check metadata showed floats like 0.17833333333333334."""
    from checks.results import check_result
    from integrity.decide.policy import Verdict

    result = check_result(Verdict(True, "ok", {"share": 0.17833333333333334, "rows": 7}), "v1")
    assert result.metadata["share"].value == 0.1783 and result.metadata["rows"].value == 7
