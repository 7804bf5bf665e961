"""The sources file (integrity/ingest/sources.py): paths resolved against the file, storage options
and models inherited by each source, eval sets, image roots, which model scores a source, and a
clear error naming the file and the bad key for every bad file."""

from __future__ import annotations

import pytest

from integrity.errors import UserError
from integrity.ingest import SourcesFileError, load_sources
from integrity.ingest.sources import (
    FORMATS,
    ModelConfig,
    SourceConfig,
    load_eval_sets,
    model_for,
)

LLAVA_ROW = {
    "id": "000000033471",
    "image": "coco/train2017/000000033471.jpg",
    "conversations": [
        {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
        {"from": "gpt", "value": "The bus in the image is white and red."},
    ],
}


def test_load_sources_resolves_paths_against_the_file(files, tmp_path, monkeypatch):
    files.image("coco/train2017/000000033471.jpg", "JPEG", base=tmp_path / "data" / "imgs")
    files.jsonl("data/llava.jsonl", [LLAVA_ROW])
    sources = files.raw(
        "conf/sources.yaml",
        "storage_options: {anon: true}\n"
        "sources:\n"
        "  - name: llava_mix\n"
        "    uri: ../data/llava.jsonl\n"
        "    image_root: ../data/imgs\n"
        "  - name: remote\n"
        "    uri: s3://bucket/rlaif/part-0.parquet\n"
        "    format: preference\n"
        "    storage_options: {key: k}\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative to the sources file, not to the working directory
    local, remote = load_sources(sources)
    assert local.uri == str(tmp_path / "data" / "llava.jsonl")
    assert local.image_root == str(tmp_path / "data" / "imgs")
    assert local.format == "auto"
    assert remote.uri == "s3://bucket/rlaif/part-0.parquet"
    assert remote.format == "preference"
    assert remote.storage_options == {"anon": True, "key": "k"}
    assert remote.effective_image_root == "s3://bucket/rlaif"
    result = files.ingest(local.uri, image_root=local.image_root)
    assert result.accepted.height == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("sources:\n  - name: a\n    uri: a.json\n    colour: red\n", r"sources\.0\.colour"),
        ("sources:\n  - {name: a, uri: a.json}\n  - {name: a, uri: b.json}\n", r"repeated: a"),
        ("sources:\n  - {name: a, uri: a.json, format: csv}\n", r"sources\.0\.format"),
        ("sources:\n  - {name: 'a b', uri: a.json}\n", r"sources\.0\.name"),
        ("source: []\n", r"source"),
        ("sources: [\n", r"not valid YAML"),
    ],
    ids=["bad-key", "duplicate-names", "bad-format", "bad-name", "top-level-key", "bad-yaml"],
)
def test_load_sources_rejects_bad_files(files, body, expected):
    path = files.raw("sources.yaml", body)
    with pytest.raises(SourcesFileError, match=expected) as error:
        load_sources(path)
    assert str(path) in str(error.value)


def test_load_sources_missing_file(tmp_path):
    with pytest.raises(SourcesFileError, match="does not exist"):
        load_sources(tmp_path / "nope.yaml")


def test_load_sources_names_every_problem_of_a_file_with_where_it_is(files):
    path = files.raw("sources.yaml", "sources:\n  - {name: a, uri: a.json, format: csv}\n"
                                     "  - {uri: b.json}\n")
    with pytest.raises(SourcesFileError) as error:
        load_sources(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert "sources.0.format: Input should be 'auto', 'llava'" in message
    assert "sources.1.name: Field required" in message


def test_an_empty_sources_file_says_sources_are_required(files):
    path = files.raw("sources.yaml", "")
    with pytest.raises(SourcesFileError, match="sources: Field required"):
        load_sources(path)


def test_a_bad_source_name_says_which_characters_a_name_may_hold(files):
    path = files.raw("sources.yaml", "sources:\n  - {name: 'hf/llava', uri: a.json}\n")
    with pytest.raises(SourcesFileError,
                       match=r"name 'hf/llava' may hold only letters, digits, '_', '\.', '-'"):
        load_sources(path)


def test_sources_file_errors_are_the_users_to_fix():
    assert issubclass(SourcesFileError, UserError)


def test_every_documented_format_is_accepted(files):
    body = "sources:\n" + "".join(f"  - {{name: s{i}, uri: a.json, format: {name}}}\n"
                                  for i, name in enumerate(FORMATS))
    sources = load_sources(files.raw("sources.yaml", body))
    assert [source.format for source in sources] == list(FORMATS)


def test_a_source_overrides_the_storage_options_it_shares_with_the_file(files):
    path = files.raw("sources.yaml",
                     "storage_options: {anon: true, key: file}\n"
                     "sources:\n  - {name: a, uri: 's3://b/a.json', storage_options: {key: mine}}\n"
                     "  - {name: b, uri: 's3://b/b.json'}\n")
    first, second = load_sources(path)
    assert first.storage_options == {"anon": True, "key": "mine"}
    assert second.storage_options == {"anon": True, "key": "file"}


# --- models ----------------------------------------------------------------------------------
def test_each_source_scores_with_the_files_model_unless_it_names_its_own(files):
    files.raw("weights/tuned.pt", b"not really weights")
    files.raw("configs/tiny.json", "{}")
    path = files.raw(
        "conf/sources.yaml",
        "model: {name: ViT-L-14, pretrained: openai, device: cpu}\n"
        "sources:\n"
        "  - {name: a, uri: a.json}\n"
        "  - name: b\n"
        "    uri: b.json\n"
        "    model: {name: tiny, pretrained: ../weights/tuned.pt, config: ../configs/tiny.json,"
        " precision: bf16}\n")
    a, b = load_sources(path)
    assert a.model == ModelConfig(name="ViT-L-14", pretrained="openai", device="cpu")
    # A weights file and a config relative to the sources file become absolute; a tag stays.
    assert b.model == ModelConfig(name="tiny", pretrained=str(files.root / "weights/tuned.pt"),
                                  config=str(files.root / "configs/tiny.json"), precision="bf16")


def test_a_pretrained_value_that_names_no_file_stays_a_tag(files):
    path = files.raw("sources.yaml", "model: {name: ViT-B-32, pretrained: laion2b_s34b_b79k}\n"
                                     "sources:\n  - {name: a, uri: a.json}\n")
    [source] = load_sources(path)
    assert source.model.pretrained == "laion2b_s34b_b79k"


def test_an_unknown_precision_is_refused_naming_the_key(files):
    path = files.raw("sources.yaml", "model: {name: m, pretrained: p, precision: fp8}\n"
                                     "sources: []\n")
    with pytest.raises(SourcesFileError, match=r"model\.precision: Input should be 'fp32'"):
        load_sources(path)


def test_model_for_prefers_the_name_and_weights_given_together():
    source = SourceConfig(name="s", uri="a.json",
                          model=ModelConfig(name="ViT-L-14", pretrained="openai"))
    assert model_for(source, "sources.yaml") == source.model
    assert model_for(source, "sources.yaml", name="ViT-B-32", pretrained="random") == \
        ModelConfig(name="ViT-B-32", pretrained="random")


@pytest.mark.parametrize("given", [{"name": "ViT-B-32"}, {"pretrained": "openai"}])
def test_model_for_refuses_a_name_without_weights_or_weights_without_a_name(given):
    source = SourceConfig(name="s", uri="a.json",
                          model=ModelConfig(name="ViT-L-14", pretrained="openai"))
    with pytest.raises(SourcesFileError, match="a model and its weights go together"):
        model_for(source, "sources.yaml", **given)


def test_model_for_a_source_without_a_model_says_how_to_name_one():
    with pytest.raises(SourcesFileError) as error:
        model_for(SourceConfig(name="s", uri="a.json"), "conf/sources.yaml")
    message = str(error.value)
    assert message.startswith("conf/sources.yaml names no model for source 's'")
    assert "model: {name: ViT-L-14, pretrained: openai}" in message
    assert "--no-model" in message


# --- eval sets and image roots ---------------------------------------------------------------
def test_eval_sets_are_read_like_sources(files):
    path = files.raw(
        "conf/sources.yaml",
        "storage_options: {anon: true}\n"
        "model: {name: m, pretrained: openai}\n"
        "sources:\n  - {name: train, uri: train.json}\n"
        "eval_sets:\n  - {name: held_out, uri: ../eval/mmmu.parquet, format: mmmu}\n")
    [held_out] = load_eval_sets(path)
    assert held_out.name == "held_out"
    assert held_out.uri == str(files.root / "eval" / "mmmu.parquet")
    assert held_out.format == "mmmu"
    assert held_out.storage_options == {"anon": True}
    assert held_out.model == ModelConfig(name="m", pretrained="openai")
    assert [source.name for source in load_sources(path)] == ["train"]


def test_a_file_without_eval_sets_has_none(files):
    assert load_eval_sets(files.raw("sources.yaml", "sources: []\n")) == []


def test_the_image_root_defaults_to_the_data_files_folder(tmp_path):
    (tmp_path / "shards").mkdir()
    assert SourceConfig(name="s", uri=str(tmp_path / "d" / "a.jsonl")).effective_image_root == \
        str(tmp_path / "d")
    assert SourceConfig(name="s", uri=str(tmp_path / "shards")).effective_image_root == \
        str(tmp_path / "shards")  # a folder of shards is its own root
    assert SourceConfig(name="s", uri="s3://bucket/llava/a.json").effective_image_root == \
        "s3://bucket/llava"
    given = SourceConfig(name="s", uri="s3://bucket/a.json", image_root="s3://images/coco")
    assert given.effective_image_root == "s3://images/coco"
