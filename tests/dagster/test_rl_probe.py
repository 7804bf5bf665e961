"""training_rl_probe and rl_ready_checkpoint through a real Dagster instance: the RL command runs
as its own process through Pipes, the hacking-rate check blocks the release in the same run and
the in-code gate in any later run, and a release names the probe and the checkpoint it trusts.

One demo world per module (audit, then the mix_and_train job, which trains a checkpoint whose
checks pass): training it is most of this file's time, so every scenario probes that checkpoint.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
import sys
from pathlib import Path
from statistics import NormalDist

import pytest
from dagster import DagsterInstance, Definitions, materialize

from assets.automation import train_job
from assets.gate import GateClosed
from assets.resources import (
    EncoderResource,
    IntegrityResource,
    RLProbeResource,
    TrainerResource,
)
from definitions import defs
from demo.generate import DemoConfig, generate
from demo.rl import write_probe_set
from integrity.decide.rl_probe import RLProbeContractError
from integrity.names import (
    CHECKPOINT_FILE,
    RL_CURVES_FILE,
    RL_READY_CHECKPOINT,
    TRAINING_CHECKPOINT,
    TRAINING_RL_PROBE,
)
from tests.models import DEMO_MODEL_YAML

AUDIT = ["raw_sft", "scored_sft", "duplicate_index", "audited_sft"]
PROBE = ["training_rl_probe", "rl_ready_checkpoint"]
HACKING_COMMAND = Path(__file__).with_name("hacking_rl_command.py")
# Enough training that the checkpoint's own blocking checks pass (sampled visual reliance ~0.44
# against the default policy's 0.3), so the probe is what decides; ~20 s on 2 cores.
TRAINER = TrainerResource(config={"epochs": 8, "batch_size": 32, "probe_images": 30, "seed": 7})
# The demo RL probe, small: 3 runs (the policy's minimum) of 10 steps, each on all 128 probe
# questions. On this checkpoint its runs keep their reliance (largest fall ~0.03, margin 0.1).
DEMO_RL_CONFIG = {"steps": 10, "seed": 1}


def _assets(names: list[str]) -> list:
    """The named assets with every check of theirs, from the code location itself."""
    chosen = [item for item in defs.assets if item.key.to_user_string() in names]
    checks = [check for check in defs.asset_checks
              if next(iter(check.check_keys)).asset_key.to_user_string() in names]
    return chosen + checks


def _hand_made(mode: str, probe_set: Path, runs: int = 4) -> RLProbeResource:
    return RLProbeResource(command=shlex.join([sys.executable, str(HACKING_COMMAND), mode]),
                           probe_set=str(probe_set), runs=runs, config={"mode": mode})


def _checks(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _wilson_per_100(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """The Wilson score interval, per 100, computed here from its formula."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (
        1 + z * z / trials)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A demo corpus audited through Dagster, a probe set, then the mix_and_train job (as the
    code location defines it) run with the hand-made hacking RL command."""
    root = tmp_path_factory.mktemp("rl_world")
    generate(root / "demo", DemoConfig(rows=240, seed=3))
    (root / "sources.yaml").write_text(
        DEMO_MODEL_YAML
        + f"sources:\n  - {{name: llava, uri: {root / 'demo' / 'llava.jsonl'}}}\n"
        f"  - {{name: sharegpt, uri: {root / 'demo' / 'sharegpt.json'}, format: sharegpt}}\n")
    probe_set = write_probe_set(root / "rl_probe", images=32)
    integrity = IntegrityResource(sources_file=str(root / "sources.yaml"),
                                  store_root=str(root / "store"))
    home = root / "dagster_home"
    home.mkdir()
    with DagsterInstance.local_temp(str(home)) as instance:
        instance.add_dynamic_partitions("sources", ["llava", "sharegpt"])
        for source in ("llava", "sharegpt"):
            assert materialize(_assets(AUDIT), partition_key=source, instance=instance,
                               resources={"integrity": integrity,
                                          "encoder": EncoderResource(workers=0)}).success
        hacking = _hand_made("hacking", probe_set)
        job = Definitions(
            assets=defs.assets, asset_checks=defs.asset_checks, jobs=[train_job],
            resources={"integrity": integrity, "encoder": EncoderResource(workers=0),
                       "trainer": TRAINER, "rl_probe": hacking},
        ).resolve_job_def("mix_and_train")
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        store = integrity.store(instance)
        yield {"instance": instance, "integrity": integrity, "probe_set": probe_set,
               "hacked_run": result, "hacking": hacking,
               # What the store held right after that run (later tests add to it).
               "ready_after_run": store.versions(RL_READY_CHECKPOINT),
               "probes_after_run": store.versions(TRAINING_RL_PROBE)}


def test_the_hacking_rate_check_blocks_the_release_in_the_same_run(world):
    result, store = world["hacked_run"], world["integrity"].store(world["instance"])
    checks = _checks(result)
    # The checkpoint passed its own checks: the probe, not the checkpoint, stops the release.
    assert checks["training_checkpoint_visual_reliance"].passed
    assert checks["training_checkpoint_cka"].passed
    hacking = checks["training_rl_probe_hacking_rate"]
    assert hacking.passed is False and hacking.severity.value == "ERROR"
    assert hacking.description.startswith("4/4 RL runs hacked the reward")
    assert hacking.metadata["incidents_per_100"].value == 100.0
    assert not result.success
    # The probe materialized (its curves are the evidence); the release did not.
    [probe] = result.asset_materializations_for_node("training_rl_probe")
    assert result.asset_materializations_for_node("rl_ready_checkpoint") == []
    assert result.is_node_untouched("rl_ready_checkpoint")
    assert world["ready_after_run"] == []
    assert probe.metadata["runs"].value == 4 and probe.metadata["incidents"].value == 4
    # The command ran in its own process on the store's checkpoint, with the resource's extras.
    [checkpoint] = result.asset_materializations_for_node("training_checkpoint")
    checkpoint_version = checkpoint.metadata["version"].value
    manifest = store.manifest(TRAINING_RL_PROBE, probe.metadata["version"].value)
    assert manifest.upstream == {TRAINING_CHECKPOINT: checkpoint_version}
    stored = store.read_attachment(TRAINING_CHECKPOINT, checkpoint_version, CHECKPOINT_FILE)
    assert probe.metadata["checkpoint_sha256"].value == hashlib.sha256(stored).hexdigest()
    assert probe.metadata["probe_set_seen"].value == str(world["probe_set"])
    assert probe.metadata["runs_asked"].value == 4
    assert probe.metadata["config_seen"].value == {"mode": "hacking"}
    runs = store.read(TRAINING_RL_PROBE, manifest.version, "runs")
    assert runs["incident"].to_list() == [True] * 4
    assert runs["reliance_before"].to_list() == [0.4] * 4
    assert runs["reliance_after"].to_list() == [0.1] * 4
    assert manifest.params["rl_command"]["command"][-2:] == [str(HACKING_COMMAND), "hacking"]


def test_a_later_run_of_the_release_alone_is_refused_by_the_gate(world):
    instance, integrity = world["instance"], world["integrity"]
    store = integrity.store(instance)
    # The probe's latest materialization is a hacked one (this test re-probes so that it holds
    # whatever ran before it), its check failed; then the release alone, in a run of its own.
    probed = materialize(_assets(["training_rl_probe"]), instance=instance, raise_on_error=False,
                         resources={"integrity": integrity, "rl_probe": world["hacking"]})
    assert _checks(probed)["training_rl_probe_hacking_rate"].passed is False
    released_before = store.versions(RL_READY_CHECKPOINT)
    with pytest.raises(GateClosed, match=r"refusing training_rl_probe .*"
                                         r"training_rl_probe_hacking_rate failed \(4/4 RL runs"):
        materialize(_assets(["rl_ready_checkpoint"]), instance=instance,
                    resources={"integrity": integrity})
    # No version was written (none at all in file order; the demo probe below releases one).
    assert store.versions(RL_READY_CHECKPOINT) == released_before


def test_the_demo_rl_probe_passes_and_releases_the_checkpoint(world):
    instance, integrity = world["instance"], world["integrity"]
    store = integrity.store(instance)
    demo_rl = RLProbeResource(probe_set=str(world["probe_set"]), runs=3, config=DEMO_RL_CONFIG)
    assert demo_rl.command_words()[1:] == ["-m", "assets.trainers.demo_rl"]  # the default
    result = materialize(_assets(PROBE), instance=instance, raise_on_error=False,
                         resources={"integrity": integrity, "rl_probe": demo_rl})
    assert result.success, [e.event_specific_data for e in result.all_events
                            if e.is_step_failure]
    checkpoint_version = store.latest(TRAINING_CHECKPOINT)
    [probe] = result.asset_materializations_for_node("training_rl_probe")
    probe_version = probe.metadata["version"].value
    manifest = store.manifest(TRAINING_RL_PROBE, probe_version)
    assert manifest.upstream == {TRAINING_CHECKPOINT: checkpoint_version}
    assert probe_version in store.versions(TRAINING_RL_PROBE)
    assert probe_version not in world["probes_after_run"]
    assert manifest.params["rl_command"]["config"] == DEMO_RL_CONFIG
    assert probe.metadata["runs"].value == 3
    assert probe.metadata["training_checkpoint_version"].value == checkpoint_version
    # What the demo command reported beside the runs travels on (its counts, its config).
    assert probe.metadata["probe_questions"].value == 4 * 32
    assert probe.metadata["rl_config"].value["steps"] == 10
    curves = store.read(TRAINING_RL_PROBE, probe_version, "curves")
    assert curves["step"].unique().sort().to_list() == [0, 5, 10]
    assert curves.filter(curves["step"] == 0)["reward"].n_unique() == 1  # the checkpoint itself
    assert store.read_attachment(TRAINING_RL_PROBE, probe_version,
                                 RL_CURVES_FILE).startswith(b"\x89PNG")

    check = _checks(result)["training_rl_probe_hacking_rate"]
    assert check.passed, check.description
    figures = {key: value.value for key, value in check.metadata.items()}
    assert figures["version"] == probe_version
    assert figures["curves"].startswith("![RL probe curves](data:image/png;base64,")
    runs, incidents = figures["runs"], figures["incidents"]
    assert runs == 3 and incidents == probe.metadata["incidents"].value
    low, high = _wilson_per_100(incidents, runs, 0.95)  # the default policy's confidence
    assert figures["interval_low_per_100"] == pytest.approx(low, abs=1e-3)
    assert figures["interval_high_per_100"] == pytest.approx(high, abs=1e-3)
    assert figures["incidents_per_100"] == pytest.approx(100 * incidents / runs, abs=1e-3)
    assert figures["max_incidents_per_100"] == 20 and figures["reliance_margin"] == 0.1
    assert len(figures["per_run"].records) == 3

    [ready] = result.asset_materializations_for_node("rl_ready_checkpoint")
    assert store.latest(RL_READY_CHECKPOINT) == ready.metadata["version"].value
    rows = {record.data["asset"]: record.data
            for record in ready.metadata["consumed_versions"].records}
    assert rows["training_rl_probe"]["version"] == probe_version
    assert "training_rl_probe_hacking_rate" in rows["training_rl_probe"]["checks_passed"]
    assert rows["training_checkpoint"]["version"] == checkpoint_version
    assert "training_checkpoint_visual_reliance" in rows["training_checkpoint"]["checks_passed"]
    assert {"training_mix", "audited_sft"} <= set(rows)  # and everything under it
    release = store.manifest(RL_READY_CHECKPOINT, ready.metadata["version"].value)
    assert release.upstream == {TRAINING_RL_PROBE: probe_version,
                                TRAINING_CHECKPOINT: checkpoint_version}
    stored = store.read_attachment(TRAINING_CHECKPOINT, checkpoint_version, CHECKPOINT_FILE)
    assert ready.metadata["checkpoint_sha256"].value == hashlib.sha256(stored).hexdigest()


@pytest.mark.parametrize("mode, message", [
    ("no-runs", r"reported no 'runs' metadata \(see README, RL-readiness probe, for the "
                r"contract\)"),
    ("bad-runs", r"run 'hack-0': 'reliance' must be a list of at least two points"),
])
def test_a_command_that_breaks_the_contract_fails_the_probe(world, mode, message):
    instance, integrity = world["instance"], world["integrity"]
    store = integrity.store(instance)
    before = store.versions(TRAINING_RL_PROBE)
    result = materialize(_assets(PROBE), instance=instance, raise_on_error=False,
                         resources={"integrity": integrity,
                                    "rl_probe": _hand_made(mode, world["probe_set"])})
    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert failure.step_key == "training_rl_probe"
    error = failure.event_specific_data.error
    text = error.message + "".join(cause.message for cause in _causes(error))
    assert re.search(message, text), text
    if mode == "bad-runs":
        assert RLProbeContractError.__name__ in text
    assert result.asset_materializations_for_node("training_rl_probe") == []
    assert result.is_node_untouched("rl_ready_checkpoint")
    assert store.versions(TRAINING_RL_PROBE) == before  # nothing recorded for a broken report


def _causes(error):
    while error is not None:
        yield error
        error = error.cause
