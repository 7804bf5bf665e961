"""Grounding, answer support and caption leakage with the shipped reference CLIP on real images."""

import hashlib
import json
import random

import polars as pl
import pytest
import torch

from demo.model import demo_encoder_config
from integrity.decide.audit import audit_rows
from demo.shapes import draw_shapes
from integrity.detect import score_pairs
from integrity.detect.grounding import score_grounding
from integrity.store.embedding_cache import EmbeddingCache
from integrity.detect.encoder import Encoder
from integrity.ingest import SourceConfig, ingest_source
from integrity.decide.policy import Policy, flag_rows
from tests.detect.conftest import make_raw

COLORS = ["red", "blue", "green", "yellow", "purple", "orange"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Encoder(demo_encoder_config(workers=0),
                  cache=EmbeddingCache(str(tmp_path_factory.mktemp("cache"))))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two images per color: two large circles on the left, in two layouts."""
    folder = tmp_path_factory.mktemp("images")
    found = {}
    for color in COLORS:
        for layout in (0, 1):
            path = folder / f"{color}{layout}.png"
            draw_shapes(color, "circle", 2, "left", "large", 128,
                        rng=random.Random(layout)).save(path)
            found[color, layout] = (str(path), hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def _row(images, color, answer, *, layout=0, caption=None,
         question="What color are the shapes?", row_id=None):
    uri, sha = images[color, layout]
    row = {"id": row_id or f"{color}{layout}-{answer}", "image": sha, "uri": uri,
           "qa": [(question, answer)]}
    if caption:
        row["caption"] = caption
    return row


def _labels(images) -> list[dict]:
    """Every color answered on both of its images: the source's own color paradigm."""
    return [_row(images, color, f"{color.capitalize()}.", layout=layout)
            for color in COLORS for layout in (0, 1)]


def _scored(rows, encoder) -> dict[str, dict]:
    pairs = score_pairs(make_raw(rows), encoder=encoder)
    return {row["example_id"]: row for row in pairs.iter_rows(named=True)}


def test_answer_support_ranks_the_pixels_answer_first(images, encoder):
    rows = _labels(images) + [
        _row(images, "red", "Blue.", caption="two blue circles on the left", row_id="leak"),
        {"id": "text", "qa": [("What color is the sky?", "Blue.")]},
    ]
    scored = _scored(rows, encoder)
    labels = [scored[f"{c}{layout}-{c.capitalize()}."] for c in COLORS for layout in (0, 1)]
    assert all(r["answer_support_prob"] > 0.5 and r["answer_support_rank"] == 1 for r in labels)
    assert all(r["answer_support_candidates"] == 6 for r in labels)
    leak = scored["leak"]
    assert leak["answer_support_prob"] < 0.1 and leak["answer_support_rank"] > 1
    assert leak["answer_support_claim"] == "blue" and leak["leak_claim"] == "blue"
    assert leak["leak_text_support"] == 1.0 and leak["leak_score"] > 0.9
    assert all(r["leak_score"] < 0.1 for r in labels)
    assert scored["text"]["answer_support_prob"] is None  # text-only: nothing to look at


def test_prose_answers_get_a_support_score_for_every_claim(images, encoder):
    """Prose answers never got an answer-support score, so leak_score was null for them."""
    rows = _labels(images) + [
        _row(images, color, f"The image shows two large {color} circles on the left. They are "
                            "evenly spaced.", question="Describe the image.",
             row_id=f"prose-{color}") for color in COLORS] + [
        _row(images, "red", "The image shows two large green circles on the left. They are "
                            "evenly spaced.", question="Describe the image.", row_id="wrong",
             caption="two large green circles on the left")]
    scored = _scored(rows, encoder)
    assert all(scored[f"prose-{c}"]["answer_support_prob"] > 0.5 for c in COLORS)
    wrong = scored["wrong"]
    assert wrong["answer_support_prob"] < 0.2 and wrong["answer_support_claim"] == "green"
    assert wrong["leak_score"] > 0.8


def test_grounding_margin_prefers_the_matching_image(pairs_of, images, encoder):
    rows = [_row(images, color, f"There are two large {color} circles on the left.",
                 question="Describe the image.") for color in COLORS]
    rows.append(_row(images, "red", "There are two large red circles on the left. "
                                    "They are blue.", question="Describe the image.",
                     row_id="half-wrong"))
    pairs = pairs_of(rows)
    grounding = score_grounding(pairs, encoder=encoder, negatives=5)
    margins = grounding["grounding_margin"].to_list()
    assert all(margin > 0 for margin in margins[:6])
    sentences = grounding["grounding_min_sentence_cos"].to_list()
    assert sentences[6] < sentences[0]  # the invented sentence is the weakest
    assert grounding["grounding_cos"].is_not_null().all()


def test_a_second_scoring_run_makes_no_model_calls(images, tmp_path):
    rows = _labels(images)
    config = demo_encoder_config(workers=0)
    first = score_pairs(make_raw(rows), encoder=Encoder(
        config, cache=EmbeddingCache(str(tmp_path / "cache"))))
    again = Encoder(config, cache=EmbeddingCache(str(tmp_path / "cache")))
    second = score_pairs(make_raw(rows), encoder=again)
    assert again.images_encoded == 0 and again.texts_encoded == 0
    assert first.equals(second)


def test_score_pairs_encodes_each_image_once_even_without_a_cache(images):
    uncached = Encoder(demo_encoder_config(workers=0))
    scored = score_pairs(make_raw(_labels(images)), encoder=uncached)
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

    rows = _labels(images) + [_row(images, c, f"{c.capitalize()}.", layout=1,
                                   question="Which color are the shapes?", row_id=f"{c}-again")
                              for c in COLORS]
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
            rows.append({**_row(images, color, f"{color.capitalize()}.", layout=layout,
                                row_id=f"{group}#chosen"), "pref_role": "chosen",
                         "pref_group": group})
            rows.append({**_row(images, color, f"{wrong[color].capitalize()}.", layout=layout,
                                row_id=f"{group}#rejected"), "pref_role": "rejected",
                         "pref_group": group})
    raw = make_raw(rows)
    pairs = score_pairs(raw, encoder=encoder)
    everything, _ = model_fit_auc(pairs)
    claimed, judged = model_fit_auc(pairs, raw)
    assert judged == len(rows) // 2
    assert claimed > 0.9 and everything < claimed - 0.2
