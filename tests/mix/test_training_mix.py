"""integrity/mix/training_mix.py: balanced, ordered training mixes, their exports and the training_mix checks.

Inputs are built by hand (kept raw_sft rows + scored rows per source, mostly text like real
SFT corpora); exports are loaded by replays of the trainers' own loading rules (tests/loaders.py).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from integrity.mix.training_mix import (
    MIX_SCHEMA,
    MixError,
    MixInput,
    build_mix,
    curriculum_order_verdict,
    eval_overlap_verdict,
    export_llava,
    export_parquet,
    export_sharegpt,
    mix_summary,
    modality_band_verdict,
    traceable_verdict,
)
from integrity.decide.policy import CurriculumStage, MixPolicy
from integrity.ingest.schema import IMAGE_TOKEN, RAW_SFT_SCHEMA
from integrity.detect.pairs import qa_pairs
from tests import loaders


def make_source(name: str, *, images: int, texts: int, image_dir: Path | None = None,
                signals: bool = True, seed: int = 0) -> MixInput:
    """A source with ``images`` image-text and ``texts`` text rows, kept and scored.

    Every 5th image row has two images, every 7th row a system turn, every 3rd a second QA
    turn. Scored rows carry random grounding_margin / answer_support_prob for image rows
    (null for text rows, as the detectors leave them), or neither when ``signals`` is False.
    """
    rng = np.random.default_rng(seed)
    records = []
    for index in range(images + texts):
        is_image = index < images
        count = (2 if index % 5 == 4 else 1) if is_image else 0
        shas = [f"{name}-sha{index}-{k}" for k in range(count)]
        uris = [str((image_dir or Path("/data")) / name / f"{index}-{k}.png")
                for k in range(count)]
        turns = [{"role": "system", "content": "You are a careful assistant — précis, \"literal\"."}] * (index % 7 == 0)
        question = (f"What shape is in picture {index} of {name}?" if is_image
                    else f"What is {index} plus {index} in {name}?")
        turns += [{"role": "user", "content": f"{IMAGE_TOKEN}\n" * count + question},
                  {"role": "assistant", "content": f"Answer {index}."}]
        if index % 3 == 0:
            turns += [{"role": "user", "content": f"And why, for {index}?"},
                      {"role": "assistant", "content": "Because it is so."}]
        records.append({
            "example_id": f"{name}:{index}", "source": name, "origin_format": "llava",
            "row_index": index, "images": [f"{name}/{index}-{k}.png" for k in range(count)],
            "image_uris": uris, "image_sha256": shas, "turns": turns,
            "metadata": json.dumps({"n": index}), "pref_role": None, "pref_group": None,
            "modality": "image-text" if is_image else "text",
        })
    kept = pl.DataFrame(records, schema=RAW_SFT_SCHEMA)
    if image_dir is not None:
        for uri in kept["image_uris"].explode().drop_nulls():
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4), (len(uri) % 255, 0, 0)).save(uri)
    scored = kept.select("example_id", pairs=pl.lit(1, dtype=pl.Int32))
    if signals:
        is_image = kept["modality"] == "image-text"
        scored = scored.with_columns(
            grounding_margin=pl.when(is_image).then(pl.Series(rng.normal(0.05, 0.03,
                                                                          kept.height))),
            answer_support_prob=pl.when(is_image).then(pl.Series(rng.uniform(0, 1, kept.height))),
        )
    return MixInput(source=name, audited_version=f"v-{name}", kept=kept, scored=scored)


@pytest.fixture
def sources() -> list[MixInput]:
    # 165 rows, a third image-text: text dominates, as in real SFT corpora.
    return [make_source("alpha", images=20, texts=80, seed=1),
            make_source("beta", images=10, texts=30, seed=2),
            make_source("gamma", images=25, texts=0, seed=3)]


def kept_ids(sources: list[MixInput], modality: str) -> set[tuple[str, str]]:
    return {(item.audited_version, example_id) for item in sources
            for example_id in item.kept.filter(pl.col("modality") == modality)["example_id"]}


def mix_ids(mix: pl.DataFrame, modality: str) -> set[tuple[str, str]]:
    return set(mix.filter(pl.col("modality") == modality)
               .select("audited_version", "example_id").iter_rows())


# -- balance ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.1, 0.2, 0.35, 0.5, 0.7, 0.9])
def test_image_share_hits_the_target_keeping_the_scarce_modality_whole(sources, target):
    policy = MixPolicy(image_share=target, image_share_tolerance=0.02)
    mix = build_mix(sources, policy)
    images = mix.filter(pl.col("modality") == "image-text").height
    texts = mix.height - images
    # as near as integer counts allow: one row more or less of the trimmed side overshoots
    assert abs(images / mix.height - target) <= 1 / mix.height
    assert modality_band_verdict(mix, policy).passed
    scarce = "image-text" if target > 55 / 165 else "text"
    assert mix_ids(mix, scarce) == kept_ids(sources, scarce)
    assert (texts if scarce == "text" else images) == len(kept_ids(sources, scarce))
    assert mix["replica"].max() == 0  # no up-sampling without weights
    assert mix.schema == MIX_SCHEMA
    assert mix["position"].to_list() == list(range(mix.height))


def test_down_sampling_takes_the_same_share_of_every_source(sources):
    mix = build_mix(sources, MixPolicy(image_share=0.5))
    texts = Counter(mix.filter(pl.col("modality") == "text")["source"].to_list())
    # 55 image rows are all kept; 55 of 110 text rows: half of alpha's 80 and of beta's 30
    assert sum(texts.values()) == 55
    assert abs(texts["alpha"] - 40) <= 1 and abs(texts["beta"] - 15) <= 1


def test_same_seed_same_mix_other_seed_other_order(sources):
    policy = MixPolicy(image_share=0.5, seed=7)
    first, again = build_mix(sources, policy), build_mix(sources, policy)
    assert first.equals(again)
    assert build_mix(list(reversed(sources)), policy).equals(first)  # input order is irrelevant
    other = build_mix(sources, MixPolicy(image_share=0.5, seed=8))
    assert other.height == first.height
    assert other["example_id"].to_list() != first["example_id"].to_list()


def test_weights_replicate_rows_then_the_band_trims():
    vision = make_source("vision", images=10, texts=0)
    chat = make_source("chat", images=0, texts=100)
    mix = build_mix([vision, chat], MixPolicy(image_share=0.5, source_weights={"vision": 2.5}))
    copies = mix.filter(pl.col("source") == "vision").group_by("example_id").agg(
        pl.col("replica").sort())
    # 2.5: every row twice, a seeded half of them a third time; all 25 copies kept (scarce)
    assert sorted(copies["replica"].list.len().to_list()) == [2] * 5 + [3] * 5
    assert all(replicas == list(range(len(replicas))) for replicas in copies["replica"].to_list())
    assert mix_summary(mix)["upsampled_copies"] == 15
    assert mix.filter(pl.col("source") == "chat").height == 25
    assert modality_band_verdict(mix, MixPolicy(image_share=0.5)).passed


def test_copies_that_survive_the_band_are_numbered_from_zero():
    chat = make_source("chat", images=0, texts=20)
    vision = make_source("vision", images=10, texts=0)
    mix = build_mix([chat, vision], MixPolicy(image_share=0.5, source_weights={"chat": 3.0}))
    copies = mix.filter(pl.col("source") == "chat").group_by("example_id").agg(
        pl.col("replica").sort())
    assert copies["replica"].list.len().sum() == 10  # 60 copies trimmed to match 10 images
    assert all(replicas == list(range(len(replicas))) for replicas in copies["replica"].to_list())


def test_fractional_and_zero_weights_down_sample_a_source():
    halved, whole, dropped = (make_source(name, images=0, texts=40) for name in ("t1", "t2", "t3"))
    vision = make_source("vision", images=100, texts=0)
    policy = MixPolicy(image_share=0.5, source_weights={"t1": 0.5, "t3": 0.0})
    mix = build_mix([halved, whole, dropped, vision], policy)
    per_source = mix_summary(mix)["per_source"]
    assert per_source == {"t1": 20, "t2": 40, "vision": 60}
    assert mix.filter(pl.col("source") == "t1")["example_id"].n_unique() == 20


def test_weights_hold_among_sources_after_the_band():
    heavy, light = make_source("heavy", images=0, texts=50), make_source("light", images=0,
                                                                         texts=50)
    vision = make_source("vision", images=30, texts=0)
    mix = build_mix([heavy, light, vision],
                    MixPolicy(image_share=0.5, source_weights={"heavy": 2.0}))
    texts = Counter(mix.filter(pl.col("modality") == "text")["source"].to_list())
    assert sum(texts.values()) == 30
    assert abs(texts["heavy"] - 20) <= 1 and abs(texts["light"] - 10) <= 1


def test_a_missing_modality_builds_a_mix_the_band_check_fails():
    chat = make_source("chat", images=0, texts=30)
    policy = MixPolicy(image_share=0.5)
    mix = build_mix([chat], policy)
    assert mix.height == 30
    verdict = modality_band_verdict(mix, policy)
    assert not verdict.passed
    assert verdict.figures["image_share"] == 0.0 and verdict.figures["image_share_min"] == 0.45


def test_bad_inputs_raise_mix_errors(sources):
    with pytest.raises(ValueError, match="weights must be finite, from 0 to 100"):
        MixPolicy(source_weights={"alpha": -1.0})  # refused where the policy is read
    with pytest.raises(MixError, match="twice"):
        build_mix([sources[0], sources[0]], MixPolicy())
    text_only_stages = MixPolicy(curriculum=[CurriculumStage(name="v", modality="image-text")])
    with pytest.raises(MixError, match="no mix.curriculum stage takes 55 rows"):
        build_mix(sources, text_only_stages)
    assert build_mix([], MixPolicy()).schema == MIX_SCHEMA


# -- curriculum -------------------------------------------------------------------------------


def test_curriculum_stages_follow_difficulty_and_order(sources):
    policy = MixPolicy(image_share=0.5)
    mix = build_mix(sources, policy)
    assert mix["stage_index"].diff().drop_nulls().min() >= 0
    by_stage = {stage: frame for (stage,), frame in mix.group_by("stage")}
    assert set(by_stage["text_warmup"]["modality"]) == {"text"}
    assert by_stage["easy_visual"]["difficulty"].max() <= 0.5
    assert by_stage["hard_visual"]["difficulty"].min() > 0.5
    assert mix.filter(pl.col("modality") == "text")["difficulty"].unique().to_list() == [0.0]
    hard = by_stage["hard_visual"].sort("position")["difficulty"].to_list()
    assert len(hard) > 5 and hard != sorted(hard) and hard != sorted(hard, reverse=True)
    verdict = curriculum_order_verdict(mix, policy)
    assert verdict.passed, verdict.description
    assert mix_summary(mix)["per_stage"] == {
        name: by_stage[name].height for name in ("text_warmup", "easy_visual", "hard_visual")}


def test_difficulty_is_one_minus_the_mean_percentile_of_both_signals():
    item = make_source("s", images=4, texts=1)
    scored = item.scored.with_columns(
        grounding_margin=pl.Series([0.4, 0.1, 0.3, 0.2, None]),
        answer_support_prob=pl.Series([0.9, 0.2, 0.7, 0.6, None]),
    )
    mix = build_mix([MixInput("s", "v", item.kept, scored)], MixPolicy(image_share=0.8))
    difficulty = dict(mix.select("example_id", "difficulty").iter_rows())
    # ranks 4,1,3,2 in both signals -> percentiles (r - 0.5) / 4 -> difficulty 1 - p
    assert difficulty == pytest.approx({"s:0": 0.125, "s:1": 0.875, "s:2": 0.375,
                                        "s:3": 0.625, "s:4": 0.0})


def test_without_model_signals_every_image_row_is_of_middling_difficulty():
    item = make_source("plain", images=12, texts=12, signals=False)
    policy = MixPolicy(image_share=0.5)
    mix = build_mix([item], policy)
    images = mix.filter(pl.col("modality") == "image-text")
    assert images["difficulty"].unique().to_list() == [0.5]
    assert set(images["stage"]) == {"easy_visual"}
    assert curriculum_order_verdict(mix, policy).passed


# -- verdicts fail on broken mixes -------------------------------------------------------------


def test_curriculum_verdict_fails_on_a_shuffled_or_misassigned_mix(sources):
    policy = MixPolicy(image_share=0.5)
    mix = build_mix(sources, policy)
    reversed_order = mix.with_columns(position=mix.height - 1 - pl.col("position"))
    verdict = curriculum_order_verdict(reversed_order, policy)
    assert not verdict.passed and verdict.figures["stage_reversals"] >= 2
    moved = mix.with_columns(stage_index=pl.when(pl.col("position") == 0).then(2)
                                   .otherwise("stage_index").cast(pl.Int32))
    verdict = curriculum_order_verdict(moved, policy)
    assert not verdict.passed and verdict.figures["misplaced_rows"] == 1
    renamed = mix.with_columns(stage=pl.when(pl.col("position") == 0).then(pl.lit("other"))
                               .otherwise("stage"))
    assert curriculum_order_verdict(renamed, policy).figures["misplaced_rows"] == 1


def test_band_verdict_fails_when_the_band_is_dropped(sources):
    policy = MixPolicy(image_share=0.5)
    unbalanced = pl.concat([build_mix(sources, policy),
                            build_mix(sources, MixPolicy(image_share=0.1))])
    verdict = modality_band_verdict(unbalanced, policy)
    assert not verdict.passed
    assert verdict.figures["image_share"] < verdict.figures["image_share_min"]
    assert not modality_band_verdict(pl.DataFrame(schema=MIX_SCHEMA), policy).passed


def test_traceable_verdict_finds_a_row_not_kept(sources):
    mix = build_mix(sources, MixPolicy(image_share=0.5))
    by_version = {item.audited_version: set(item.kept["example_id"]) for item in sources}
    frame = pl.concat([item.kept.select("example_id", audited_version=pl.lit(
        item.audited_version)) for item in sources])
    assert traceable_verdict(mix, by_version).passed
    assert traceable_verdict(mix, frame).passed
    stray = mix.with_columns(example_id=pl.when(pl.col("position") == 3).then(pl.lit("ghost"))
                             .otherwise("example_id"))
    verdict = traceable_verdict(stray, by_version)
    assert not verdict.passed and verdict.figures["untraceable_rows"] == 1
    # the id exists, but under another audited version: not traceable either
    moved = mix.with_columns(audited_version=pl.when(pl.col("source") == "beta")
                             .then(pl.lit("v-alpha")).otherwise("audited_version"))
    assert not traceable_verdict(moved, frame).passed


def test_eval_overlap_verdict_keys_like_the_duplicates_detector(sources):
    mix = build_mix(sources, MixPolicy(image_share=0.5))
    assert eval_overlap_verdict(mix, {"unseen-sha"}, {"what is the capital"}).passed
    image_row = mix.filter(pl.col("modality") == "image-text").row(0, named=True)
    verdict = eval_overlap_verdict(mix, {image_row["image_sha256"][-1]}, set())
    assert not verdict.passed and verdict.figures["image_overlap_rows"] >= 1
    # an eval set asking the same question with other case and punctuation
    text_row = mix.filter(pl.col("modality") == "text").row(0, named=True)
    user = next(turn["content"] for turn in text_row["turns"] if turn["role"] == "user")
    eval_set = pl.DataFrame([{**text_row, "turns": [
        {"role": "user", "content": user.upper().replace("?", " ??")},
        {"role": "assistant", "content": "x"}]}], schema=RAW_SFT_SCHEMA)
    verdict = eval_overlap_verdict(mix, set(), set(qa_pairs(eval_set)["question_norm"]))
    assert not verdict.passed
    copies = mix.filter(pl.col("example_id") == text_row["example_id"]).height
    assert verdict.figures["question_overlap_rows"] == copies


# -- exports, read back as the trainers read them ---------------------------------------------


@pytest.fixture
def mix_with_images(tmp_path) -> pl.DataFrame:
    images = tmp_path / "images"
    return build_mix([make_source("alpha", images=20, texts=60, image_dir=images, seed=1),
                      make_source("beta", images=8, texts=10, image_dir=images, seed=2)],
                     MixPolicy(image_share=0.5, source_weights={"beta": 1.5}))


def test_llava_export_loads_in_llavas_own_loader(mix_with_images, tmp_path):
    """LLaVA-1.5's loader raised KeyError: 'system' on a system turn and TypeError on a list of
    images (35 of 240 rows of the demo): system text is folded into the first human turn and
    rows with several images are left out, counted."""
    mix = mix_with_images
    export = export_llava(mix, tmp_path / "out" / "llava.json")
    items = json.loads(export.path.read_text())
    loaded = loaders.llava_v1_5(items, image_folder=tmp_path / "elsewhere")
    single = mix.filter(pl.col("image_uris").list.len() <= 1)
    several = mix.height - single.height
    assert several > 0 and export.left_out == {"multi_image": several}
    assert export.rows == len(loaded) == single.height
    assert [item["id"] for item in loaded] == single["example_id"].to_list()
    assert [item["images"] for item in loaded] == single["image_uris"].to_list()
    assert all(turn["from"] in ("human", "gpt") for item in items
               for turn in item["conversations"])
    with_system = [(item, turns) for item, turns in zip(items, single["turns"], strict=True)
                   if turns[0]["role"] == "system"]
    assert with_system
    for item, turns in with_system:  # the system text leads the first human turn
        first = item["conversations"][0]["value"]
        assert first == turns[0]["content"] + "\n\n" + turns[1]["content"]
        assert [turn["value"] for turn in item["conversations"][1:]] == \
            [turn["content"] for turn in turns[2:]]


def test_llava_export_as_image_lists_loads_in_llava_onevision(mix_with_images, tmp_path):
    export = export_llava(mix_with_images, tmp_path / "llava.json", multi_image="list")
    items = json.loads(export.path.read_text())
    loaded = loaders.llava_onevision(items, image_folder=tmp_path / "elsewhere")
    assert export.rows == len(loaded) == mix_with_images.height and export.left_out == {}
    assert [item["images"] for item in loaded] == mix_with_images["image_uris"].to_list()
    assert any(isinstance(item.get("image"), list) for item in items)


def test_the_replayed_llava_loader_refuses_what_llava_refuses(tmp_path):
    """The replay is only worth what it rejects: the old export's rows break it as they broke
    LLaVA."""
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    system_row = {"id": "s", "conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello"}]}
    two_images = {"id": "m", "image": [str(image), str(image)], "conversations": [
        {"from": "human", "value": "<image>\n<image>\nSame?"}, {"from": "gpt", "value": "Yes"}]}
    with pytest.raises(KeyError, match="system"):
        loaders.llava_v1_5([system_row], tmp_path)
    with pytest.raises(TypeError):
        loaders.llava_v1_5([two_images], tmp_path)
    with pytest.raises(AssertionError):  # a token with no image to fill it
        loaders.llava_v1_5([{k: v for k, v in two_images.items() if k != "image"}], tmp_path)


def test_sharegpt_export_loads_in_llamafactorys_converter(mix_with_images, tmp_path):
    mix = mix_with_images
    dataset_dir = tmp_path / "data"
    dataset_dir.mkdir()
    (dataset_dir / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "o.json"}}))
    export = export_sharegpt(mix, dataset_dir, "sft_mix")
    data, info = export.files
    assert data == dataset_dir / "sft_mix.json" and info == dataset_dir / "dataset_info.json"
    assert export.rows == mix.height and export.left_out == {}
    assert set(json.loads(info.read_text())) == {"other", "sft_mix"}
    read = loaders.llamafactory_sharegpt(dataset_dir, "sft_mix")
    assert [item["turns"] for item in read] == mix["turns"].to_list()
    assert [item["images"] for item in read] == mix["image_uris"].to_list()


def test_parquet_export_round_trips(mix_with_images, tmp_path):
    path = export_parquet(mix_with_images.reverse(), tmp_path / "mix.parquet")
    assert pl.read_parquet(path).equals(mix_with_images)


def test_mix_summary_counts(sources):
    mix = build_mix(sources, MixPolicy(image_share=0.2, source_weights={"beta": 2.0}))
    summary = mix_summary(mix)
    assert summary["rows"] == mix.height == sum(summary["per_source"].values())
    assert summary["per_modality"]["text"] == 80 + 60  # text is scarce here: all kept
    assert summary["image_share"] == pytest.approx(summary["per_modality"]["image-text"]
                                                   / mix.height)
    assert summary["upsampled_copies"] == mix.filter(pl.col("replica") > 0).height > 0
    assert summary["audited_versions"] == {"alpha": "v-alpha", "beta": "v-beta",
                                           "gamma": "v-gamma"}
    assert sum(summary["per_stage"].values()) == mix.height
