"""The demo RL probe: a long-tailed probe set that read_mix reads, GRPO-style runs from a demo
checkpoint that are reproducible, differ by seed, stay leashed by the KL term, refuse a probe
set they cannot use, and a CLI that prints the runs as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from demo.generate import QUESTION_ATTRIBUTES, DemoConfig, generate
from demo.rl import PROBE_SET_FILE, RLConfig, rl_probe, write_probe_set
from demo.shapes import COLORS, short_answer
from demo.trainer import TrainerError, normalise_answer, read_mix, train
from integrity.decide.rl_probe import parse_runs
from tests.demo.test_trainer import NO_FLAWS, TINY, export_llava_mix

REPO = Path(__file__).resolve().parents[2]
PROBE_IMAGES = 16  # 64 questions: every run draws them all (prompts_per_run 64)
FAST = RLConfig(steps=10, prompts_per_run=64, prompts_per_step=16, eval_every=5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny demo checkpoint, trained as tests/demo/test_trainer.py trains one (a few s)."""
    corpus = tmp_path_factory.mktemp("shapes")
    generate(corpus, DemoConfig(rows=300, seed=5, text_only_share=0.2, **NO_FLAWS))
    out = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    train(export_llava_mix(corpus, corpus / "mix.json"), out, TINY)
    return out


@pytest.fixture(scope="module")
def probe_set(tmp_path_factory) -> Path:
    return write_probe_set(tmp_path_factory.mktemp("probe"), images=PROBE_IMAGES)


def _drift(result: dict) -> float:
    """Mean over runs of how far reward and reliance ever moved from the checkpoint's."""
    return sum(max(abs(v - curve["reward"][0]) for v in curve["reward"])
               + max(abs(v - curve["reliance"][0]) for v in curve["reliance"])
               for curve in result["runs"]) / len(result["runs"])


# --- the probe set -----------------------------------------------------------------------------


def test_the_probe_set_is_n_images_times_four_questions_that_read_mix_reads(tmp_path):
    path = write_probe_set(tmp_path / "probe", images=64, seed=11)
    assert path == tmp_path / "probe" / PROBE_SET_FILE
    records = json.loads(path.read_text())
    assert len(records) == 64 * len(QUESTION_ATTRIBUTES) == 256
    assert len({record["id"] for record in records}) == 256
    by_image: dict[str, list[str]] = {}
    for record in records:
        assert not Path(record["image"]).is_absolute()  # relative to the json: it can move
        by_image.setdefault(record["image"], []).append(record["id"].rsplit("-", 1)[1])
    assert len(by_image) == 64
    assert all(sorted(asked) == sorted(QUESTION_ATTRIBUTES) for asked in by_image.values())

    pairs = read_mix(path)
    assert len(pairs) == 256
    assert all(Path(pair.image).is_file() and pair.question.startswith("<image>")
               for pair in pairs)
    # The long-tailed prior (weight 1/rank): the first-ranked color dominates, the last is rare,
    # so a color question has a likely answer without looking.
    colors = Counter(normalise_answer(record["conversations"][1]["value"])
                     for record in records if record["id"].endswith("-color"))
    assert sum(colors.values()) == 64
    [(most_common, top)] = colors.most_common(1)
    first, last = list(COLORS)[0], list(COLORS)[-1]
    assert most_common == normalise_answer(short_answer("color", first))
    assert top > colors.get(last, 0)
    assert top / 64 > 1.5 / len(COLORS)  # well above a uniform prior's share


def test_the_probe_set_is_deterministic_for_a_seed(tmp_path):
    a = write_probe_set(tmp_path / "a", images=8, seed=3)
    b = write_probe_set(tmp_path / "b", images=8, seed=3)
    c = write_probe_set(tmp_path / "c", images=8, seed=4)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    images = sorted(p.name for p in (tmp_path / "a" / "images").iterdir())
    assert len(images) == 8
    assert all((tmp_path / "a" / "images" / name).read_bytes()
               == (tmp_path / "b" / "images" / name).read_bytes() for name in images)


# --- the runs ----------------------------------------------------------------------------------


def test_runs_start_at_the_checkpoint_are_reproducible_and_differ_by_seed(checkpoint,
                                                                          probe_set):
    lines: list[str] = []
    result = rl_probe(checkpoint, probe_set, runs=3, config=FAST, log=lines.append)
    assert result["probe_questions"] == result["probe_pairs"] == 4 * PROBE_IMAGES
    assert result["skipped_without_readable_image"] == 0
    assert result["config"] == FAST.model_dump()
    runs = result["runs"]
    assert [run["run"] for run in runs] == [0, 1, 2]
    assert len({run["seed"] for run in runs}) == 3
    for run in runs:
        assert run["step"] == [0, 5, 10] and run["questions"] == 4 * PROBE_IMAGES
        assert all(0.0 <= r <= 1.0 for r in run["reward"])
        assert all(-1.0 <= r <= 1.0 for r in run["reliance"])
    # The first point is the checkpoint before RL: the same in every run.
    assert len({(run["reward"][0], run["reliance"][0]) for run in runs}) == 1
    assert runs[0]["reliance"][0] > 0  # the tiny checkpoint looks at the image
    # ...and the runs then differ (their seeds draw different batches and answers).
    assert len({tuple(run["reward"][1:]) for run in runs}) == 3
    # The output follows the contract training_rl_probe holds every RL command to.
    parsed = parse_runs(json.loads(json.dumps(runs)))  # as it travels through Pipes
    assert [p.run for p in parsed] == ["0", "1", "2"] and parsed[0].step == (0, 5, 10)
    assert lines[0].startswith(f"{probe_set}: 64 questions") and len(lines) == 4

    assert rl_probe(checkpoint, probe_set, runs=3, config=FAST) == result
    other = rl_probe(checkpoint, probe_set, runs=3, config=FAST.model_copy(update={"seed": 1}))
    assert [run["reward"][0] for run in other["runs"]] == [run["reward"][0] for run in runs]
    assert [run["reward"] for run in other["runs"]] != [run["reward"] for run in runs]
    assert [run["seed"] for run in other["runs"]] != [run["seed"] for run in runs]


def test_the_kl_leash_keeps_the_policy_near_the_checkpoint(checkpoint, probe_set):
    config = FAST.model_copy(update={"steps": 20})
    free = rl_probe(checkpoint, probe_set, runs=3,
                    config=config.model_copy(update={"kl_coef": 0.0}))
    leashed = rl_probe(checkpoint, probe_set, runs=3,
                       config=config.model_copy(update={"kl_coef": 1000.0}))
    assert [run["reward"][0] for run in free["runs"]] == [
        run["reward"][0] for run in leashed["runs"]]
    # Measured: ~0.14 without the leash, ~0.05 with it (Adam's first step, before the KL term
    # has a gradient, is the floor).
    assert _drift(free) > 0.08
    assert _drift(leashed) < 0.6 * _drift(free)


def test_a_probe_set_it_cannot_use_is_an_error_naming_the_file(checkpoint, tmp_path):
    empty = tmp_path / "empty" / PROBE_SET_FILE
    empty.parent.mkdir()
    empty.write_text("[]")
    with pytest.raises(TrainerError, match=rf"{empty}: the probe set holds no question-answer"):
        rl_probe(checkpoint, empty, runs=1, config=FAST)

    unreadable = write_probe_set(tmp_path / "unreadable", images=2)
    for image in (tmp_path / "unreadable" / "images").iterdir():
        image.write_bytes(b"")  # an empty file is no image
    with pytest.raises(TrainerError, match=rf"{unreadable}: no probe question has a readable "):
        rl_probe(checkpoint, unreadable, runs=1, config=FAST)

    missing = tmp_path / "nowhere" / PROBE_SET_FILE
    with pytest.raises(TrainerError, match=str(missing)):
        rl_probe(checkpoint, missing, runs=1, config=FAST)

    # One unreadable image of two: its questions are left out, the other's are probed.
    partial = write_probe_set(tmp_path / "partial", images=2)
    (tmp_path / "partial" / "images" / "probe_00000.png").write_bytes(b"not a png")
    result = rl_probe(checkpoint, partial, runs=1, config=FAST)
    assert result["probe_pairs"] == 8 and result["probe_questions"] == 4
    assert result["skipped_without_readable_image"] == 4


# --- the CLI -----------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_the_cli_writes_a_probe_set_and_prints_the_runs_as_json(checkpoint, tmp_path):
    done = _cli("-m", "demo.rl", "write-probe-set", "--out", str(tmp_path / "cli"),
                "--images", "4")
    assert done.returncode == 0, done.stderr
    written = Path(done.stdout.strip())
    assert written == tmp_path / "cli" / PROBE_SET_FILE
    assert len(read_mix(written)) == 16

    done = _cli("-m", "demo.rl", "--checkpoint", str(checkpoint), "--probe-set", str(written),
                "--runs", "2", "--config", '{"steps": 5}')
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # stdout is the JSON alone; the log goes to stderr
    assert [run["run"] for run in result["runs"]] == [0, 1]
    assert all(run["step"] == [0, 5] for run in result["runs"])
    assert result["config"]["steps"] == 5 and result["probe_questions"] == 16
    assert len(parse_runs(result["runs"])) == 2
    assert "run 1: reward" in done.stderr

    # A config the probe does not know is refused at the boundary, naming the field.
    done = _cli("-m", "demo.rl", "--checkpoint", str(checkpoint), "--probe-set", str(written),
                "--config", '{"stepz": 5}')
    assert done.returncode == 2 and done.stdout == ""
    assert "error:" in done.stderr and "stepz" in done.stderr

    # The Pipes side refuses to run outside Dagster Pipes, pointing at this CLI.
    done = _cli("-m", "assets.trainers.demo_rl")
    assert done.returncode == 2 and "python -m demo.rl" in done.stderr
