"""Scoring a source with the model: score_pairs' model calls and caching, caption-derived prose
flagged end to end from a LLaVA file, and the model-fit guard on grounding's shuffled pairs."""

import json
import random

import polars as pl

from demo.model import demo_encoder_config
from integrity.decide.audit import audit_rows
from demo.shapes import draw_shapes
from integrity.detect import score_pairs
from integrity.store.embedding_cache import EmbeddingCache
from integrity.detect.encoder import Encoder
from integrity.ingest import SourceConfig, ingest_source
from integrity.decide.policy import Policy, flag_rows
from tests.detect.conftest import COLORS, color_labels, make_raw, shape_row


def test_a_second_scoring_run_makes_no_model_calls(images, tmp_path):
    rows = color_labels(images)
    config = demo_encoder_config(workers=0)
    first = score_pairs(make_raw(rows), encoder=Encoder(
        config, cache=EmbeddingCache(str(tmp_path / "cache"))))
    again = Encoder(config, cache=EmbeddingCache(str(tmp_path / "cache")))
    second = score_pairs(make_raw(rows), encoder=again)
    assert again.images_encoded == 0 and again.texts_encoded == 0
    assert first.equals(second)


def test_score_pairs_encodes_each_image_once_even_without_a_cache(images):
    uncached = Encoder(demo_encoder_config(workers=0))
    scored = score_pairs(make_raw(color_labels(images)), encoder=uncached)
    assert uncached.images_encoded == 2 * len(COLORS)
    assert scored["answer_support_rank"].to_list() == [1] * 2 * len(COLORS)


def test_llava_prose_written_from_a_metadata_caption_is_flagged_only_where_pixels_disagree(
        tmp_path, encoder):
    """A LLaVA-format file: VQA rows, and detail answers that repeat the caption kept in each
    record's metadata (as LLaVA's GPT-4 answers repeat COCO captions). Over images that do not
    show what the caption says, the prose is caption-derived; over images that do, it is kept."""
    folder = tmp_path / "llava"
    (folder / "images").mkdir(parents=True)
    records = []
    for index, color in enumerate(COLORS * 3):
        name = f"images/vqa{index}.png"
        draw_shapes(color, ("circle", "square", "triangle")[index % 3], 2, "left", "large", 128,
                    rng=random.Random(index)).save(folder / name)
        records.append({"id": f"vqa{index}", "image": name, "conversations": [
            {"from": "human", "value": "<image>\nWhat color are the shapes?"},
            {"from": "gpt", "value": f"{color.capitalize()}."}]})
    for index, (pixels, said) in enumerate([("red", "blue"), ("green", "yellow"),
                                            ("purple", "orange"), ("blue", "blue"),
                                            ("yellow", "yellow"), ("orange", "orange")]):
        name = f"images/detail{index}.png"
        draw_shapes(pixels, "square", 3, "right", "large", 128,
                    rng=random.Random(100 + index)).save(folder / name)
        caption = f"Three large {said} squares on the right of a white canvas."
        records.append({
            "id": f"detail{index}", "image": name,
            "conversations": [
                {"from": "human", "value": "<image>\nDescribe the image in detail."},
                {"from": "gpt", "value": f"The picture shows three large {said} squares placed "
                                         "on the right side of a white canvas. They are evenly "
                                         "spaced."}],
            "meta": {"coco": {"captions": [caption]}}})
    (folder / "data.json").write_text(json.dumps(records))
    result = ingest_source(SourceConfig(name="llava", uri=str(folder / "data.json")))
    assert result.quarantine.is_empty()
    pairs = score_pairs(result.accepted, encoder=encoder)
    flags = dict(flag_rows(pairs, Policy()).select("example_id", "caption_derived").iter_rows())
    assert [flags[f"detail{i}"] for i in range(6)] == [True, True, True, False, False, False]
    assert not any(flags[f"vqa{i}"] for i in range(18))
    verdicts = dict(audit_rows(pairs, Policy(), rows_in=result.accepted.height, quarantined=0)
                    .verdicts.select("example_id", "verdict").iter_rows())
    assert [verdicts[f"detail{i}"] for i in range(6)] == ["drop"] * 3 + ["keep"] * 3
    weakest = pl.DataFrame(pairs).filter(pl.col("example_id") == "detail0")
    assert weakest["answer_support_claim"].item() == "blue"


def test_the_model_fit_guard_fails_a_model_that_cannot_tell_matched_from_shuffled(images,
                                                                                 encoder):
    """The demo's shapes CLIP scored any sources file silently; on data it does not fit, the
    grounding check blocked a correct source with no hint that the model was the cause."""
    from integrity.decide.policy import model_fit_auc, model_fit_verdict

    rows = color_labels(images) + [
        shape_row(images, c, f"{c.capitalize()}.", layout=1,
                  question="Which color are the shapes?", row_id=f"{c}-again") for c in COLORS]
    fitted = score_pairs(make_raw(rows), encoder=encoder)
    auc, pairs = model_fit_auc(fitted)
    assert pairs == len(rows) and auc > 0.9
    assert model_fit_verdict(auc, pairs, encoder.model_id, "demo", Policy()).passed

    random_model = Encoder(demo_encoder_config(pretrained=None, workers=0))
    auc, pairs = model_fit_auc(score_pairs(make_raw(rows), encoder=random_model))
    verdict = model_fit_verdict(auc, pairs, random_model.model_id, "demo", Policy())
    assert not verdict.passed and auc < 0.75
    assert verdict.description.startswith(f"{random_model.model_id} cannot tell matched from "
                                          "shuffled image-answer pairs on source demo: AUC 0.")


def test_the_model_fit_leaves_out_answers_nobody_claims_are_right(images, encoder):
    """A preference source's rejected answers are wrong on purpose: the demo's own dpo file
    failed the fit (AUC 0.61) until they were left out (chosen alone: 0.93)."""
    from integrity.decide.policy import model_fit_auc

    wrong = {color: COLORS[(index + 1) % len(COLORS)] for index, color in enumerate(COLORS)}
    rows = []
    for color in COLORS:
        for layout in (0, 1):
            group = f"{color}{layout}"
            rows.append({**shape_row(images, color, f"{color.capitalize()}.", layout=layout,
                                     row_id=f"{group}#chosen"), "pref_role": "chosen",
                         "pref_group": group})
            rows.append({**shape_row(images, color, f"{wrong[color].capitalize()}.",
                                     layout=layout, row_id=f"{group}#rejected"),
                         "pref_role": "rejected", "pref_group": group})
    raw = make_raw(rows)
    pairs = score_pairs(raw, encoder=encoder)
    everything, _ = model_fit_auc(pairs)
    claimed, judged = model_fit_auc(pairs, raw)
    assert judged == len(rows) // 2
    assert claimed > 0.9 and everything < claimed - 0.2
