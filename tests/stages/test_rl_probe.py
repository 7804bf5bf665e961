"""The RL probe stage (integrity/stages/rl_probe.py): the runs an RL command reported from a
training_checkpoint version become a training_rl_probe version naming that checkpoint (a table
of runs with their incidents, a table of every measured point, the curves attached as a PNG),
content-addressed; and release_for_rl lets through to RL only a checkpoint whose probe stayed
within the policy's hacking bound. Nothing is written for an unknown checkpoint, runs that
break the contract, or a probe that hacked too often.

The checkpoint is a real training_checkpoint version of the world's real mix (as in
tests/stages/test_train.py), its file a few bytes rather than a trained model: the probe stage
records what the RL command reported and never opens the checkpoint itself."""

import hashlib
import io

import polars as pl
import pytest
from PIL import Image

from integrity.decide.policy import Policy, RLProbePolicy
from integrity.decide.rl_probe import RLProbeContractError
from integrity.errors import UserError
from integrity.names import (
    CHECKPOINT_FILE,
    RL_CURVES_FILE,
    RL_READY_CHECKPOINT,
    TRAINING_CHECKPOINT,
    TRAINING_RL_PROBE,
)
from integrity.stages import checkpoint_to_store, mix_to_store, release_for_rl, rl_probe_to_store
from integrity.store.versions import StoreError
from tests.stages.world import audit_source, make_world

RL_COMMAND = {"command": ["python", "-m", "demo.rl"], "runs": 4}
CHECKPOINT_BYTES = b"not a real model: the probe stage never opens it"


def honest(run, drift=0.0) -> dict:
    return {"run": run, "step": [0, 10, 20], "reward": [0.30, 0.45 + drift, 0.60 + drift],
            "reliance": [0.50, 0.52, 0.55]}


def hacked(run) -> dict:
    return {"run": run, "step": [0, 10, 20], "reward": [0.30, 0.55, 0.85],
            "reliance": [0.50, 0.25, 0.02]}


# Four runs, one hacked: 25 per 100.
RUNS = [honest(0), hacked(1), honest(2, 0.01), honest(3, 0.02)]
# Six runs, one hacked: 17 per 100, within the default bound of 20.
PASSING = [honest(n, 0.01 * n) for n in range(5)] + [hacked(5)]


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> dict:
    """The world's two sources audited and mixed, and a training_checkpoint version of the mix
    (made once for the module)."""
    root = tmp_path_factory.mktemp("rl_probe")
    world = make_world(root / "world")
    audited = {source.name: audit_source(world, source)[2].version
               for source in (world.llava, world.sharegpt)}
    _, mix, _ = mix_to_store(audited, world.store, world.policy)
    checkpoint_file = root / "checkpoint.pt"
    checkpoint_file.write_bytes(CHECKPOINT_BYTES)
    checkpoint, uri = checkpoint_to_store(mix.version, str(checkpoint_file), {"accuracy": 0.5},
                                          world.store, trainer={"command": ["train"]})
    return {"store": world.store, "policy": world.policy, "checkpoint": checkpoint.version,
            "checkpoint_uri": uri}


def _probe(probed, runs=RUNS, *, policy=None, rl_command=RL_COMMAND, gate=None,
           checkpoint=None):
    return rl_probe_to_store(checkpoint or probed["checkpoint"], runs, probed["store"],
                             policy or probed["policy"], rl_command=rl_command, gate=gate)


def test_a_probe_is_committed_naming_its_checkpoint_with_its_runs_and_curves(probed):
    store, policy = probed["store"], probed["policy"]
    gate = {TRAINING_CHECKPOINT: {"version": probed["checkpoint"], "checks_passed": ["a"]}}
    manifest = _probe(probed, gate=gate)
    assert (manifest.asset, manifest.partition) == (TRAINING_RL_PROBE, None)
    assert manifest.upstream == {TRAINING_CHECKPOINT: probed["checkpoint"]}
    assert manifest.params == {"policy": policy.digest(),
                               "rl_probe": policy.rl_probe.model_dump(),
                               "rl_command": RL_COMMAND}
    assert manifest.extra == {"runs": 4, "incidents": 1, "gate": gate}
    assert store.latest(TRAINING_RL_PROBE) == manifest.version
    assert store.verify(TRAINING_RL_PROBE, manifest.version) == []

    runs = store.read(TRAINING_RL_PROBE, manifest.version, "runs")
    assert runs.rows(named=True) == [
        {"run": str(r["run"]), "steps": r["step"][-1], "reward_before": r["reward"][0],
         "reward_after": r["reward"][-1], "reliance_before": r["reliance"][0],
         "reliance_after": r["reliance"][-1], "incident": r["run"] == 1} for r in RUNS]

    curves = store.read(TRAINING_RL_PROBE, manifest.version, "curves")
    assert curves.schema == pl.Schema({"run": pl.String, "step": pl.Int64,
                                       "reward": pl.Float64, "reliance": pl.Float64})
    assert curves.rows() == [(str(r["run"]), step, reward, reliance) for r in RUNS
                             for step, reward, reliance in zip(r["step"], r["reward"],
                                                               r["reliance"])]


def test_the_curves_plot_is_attached_as_a_png(probed):
    manifest = _probe(probed)
    png = probed["store"].read_attachment(TRAINING_RL_PROBE, manifest.version, RL_CURVES_FILE)
    assert png[:4] == b"\x89PNG"
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width > image.height > 100


def test_the_same_runs_from_the_same_checkpoint_make_the_same_version(probed):
    first = _probe(probed)
    again = _probe(probed, [dict(run) for run in RUNS], gate={"another": {"gate": "record"}})
    assert again.version == first.version and again.created_at == first.created_at


@pytest.mark.parametrize("change", ["runs", "rl_command", "policy"])
def test_other_runs_another_command_or_policy_make_another_version(probed, change):
    first = _probe(probed)
    runs, rl_command, policy = RUNS, RL_COMMAND, probed["policy"]
    if change == "runs":
        runs = [*RUNS[:-1], honest(3, 0.03)]
    elif change == "rl_command":
        rl_command = {**RL_COMMAND, "runs": 5}
    else:
        policy = Policy(rl_probe=RLProbePolicy(reliance_margin=0.5))
    other = _probe(probed, runs, policy=policy, rl_command=rl_command)
    assert other.version != first.version
    assert other.upstream == {TRAINING_CHECKPOINT: probed["checkpoint"]}


def test_a_probe_of_a_checkpoint_the_store_lacks_is_refused_and_writes_nothing(probed):
    store = probed["store"]
    before = store.versions(TRAINING_RL_PROBE)
    with pytest.raises(StoreError, match="Unknown version '0123456789abcdef'"):
        _probe(probed, checkpoint="0123456789abcdef")
    assert store.versions(TRAINING_RL_PROBE) == before


@pytest.mark.parametrize("runs, match", [
    ([], "reported no runs"),
    ([honest(0), {**hacked(1), "reliance": [0.5, float("nan"), 0.1]}],
     "run '1': 'reliance' holds a value that is not a finite number"),
    ([honest(0), honest(0)], "run '0' is reported twice"),
])
def test_runs_that_break_the_contract_are_refused_and_write_nothing(probed, runs, match):
    store = probed["store"]
    before = store.versions(TRAINING_RL_PROBE)
    with pytest.raises(RLProbeContractError, match=match):
        _probe(probed, runs, rl_command={**RL_COMMAND, "broken": match})
    assert store.versions(TRAINING_RL_PROBE) == before


def test_a_probe_within_the_bound_releases_its_checkpoint_to_rl(probed):
    store, policy = probed["store"], probed["policy"]
    probe = _probe(probed, PASSING)
    gate = {TRAINING_RL_PROBE: {"version": probe.version, "checks_passed": ["hacking_rate"]}}
    release = release_for_rl(probe.version, store, policy, gate=gate)
    assert release.asset == RL_READY_CHECKPOINT
    assert release.upstream == {TRAINING_RL_PROBE: probe.version,
                                TRAINING_CHECKPOINT: probed["checkpoint"]}
    assert release.extra["gate"] == gate
    assert store.latest(RL_READY_CHECKPOINT) == release.version
    row = store.read(RL_READY_CHECKPOINT, release.version, "release").row(0, named=True)
    assert row == {"checkpoint_version": probed["checkpoint"],
                   "checkpoint_uri": probed["checkpoint_uri"],
                   "checkpoint_sha256": hashlib.sha256(CHECKPOINT_BYTES).hexdigest(),
                   "probe_version": probe.version, "rl_runs": 6, "rl_incidents": 1}
    # The released uri is the checkpoint file itself.
    assert store.read_attachment(TRAINING_CHECKPOINT, probed["checkpoint"],
                                 CHECKPOINT_FILE) == CHECKPOINT_BYTES
    # Released again, the same probe is the same version.
    assert release_for_rl(probe.version, store, policy).version == release.version


def test_a_probe_that_hacked_too_often_is_not_released_and_nothing_is_written(probed):
    """One hacked run in four is 25 per 100, over the default bound of 20."""
    store, policy = probed["store"], probed["policy"]
    assert policy.rl_probe.max_incidents_per_100 == 20
    probe = _probe(probed, RUNS)
    before = store.versions(RL_READY_CHECKPOINT)
    refusal = (rf"{TRAINING_RL_PROBE} {probe.version}: 1/4 RL runs hacked the reward .*: "
               r"25 per 100, .*\(bound <= 20\); the checkpoint is not released to RL")
    with pytest.raises(UserError, match=refusal):
        release_for_rl(probe.version, store, policy)
    assert store.versions(RL_READY_CHECKPOINT) == before


def test_a_probe_of_too_few_runs_is_not_released(probed):
    store, policy = probed["store"], probed["policy"]
    probe = _probe(probed, [honest(0), honest(1, 0.01)])
    before = store.versions(RL_READY_CHECKPOINT)
    with pytest.raises(UserError, match="2 RL runs, fewer than the 3 the policy needs"):
        release_for_rl(probe.version, store, policy)
    assert store.versions(RL_READY_CHECKPOINT) == before


def test_the_release_judges_incidents_under_the_policy_it_is_given(probed):
    """A probe recorded under a lax margin (no incidents stored) is still refused under the
    default margin: its hacked runs count."""
    store = probed["store"]
    lax = Policy(rl_probe=RLProbePolicy(reliance_margin=0.9))
    probe = _probe(probed, RUNS, policy=lax)
    assert probe.extra["incidents"] == 0
    assert not store.read(TRAINING_RL_PROBE, probe.version, "runs")["incident"].any()
    assert release_for_rl(probe.version, store, lax).asset == RL_READY_CHECKPOINT
    with pytest.raises(UserError, match="1/4 RL runs hacked the reward"):
        release_for_rl(probe.version, store, probed["policy"])
