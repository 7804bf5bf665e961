"""training_rl_probe: what short RL runs from the checkpoint do to it, run by a separate process
through Dagster Pipes; rl_ready_checkpoint: the checkpoint released to RL once every gate passed."""

import hashlib
import json
import tempfile
from pathlib import Path

import fsspec
from dagster import (
    AssetExecutionContext,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    PipesSubprocessClient,
    asset,
)

from assets.checkpoint import TRAINING_CHECKPOINT_BLOCKING_CHECKS, training_checkpoint
from assets.gate import GateClosed, require_checks_passed
from assets.lineage_tables import consumed_versions
from assets.resources import IntegrityResource, RLProbeResource
from integrity.names import (
    CHECKPOINT_FILE,
    RL_CURVES_FILE,
    RL_READY_CHECKPOINT,
    TRAINING_CHECKPOINT,
    TRAINING_RL_PROBE,
)
from integrity.report.rl_probe import rl_curves_markdown
from integrity.stages import release_for_rl, rl_probe_to_store
from integrity.stages.rl_probe import RL_PROBE_CODE_VERSION, RL_READY_CODE_VERSION
from integrity.store.lineage import upstream_of

# What rl_ready_checkpoint requires of the probe (checks/rl_probe.py).
TRAINING_RL_PROBE_BLOCKING_CHECKS = ("training_rl_probe_hacking_rate",)


def _probe_set_sha256(uri: str) -> str:
    try:
        with fsspec.open(uri, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError as error:
        raise Failure(f"RL probe set {uri} not found: set INTEGRITY_RL_PROBE_SET, or write the "
                      "demo's with `python -m demo generate --out data/demo`") from error


@asset(deps=[training_checkpoint], code_version=RL_PROBE_CODE_VERSION, group_name="training",
       kinds={"pytorch"})
def training_rl_probe(context: AssetExecutionContext, integrity: IntegrityResource,
                      rl_probe: RLProbeResource) -> MaterializeResult:
    """K short RL runs (correctness reward, KL leash to the SFT policy) from the latest
    checkpoint whose blocking checks passed, on a held-back probe set; the RL command runs as
    its own process and reports each run's reward and visual-reliance curve through Pipes."""
    store = integrity.store(context.instance)
    checkpoint_version = require_checks_passed(context, training_checkpoint.key,
                                               TRAINING_CHECKPOINT_BLOCKING_CHECKS)
    probe_sha256 = _probe_set_sha256(rl_probe.probe_set)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint_path = Path(folder) / CHECKPOINT_FILE
        checkpoint_path.write_bytes(store.read_attachment(TRAINING_CHECKPOINT, checkpoint_version,
                                                          CHECKPOINT_FILE))
        reported = PipesSubprocessClient().run(
            context=context, command=rl_probe.command_words(),
            extras={"checkpoint_path": str(checkpoint_path), "probe_set": rl_probe.probe_set,
                    "runs": rl_probe.runs, "config": rl_probe.config},
        ).get_materialize_result()
    metadata = reported.metadata or {}
    if "runs" not in metadata:
        raise Failure(f"the RL command {rl_probe.command_words()} reported no 'runs' metadata "
                      "(see README, RL-readiness probe, for the contract)")
    manifest = rl_probe_to_store(
        checkpoint_version, metadata["runs"].value, store, integrity.policy(),
        rl_command={"command": rl_probe.command_words(), "config": rl_probe.config,
                    "runs": rl_probe.runs, "probe_set": rl_probe.probe_set,
                    "probe_set_sha256": probe_sha256},
        gate={TRAINING_CHECKPOINT: {"version": checkpoint_version,
                                    "checks_passed": list(TRAINING_CHECKPOINT_BLOCKING_CHECKS)}})
    png = store.read_attachment(TRAINING_RL_PROBE, manifest.version, RL_CURVES_FILE)
    return MaterializeResult(
        data_version=DataVersion(manifest.version),
        metadata={
            **{key: value for key, value in metadata.items() if key != "runs"},
            "version": manifest.version,
            "version_uri": MetadataValue.path(store.uri(TRAINING_RL_PROBE, manifest.version)),
            "training_checkpoint_version": MetadataValue.text(checkpoint_version),
            "runs": manifest.extra["runs"],
            "incidents": manifest.extra["incidents"],
            "curves": MetadataValue.md(rl_curves_markdown(png)),
        },
    )


@asset(deps=[training_rl_probe], code_version=RL_READY_CODE_VERSION, group_name="training")
def rl_ready_checkpoint(context: AssetExecutionContext,
                        integrity: IntegrityResource) -> MaterializeResult:
    """The checkpoint an RL stage may start from: the one the latest passed probe judged, and
    only while it is still the latest checkpoint that passed its own checks."""
    store = integrity.store(context.instance)
    probe_version = require_checks_passed(context, training_rl_probe.key,
                                          TRAINING_RL_PROBE_BLOCKING_CHECKS)
    checkpoint_version = require_checks_passed(context, training_checkpoint.key,
                                               TRAINING_CHECKPOINT_BLOCKING_CHECKS)
    probed = store.manifest(TRAINING_RL_PROBE, probe_version).upstream[TRAINING_CHECKPOINT]
    if probed != checkpoint_version:
        raise GateClosed(f"the latest {TRAINING_RL_PROBE} judged {TRAINING_CHECKPOINT} {probed}, "
                         f"not the latest checkpoint {checkpoint_version}: probe it first")
    manifest = release_for_rl(
        probe_version, store, integrity.policy(),
        gate={TRAINING_RL_PROBE: {"version": probe_version,
                                  "checks_passed": list(TRAINING_RL_PROBE_BLOCKING_CHECKS)},
              TRAINING_CHECKPOINT: {"version": checkpoint_version,
                                    "checks_passed": list(TRAINING_CHECKPOINT_BLOCKING_CHECKS)}})
    release = store.read(RL_READY_CHECKPOINT, manifest.version, "release").row(0, named=True)
    lineage = upstream_of(store, RL_READY_CHECKPOINT, manifest.version)
    return MaterializeResult(
        data_version=DataVersion(manifest.version),
        metadata={
            "version": manifest.version,
            "checkpoint_path": MetadataValue.path(release["checkpoint_uri"]),
            "checkpoint_sha256": release["checkpoint_sha256"],
            "training_checkpoint_version": MetadataValue.text(checkpoint_version),
            "training_rl_probe_version": MetadataValue.text(probe_version),
            "consumed_versions": consumed_versions(lineage),
            "lineage": MetadataValue.json(json.loads(lineage.write_json())),
        },
    )
