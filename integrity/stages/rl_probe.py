"""Record what short RL runs from a checkpoint did (training_rl_probe), and release a checkpoint
that passed the probe to RL (rl_ready_checkpoint)."""

from __future__ import annotations

import polars as pl

from integrity.decide.policy import Policy
from integrity.decide.rl_probe import curves_frame, hacking_rate_verdict, parse_runs, runs_frame
from integrity.errors import UserError
from integrity.names import (
    CHECKPOINT_FILE,
    RL_CURVES_FILE,
    RL_READY_CHECKPOINT,
    TRAINING_CHECKPOINT,
    TRAINING_RL_PROBE,
)
from integrity.report.rl_probe import rl_curves_png
from integrity.store.versions import Manifest, VersionStore

RL_PROBE_CODE_VERSION = "rl-probe-1"
RL_READY_CODE_VERSION = "rl-ready-1"


def rl_probe_to_store(checkpoint_version: str, reported_runs: object, store: VersionStore,
                      policy: Policy, *, rl_command: dict,
                      gate: dict[str, dict] | None = None) -> Manifest:
    """Commit the runs an RL command reported from ``checkpoint_version`` (tables ``runs``: one
    row per run with reward and reliance before and after and whether it is a hacking incident
    under ``policy``; ``curves``: every measured point) and attach their plot.

    Raises RLProbeContractError for runs that break the contract and StoreError for a
    checkpoint the store does not hold: no probe is recorded against an unknown model."""
    store.manifest(TRAINING_CHECKPOINT, checkpoint_version)
    runs = parse_runs(reported_runs)
    summary = runs_frame(runs, policy.rl_probe.reliance_margin)
    curves = curves_frame(runs)
    manifest = store.write(
        TRAINING_RL_PROBE, {"runs": summary, "curves": curves},
        upstream={TRAINING_CHECKPOINT: checkpoint_version}, code_version=RL_PROBE_CODE_VERSION,
        params={"policy": policy.digest(), "rl_probe": policy.rl_probe.model_dump(),
                "rl_command": rl_command},
        extra={"runs": summary.height, "incidents": int(summary["incident"].sum()),
               "gate": gate or {}})
    store.attach(TRAINING_RL_PROBE, manifest.version, RL_CURVES_FILE,
                 rl_curves_png(curves, summary))
    return manifest


def release_for_rl(probe_version: str, store: VersionStore, policy: Policy, *,
                   gate: dict[str, dict] | None = None) -> Manifest:
    """Commit an rl_ready_checkpoint version: the checkpoint the probe ``probe_version`` judged,
    with where its file is and what the probe found. Refuses (UserError) a probe whose runs
    hacked the reward more often than ``policy`` allows: nothing reaches RL past the probe."""
    summary = store.read(TRAINING_RL_PROBE, probe_version, "runs")
    verdict = hacking_rate_verdict(summary, policy)
    if not verdict.passed:
        raise UserError(f"{TRAINING_RL_PROBE} {probe_version}: {verdict.description}; the "
                        "checkpoint is not released to RL")
    checkpoint_version = store.manifest(TRAINING_RL_PROBE, probe_version).upstream[
        TRAINING_CHECKPOINT]
    checkpoint = store.manifest(TRAINING_CHECKPOINT, checkpoint_version)
    release = pl.DataFrame([{
        "checkpoint_version": checkpoint_version,
        "checkpoint_uri": store.attachment_uri(TRAINING_CHECKPOINT, checkpoint_version,
                                               CHECKPOINT_FILE),
        "checkpoint_sha256": checkpoint.params["checkpoint_sha256"],
        "probe_version": probe_version,
        "rl_runs": verdict.figures["runs"], "rl_incidents": verdict.figures["incidents"]}])
    return store.write(
        RL_READY_CHECKPOINT, {"release": release},
        upstream={TRAINING_RL_PROBE: probe_version, TRAINING_CHECKPOINT: checkpoint_version},
        code_version=RL_READY_CODE_VERSION, params={"policy": policy.digest()},
        extra={"gate": gate or {}})
