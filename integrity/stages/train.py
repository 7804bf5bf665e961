"""Record a trained checkpoint as a training_checkpoint version."""

from __future__ import annotations


import polars as pl

from integrity.errors import UserError
from integrity.names import (
    CHECKPOINT_FILE,
    TRAINING_CHECKPOINT,
    TRAINING_MIX,
)
from integrity.store.versions import VersionStore


def checkpoint_to_store(mix_version: str, checkpoint_path: str, metrics: dict,
                        store: VersionStore, *, trainer: dict,
                        gate: dict[str, dict] | None = None) -> tuple:
    """Commit a trained checkpoint's metrics as a training_checkpoint version naming the mix it
    was trained on, and attach the checkpoint file. Returns (Manifest, checkpoint uri).

    A mix the store does not hold (StoreError) or one that failed its checks is refused: no
    checkpoint is ever recorded against data the gate stopped."""
    import hashlib
    from pathlib import Path

    failed = store.manifest(TRAINING_MIX, mix_version).extra.get("failed_checks")
    if failed:
        raise UserError(f"{TRAINING_MIX} {mix_version} failed {', '.join(failed)}: no "
                        "checkpoint is recorded against a mix that failed its checks")
    data = Path(checkpoint_path).read_bytes()
    # Timings vary run to run; the version is the mix, the trainer and what it learned.
    scalars = {key: value for key, value in metrics.items()
               if isinstance(value, int | float | str | bool) and key != "checkpoint_path"
               and not key.endswith("_seconds")}
    manifest = store.write(
        TRAINING_CHECKPOINT, {"metrics": pl.DataFrame([scalars])},
        upstream={TRAINING_MIX: mix_version}, code_version="checkpoint-1",
        params={"trainer": trainer, "checkpoint_sha256": hashlib.sha256(data).hexdigest()},
        extra={"metrics": scalars, "gate": gate or {}},
    )
    return manifest, store.attach(TRAINING_CHECKPOINT, manifest.version, CHECKPOINT_FILE, data)
