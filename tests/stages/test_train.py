"""The checkpoint stage (integrity/stages/train.py): a checkpoint the demo trainer trained on a
mix's LLaVA export (a few steps, on CPU) becomes a training_checkpoint version naming that mix,
its scalar metrics as a table, the checkpoint file attached; run-to-run timings and the
trainer's scratch path never change the version, what was trained and learned does."""

import hashlib
import shutil

import polars as pl
import pytest

from demo.trainer import TrainConfig, load_checkpoint, train
from integrity.errors import UserError
from integrity.names import CHECKPOINT_FILE, MIX_LLAVA_FILE, TRAINING_CHECKPOINT, TRAINING_MIX
from integrity.stages import checkpoint_to_store, mix_to_store
from integrity.store.lineage import checkpoint_lineage
from integrity.store.versions import StoreError
from tests.stages.world import audit_source, make_world

CONFIG = TrainConfig(max_steps=2, batch_size=8, probe_images=4)
TRAINER = {"command": ["python", "-m", "demo.trainer"], "config": CONFIG.model_dump()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """The world's two sources audited and mixed, and the demo trainer's checkpoint of the mix
    (trained once for the module)."""
    root = tmp_path_factory.mktemp("train")
    world = make_world(root / "world")
    audited = {source.name: audit_source(world, source)[2].version
               for source in (world.llava, world.sharegpt)}
    _, mix, _ = mix_to_store(audited, world.store, world.policy)
    assert world.store.latest(TRAINING_MIX) == mix.version
    export = root / MIX_LLAVA_FILE
    export.write_bytes(world.store.read_attachment(TRAINING_MIX, mix.version, MIX_LLAVA_FILE))
    checkpoint = root / "checkpoint.pt"
    metrics = train(export, checkpoint, CONFIG)
    return {"world": world, "store": world.store, "mix": mix.version, "audited": audited,
            "checkpoint": checkpoint, "metrics": metrics}


def _commit(trained, checkpoint=None, metrics=None, trainer=TRAINER, gate=None):
    return checkpoint_to_store(trained["mix"], str(checkpoint or trained["checkpoint"]),
                               trained["metrics"] if metrics is None else metrics,
                               trained["store"], trainer=trainer, gate=gate)


def test_a_checkpoint_is_committed_naming_its_mix_with_the_file_attached(trained):
    store, metrics = trained["store"], trained["metrics"]
    gate = {TRAINING_MIX: {"version": trained["mix"], "checks_passed": ["a_check"]}}
    manifest, uri = _commit(trained, gate=gate)
    data = trained["checkpoint"].read_bytes()
    assert (manifest.asset, manifest.partition) == (TRAINING_CHECKPOINT, None)
    assert manifest.upstream == {TRAINING_MIX: trained["mix"]}
    assert manifest.params == {"trainer": TRAINER,
                               "checkpoint_sha256": hashlib.sha256(data).hexdigest()}
    assert manifest.params["checkpoint_sha256"] == metrics["checkpoint_sha256"]
    assert manifest.extra["gate"] == gate
    assert uri == store.attachment_uri(TRAINING_CHECKPOINT, manifest.version, CHECKPOINT_FILE)
    assert store.read_attachment(TRAINING_CHECKPOINT, manifest.version, CHECKPOINT_FILE) == data
    assert store.verify(TRAINING_CHECKPOINT, manifest.version) == []
    # The attached file is the trained model itself.
    _, state = load_checkpoint(uri)
    assert state["config"]["max_steps"] == CONFIG.max_steps
    # Lineage runs from the checkpoint through the mix down to every audited version.
    reached = set(checkpoint_lineage(store, manifest.version)["version"])
    assert {trained["mix"], *trained["audited"].values()} <= reached


def test_the_metrics_table_holds_the_scalar_metrics_only(trained):
    manifest, _ = _commit(trained)
    metrics = trained["metrics"]
    table = trained["store"].read(TRAINING_CHECKPOINT, manifest.version, "metrics")
    assert table.height == 1
    recorded = table.row(0, named=True)
    assert recorded == manifest.extra["metrics"]
    assert recorded["accuracy"] == metrics["accuracy"] and recorded["steps"] == CONFIG.max_steps
    assert recorded["vision_tune"] == metrics["vision_tune"] and "cka" in recorded
    # Nested metrics, the trainer's scratch path and timings are left out.
    assert isinstance(metrics["per_attribute"], dict) and "per_attribute" not in recorded
    assert "checkpoint_path" in metrics and "checkpoint_path" not in recorded
    assert "train_seconds" in metrics and "train_seconds" not in recorded
    assert set(recorded) == {key for key, value in metrics.items()
                             if isinstance(value, int | float | str | bool)} - {
        "checkpoint_path", "train_seconds"}


def test_timings_and_the_scratch_path_do_not_change_the_version(trained, tmp_path):
    first, _ = _commit(trained)
    moved = tmp_path / "elsewhere.pt"
    shutil.copy(trained["checkpoint"], moved)
    rerun = {**trained["metrics"], "train_seconds": 99.0, "probe_seconds": 3.5,
             "checkpoint_path": str(moved)}
    again, _ = _commit(trained, checkpoint=moved, metrics=rerun)
    assert again.version == first.version and again.created_at == first.created_at


@pytest.mark.parametrize("change", ["metrics", "trainer", "checkpoint"])
def test_what_was_trained_and_learned_makes_another_version(trained, tmp_path, change):
    first, _ = _commit(trained)
    checkpoint, metrics, trainer = trained["checkpoint"], trained["metrics"], TRAINER
    if change == "metrics":
        metrics = {**metrics, "accuracy": metrics["accuracy"] + 0.25}
    elif change == "trainer":
        trainer = {**TRAINER, "config": {**TRAINER["config"], "seed": 1}}
    else:
        checkpoint = tmp_path / "other.pt"
        checkpoint.write_bytes(trained["checkpoint"].read_bytes() + b"\0")
    other, _ = _commit(trained, checkpoint=checkpoint, metrics=metrics, trainer=trainer)
    assert other.version != first.version
    assert trained["store"].latest(TRAINING_CHECKPOINT) == other.version
    assert other.upstream == {TRAINING_MIX: trained["mix"]}


def test_a_missing_checkpoint_file_is_an_error_naming_it_and_commits_nothing(trained, tmp_path):
    before = trained["store"].versions(TRAINING_CHECKPOINT)
    missing = tmp_path / "never-written.pt"
    with pytest.raises(FileNotFoundError, match="never-written.pt"):
        _commit(trained, checkpoint=missing)
    assert trained["store"].versions(TRAINING_CHECKPOINT) == before


def test_a_mix_the_store_lacks_or_that_failed_its_checks_gets_no_checkpoint(trained):
    store, world = trained["store"], trained["world"]
    before = store.versions(TRAINING_CHECKPOINT)
    with pytest.raises(StoreError, match="Unknown version"):
        checkpoint_to_store("0123456789abcdef", str(trained["checkpoint"]), trained["metrics"],
                            store, trainer=TRAINER)
    # The mix's own source declared as an eval set: every row overlaps it.
    _, failed, _ = mix_to_store(trained["audited"], store, world.policy,
                                eval_sets=[world.llava])
    assert failed.extra["failed_checks"] == ["training_mix_no_eval_overlap"]
    with pytest.raises(UserError, match=f"{failed.version} failed training_mix_no_eval_overlap"):
        checkpoint_to_store(failed.version, str(trained["checkpoint"]), trained["metrics"],
                            store, trainer=TRAINER)
    assert store.versions(TRAINING_CHECKPOINT) == before


def test_the_metrics_table_keeps_each_metric_s_type(trained):
    metrics = {"accuracy": 0.5, "steps": 2, "vision_tune": "top", "converged": True}
    manifest, _ = _commit(trained, metrics=metrics)
    table = trained["store"].read(TRAINING_CHECKPOINT, manifest.version, "metrics")
    assert table.schema == pl.Schema({"accuracy": pl.Float64, "steps": pl.Int64,
                                      "vision_tune": pl.String, "converged": pl.Boolean})
    assert manifest.extra["metrics"] == metrics
