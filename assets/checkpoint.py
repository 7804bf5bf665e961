"""training_checkpoint: a model trained on the mix by a separate process, through Dagster Pipes."""

import json
import tempfile
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    PipesSubprocessClient,
    asset,
)

from assets.gate import require_checks_passed
from assets.mix import TRAINING_MIX_BLOCKING_CHECKS, training_mix
from assets.resources import IntegrityResource, TrainerResource
from assets.lineage_tables import consumed_versions
from integrity.store.lineage import checkpoint_lineage
from integrity.names import MIX_LLAVA_FILE, TRAINING_CHECKPOINT, TRAINING_MIX
from integrity.stages import checkpoint_to_store

# What anything downstream of a checkpoint (an RL export) requires (checks/checkpoint.py).
TRAINING_CHECKPOINT_BLOCKING_CHECKS = ("training_checkpoint_visual_reliance",
                                       "training_checkpoint_cka")


@asset(deps=[training_mix], code_version="checkpoint-1", group_name="training",
       kinds={"pytorch"})
def training_checkpoint(context: AssetExecutionContext, integrity: IntegrityResource,
                        trainer: TrainerResource) -> MaterializeResult:
    """Trains on the latest mix whose blocking checks passed (the trainer command runs as its
    own process and reports metrics back through Pipes) and stores the checkpoint with a
    manifest naming the mix; metadata carries the whole lineage down to the raw versions."""
    store = integrity.store(context.instance)
    mix_version = require_checks_passed(context, training_mix.key, TRAINING_MIX_BLOCKING_CHECKS)
    with tempfile.TemporaryDirectory() as folder:
        # The trainer reads the export's bytes as verified against the sha256 recorded when the
        # mix was published: an export edited on disk since is an error, never trained on.
        mix_path = str(Path(folder) / MIX_LLAVA_FILE)
        Path(mix_path).write_bytes(store.read_attachment(TRAINING_MIX, mix_version,
                                                         MIX_LLAVA_FILE))
        out_path = str(Path(folder) / "checkpoint.pt")
        reported = PipesSubprocessClient().run(
            context=context, command=trainer.command_words(),
            extras={"mix_path": mix_path, "out_path": out_path, "config": trainer.config},
        ).get_materialize_result()
        metrics = {key: value.value for key, value in (reported.metadata or {}).items()}
        manifest, checkpoint_uri = checkpoint_to_store(
            mix_version, out_path, metrics, store,
            trainer={"command": trainer.command_words(), "config": trainer.config},
            gate={TRAINING_MIX: {"version": mix_version,
                                 "checks_passed": list(TRAINING_MIX_BLOCKING_CHECKS)}})
    lineage = checkpoint_lineage(store, manifest.version)
    return MaterializeResult(
        data_version=DataVersion(manifest.version),
        metadata={
            **(reported.metadata or {}),
            "version": manifest.version,
            "version_uri": MetadataValue.path(store.uri(TRAINING_CHECKPOINT, manifest.version)),
            "checkpoint_path": MetadataValue.path(checkpoint_uri),
            "training_mix_version": MetadataValue.text(mix_version),
            # The UI's lineage graph is per asset definition: the consumed versions go here,
            # as a table on the asset's page (and the whole closure as JSON).
            "consumed_versions": consumed_versions(lineage),
            "lineage": MetadataValue.json(json.loads(lineage.write_json())),
        },
    )
