"""training_mix and training_checkpoint through a real Dagster instance: the gate holds, the
trainer runs as its own process through Pipes, and the checkpoint names what it consumed."""

import pytest
from dagster import materialize

from assets.resources import EncoderResource, IntegrityResource, TrainerResource
from assets.gate import GateClosed
from definitions import defs
from demo.generate import DemoConfig, generate
from integrity.names import AUDITED_SFT, TRAINING_CHECKPOINT, TRAINING_MIX
from tests.models import DEMO_MODEL_YAML

TINY_TRAINER = TrainerResource(config={"max_steps": 4, "batch_size": 32, "probe_images": 12})
AUDIT = ["raw_sft", "scored_sft", "duplicate_index", "audited_sft"]
TRAIN = ["training_mix", "training_checkpoint"]


def _assets(names: list[str]) -> list:
    """The named assets with every check of theirs, from the code location itself."""
    chosen = [item for item in defs.assets if item.key.to_user_string() in names]
    checks = [check for check in defs.asset_checks
              if next(iter(check.check_keys)).asset_key.to_user_string() in names]
    return chosen + checks


@pytest.fixture
def corpus(tmp_path, instance):
    def build(**config) -> IntegrityResource:
        generate(tmp_path / "demo", DemoConfig(rows=240, seed=3, **config))
        (tmp_path / "sources.yaml").write_text(
            DEMO_MODEL_YAML
            + f"sources:\n  - {{name: llava, uri: {tmp_path / 'demo' / 'llava.jsonl'}}}\n"
            f"  - {{name: sharegpt, uri: {tmp_path / 'demo' / 'sharegpt.json'}, "
            "format: sharegpt}\n")
        integrity = IntegrityResource(sources_file=str(tmp_path / "sources.yaml"),
                                      store_root=str(tmp_path / "store"))
        instance.add_dynamic_partitions("sources", ["llava", "sharegpt"])
        for source in ("llava", "sharegpt"):
            materialize(_assets(AUDIT), partition_key=source, instance=instance,
                        resources={"integrity": integrity,
                                   "encoder": EncoderResource(workers=0)})
        return integrity
    return build


def _train(integrity, instance, names=TRAIN, raise_on_error=False):
    return materialize(_assets(names), instance=instance, raise_on_error=raise_on_error,
                       resources={"integrity": integrity, "trainer": TINY_TRAINER})


def test_mix_and_checkpoint_record_what_they_consumed(corpus, instance):
    integrity = corpus()
    result = _train(integrity, instance)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert all(checks[name] for name in ("training_mix_modality_band", "training_mix_curriculum",
                                         "training_mix_traceable",
                                         "training_mix_no_eval_overlap"))
    store = integrity.store(instance)
    [mix] = result.asset_materializations_for_node("training_mix")
    [checkpoint] = result.asset_materializations_for_node("training_checkpoint")
    audited = {source: store.latest(AUDITED_SFT, source) for source in ("llava", "sharegpt")}
    assert mix.metadata["audited_versions"].value == audited
    mix_manifest = store.manifest(TRAINING_MIX, mix.metadata["version"].value)
    assert mix_manifest.upstream == {f"audited_sft/{s}": v for s, v in audited.items()}
    assert store.latest(TRAINING_MIX) == mix_manifest.version  # passed: published
    assert mix_manifest.extra["failed_checks"] == []
    # Every file of the chain, exports and checkpoint included, matches its recorded checksum.
    assert [problem for asset in store.assets() for version in store.versions(asset)
            for problem in store.verify(asset, version)] == []
    assert 0.45 <= mix_manifest.extra["summary"]["image_share"] <= 0.55
    # The trainer ran in its own process and reported through Pipes.
    manifest = store.manifest(TRAINING_CHECKPOINT, checkpoint.metadata["version"].value)
    assert manifest.upstream == {"training_mix": mix_manifest.version}
    assert 0.0 <= checkpoint.metadata["accuracy"].value <= 1.0
    assert "visual_reliance" in manifest.extra["metrics"]
    lineage = checkpoint.metadata["lineage"].value
    reached = {row["version"] for row in lineage}
    assert set(audited.values()) <= reached and mix_manifest.version in reached
    # The UI shows the consumed versions as a table on the checkpoint's and the mix's page.
    table = checkpoint.metadata["consumed_versions"]
    rows = {(record.data["asset"], record.data["partition"]): record.data
            for record in table.records}
    for source, version in audited.items():
        row = rows[("audited_sft", source)]
        assert row["version"] == version and row["consumed_by"].startswith("training_mix ")
        assert "audited_sft_nothing_lost" in row["checks_passed"]
    assert rows[("training_mix", "")]["version"] == mix_manifest.version
    assert {record.data["version"] for record in mix.metadata["consumed_versions"].records} >= \
        set(audited.values())


def test_a_mix_outside_the_modality_band_blocks_the_checkpoint(corpus, instance):
    integrity = corpus(text_only_share=0.0)  # no text rows: a 50% image share is out of reach
    result = _train(integrity, instance)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["training_mix_modality_band"] is False
    [mix] = result.asset_materializations_for_node("training_mix")
    assert result.is_node_untouched("training_checkpoint")
    # The failed mix is kept to inspect, but it is not the store's latest and has no exports.
    store = integrity.store(instance)
    assert store.latest(TRAINING_MIX) is None
    assert mix.metadata["published"].value is False
    assert "llava_export" not in mix.metadata
    manifest = store.manifest(TRAINING_MIX, mix.metadata["version"].value)
    assert manifest.extra["failed_checks"] == ["training_mix_modality_band"]
    assert not store.fs.exists(store.attachment_uri(TRAINING_MIX, manifest.version,
                                                    "mix_llava.json"))
    # A later run of the checkpoint alone is refused by the in-code gate.
    with pytest.raises(GateClosed, match="training_mix_modality_band failed"):
        _train(integrity, instance, names=["training_checkpoint"], raise_on_error=True)
    assert integrity.store(instance).latest(TRAINING_CHECKPOINT) is None
