"""The demo VQA trainer: it reads LLaVA mixes, trains deterministically, writes a checkpoint that
loads with weights_only=True, measures how much the model looks at the image, and speaks Pipes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import torch

from demo.generate import DemoConfig, generate
from demo.trainer import (
    CHECKPOINT_FORMAT,
    TrainConfig,
    TrainerError,
    build_probe,
    evaluate,
    linear_cka,
    load_checkpoint,
    main,
    normalise_answer,
    read_mix,
    train,
)

REPO = Path(__file__).resolve().parents[2]
NO_FLAWS = dict(caption_derived_rate=0, blind_rate=0, preference_rate=0, contradiction_rate=0,
                broken_rate=0, exact_duplicate_rate=0, near_duplicate_rate=0)
# A few seconds per run on 2 cores: ~570 QA pairs, 4 epochs of 32, 30 probe images.
TINY = TrainConfig(epochs=4, batch_size=32, probe_images=30, seed=7, threads=2)
TIMINGS = ("train_seconds",)


def export_llava_mix(corpus: Path, out: Path, *, drop_images: bool = False) -> Path:
    """The corpus's llava.jsonl as a LLaVA json array with absolute image paths (what the
    training_mix export writes). Unparseable lines (the corpus's bad-json flaw) are left out;
    ``drop_images`` turns every record into a text-only one (same questions and answers)."""
    records = []
    for line in (corpus / "llava.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "image" in record:
            if drop_images:
                del record["image"]
                for turn in record["conversations"]:
                    turn["value"] = turn["value"].replace("<image>\n", "")
            else:
                record["image"] = str((corpus / record["image"]).resolve())
        records.append(record)
    out.write_text(json.dumps(records), encoding="utf-8")
    return out


def _scores(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in (*TIMINGS, "checkpoint_path",
                                                          "checkpoint_sha256")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    generate(out, DemoConfig(rows=300, seed=5, text_only_share=0.2, **NO_FLAWS))
    return out


@pytest.fixture(scope="module")
def clean_mix(corpus) -> Path:
    return export_llava_mix(corpus, corpus / "mix.json")


@pytest.fixture(scope="module")
def clean_run(clean_mix, tmp_path_factory) -> dict:
    return train(clean_mix, tmp_path_factory.mktemp("ckpt") / "clean.pt", TINY)


# --- reading the mix ----------------------------------------------------------------------------


def test_read_mix_takes_each_question_answer_pair_and_the_first_image(tmp_path):
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps([
        {"id": "a", "image": ["imgs/x.png", "imgs/y.png"], "conversations": [
            {"from": "human", "value": "<image>\nWhat color are the shapes?"},
            {"from": "gpt", "value": "Red."},
            {"from": "human", "value": "How many shapes are there?"},
            {"from": "gpt", "value": "Two."}]},
        {"id": "b", "conversations": [{"from": "human", "value": "What is 2 plus 3?"},
                                      {"from": "gpt", "value": "5."},
                                      {"from": "human", "value": "unanswered"}]},
    ]))
    pairs = read_mix(mix)
    assert [(p.answer, p.image) for p in pairs] == [
        ("Red.", str(tmp_path / "imgs/x.png")), ("Two.", str(tmp_path / "imgs/x.png")),
        ("5.", None)]
    assert len(read_mix(mix, max_rows=1)) == 2
    assert normalise_answer("  Top   Left! ") == "top left"


def test_a_malformed_mix_is_an_error_naming_file_and_record(tmp_path):
    mix = tmp_path / "bad.json"
    mix.write_text(json.dumps([{"id": "a", "conversations": []}, {"id": "b"}]))
    with pytest.raises(TrainerError, match=r"bad\.json: record 1 has no 'conversations'"):
        read_mix(mix)
    mix.write_text("[{")
    with pytest.raises(TrainerError, match="bad.json: not a JSON array"):
        read_mix(mix)


def test_linear_cka_is_one_for_a_rotation_and_low_for_noise():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=gen)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen))
    assert linear_cka(x, 3 * x @ rotation) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, torch.randn(200, 16, generator=gen)) < 0.3


# --- training ----------------------------------------------------------------------------------


def test_metrics_are_in_range_and_the_checkpoint_loads_with_weights_only(clean_run):
    m = clean_run
    for key in ("accuracy", "blind_accuracy", "sampled_accuracy", "blind_sampled_accuracy",
                "cka"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["visual_reliance"] == pytest.approx(m["accuracy"] - m["blind_accuracy"], abs=2e-4)
    assert set(m["per_attribute"]) == {"color", "shape", "count", "position"}
    assert m["train_examples"] == m["image_examples"] + m["text_only_examples"] > 400
    assert m["text_only_examples"] > 0 and m["skipped_long_answers"] > 0  # describe answers
    assert m["probe_questions"] == 4 * TINY.probe_images and m["image_size"] == 64
    assert m["steps"] == 4 * -(-m["train_examples"] // 32) and m["train_seconds"] > 0

    state = torch.load(m["checkpoint_path"], weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT
    assert len(state["answer_vocab"]) == m["answer_classes"]
    assert {"red", "circle", "two", "left"} <= set(state["answer_vocab"])
    model, state = load_checkpoint(m["checkpoint_path"])
    probe = build_probe(TINY.probe_images, seed=TINY.probe_seed, image_size=64)
    again = evaluate(model, probe, state["question_vocab"], state["answer_vocab"],
                     mean=(0.48145466, 0.4578275, 0.40821073),
                     std=(0.26862954, 0.26130258, 0.27577711))
    assert round(again["accuracy"], 4) == m["accuracy"]
    assert round(again["sampled_visual_reliance"], 4) == m["sampled_visual_reliance"]


def test_same_seed_same_metrics_through_the_cli(clean_mix, clean_run, tmp_path, capsys):
    args = ["--mix", str(clean_mix), "--out", str(tmp_path / "again.pt"),
            "--metrics-out", str(tmp_path / "metrics.json"),
            "--config", json.dumps(TINY.model_dump(include={"batch_size", "probe_images"})),
            "--epochs", "4", "--seed", "7", "--threads", "2"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "metrics.json").read_text())
    assert _scores(printed) == _scores(clean_run)


def test_trained_on_clean_image_rows_the_model_looks_at_the_image(clean_run):
    # Chance on the probe's four attributes is about 0.24; the reference CLIP sees them all.
    assert clean_run["accuracy"] >= 0.9
    assert clean_run["blind_accuracy"] <= 0.45
    assert clean_run["visual_reliance"] >= 0.5
    assert clean_run["sampled_visual_reliance"] >= 0.4


def test_text_only_training_leaves_no_visual_reliance(corpus, clean_run, tmp_path):
    mix = export_llava_mix(corpus, tmp_path / "blind.json", drop_images=True)
    m = train(mix, tmp_path / "blind.pt", TINY)
    assert m["image_examples"] == 0
    assert m["visual_reliance"] < clean_run["visual_reliance"] - 0.4
    assert m["sampled_visual_reliance"] < clean_run["sampled_visual_reliance"] - 0.3


def test_caption_derived_wrong_labels_lower_sampled_reliance(clean_run, tmp_path):
    corpus = tmp_path / "contaminated"
    generate(corpus, DemoConfig(rows=300, seed=5, text_only_share=0.2,
                                **{**NO_FLAWS, "caption_derived_rate": 0.8}))
    m = train(export_llava_mix(corpus, tmp_path / "mix.json"), tmp_path / "c.pt", TINY)
    # Wrong values are spread over the other values, so the top answer mostly survives; the
    # probability of the true answer (what sampling and RL see) does not.
    assert m["sampled_visual_reliance"] < clean_run["sampled_visual_reliance"] - 0.15
    assert m["sampled_accuracy"] < clean_run["sampled_accuracy"] - 0.15


def test_unreadable_images_are_skipped_and_counted(corpus, tmp_path):
    records = json.loads((corpus / "mix.json").read_text())[:40]
    first_image = next(r for r in records if "image" in r)
    first_image["image"] = str(tmp_path / "missing.png")
    (tmp_path / "mix.json").write_text(json.dumps(records))
    m = train(tmp_path / "mix.json", tmp_path / "x.pt",
              TINY.model_copy(update={"epochs": 1, "probe_images": 5}))
    assert m["unreadable_images"] == 1
    assert m["skipped_unreadable_image"] >= 1


# --- Pipes -------------------------------------------------------------------------------------


def test_pipes_round_trip_reports_metrics_and_checkpoint(clean_mix, tmp_path):
    out = tmp_path / "pipes.pt"
    overrides = {"epochs": 1, "batch_size": 64, "probe_images": 10, "seed": 1}

    @dg.asset(required_resource_keys={"pipes"})
    def demo_checkpoint(context):
        return context.resources.pipes.run(
            context=context, command=[sys.executable, "-m", "assets.trainers.demo_vqa"],
            extras={"mix_path": str(clean_mix), "out_path": str(out), "config": overrides},
            cwd=str(REPO),
        ).get_materialize_result()

    result = dg.materialize([demo_checkpoint],
                            resources={"pipes": dg.PipesSubprocessClient()})
    assert result.success
    (materialization,) = result.asset_materializations_for_node("demo_checkpoint")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["checkpoint_path"] == str(out) and out.is_file()
    assert 0 <= metadata["accuracy"] <= 1 and 0 <= metadata["cka"] <= 1
    assert metadata["visual_reliance"] == pytest.approx(
        metadata["accuracy"] - metadata["blind_accuracy"], abs=2e-4)
    assert metadata["probe_questions"] == 40 and metadata["seed"] == 1
    assert metadata["per_attribute"]["color"].keys() >= {"accuracy", "blind_accuracy"}


def test_the_pipes_script_refuses_to_run_outside_dagster():
    result = subprocess.run([sys.executable, "-m", "assets.trainers.demo_vqa"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "demo.trainer" in result.stderr
