"""The trainers' own loading rules, replayed step by step on an export (no trainer is installed
in tests). Each function does what the named code does with every row and lets the same errors
escape: a KeyError for a role LLaVA does not know, a TypeError for a list where LLaVA-1.5 joins
one path, an AssertionError where the trainer asserts or skips a row as broken.

- ``llava_v1_5``: LLaVA's ``llava/train/train.py``: ``LazySupervisedDataset.__getitem__`` (and
  its ``modality_lengths``), ``preprocess_multimodal``, ``preprocess_v1``, and the model's one
  image per ``<image>`` token.
- ``llava_onevision``: LLaVA-NeXT's ``train.py``: ``image`` a path or a list of paths,
  ``preprocess_multimodal`` (moves a turn's single token to its front), ``preprocess_qwen``.
- ``llamafactory_sharegpt``: LLaMA-Factory's ``dataset_info.json`` lookup, its sharegpt
  ``converter.py`` (a leading system message, alternating tags, an even count, else the row is
  skipped as broken) and ``mm_plugin`` (as many ``<image>`` tokens as images).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from PIL import Image

IMAGE_TOKEN = "<image>"


def _open(image_folder: Path, image_file) -> None:
    Image.open(os.path.join(image_folder, image_file)).convert("RGB")


def llava_v1_5(items: list[dict], image_folder: Path) -> list[dict]:
    roles = {"human": "USER", "gpt": "ASSISTANT"}  # conv_vicuna_v1's roles
    loaded = []
    for item in items:
        # modality_lengths: read for every row by the length-grouped sampler
        length = sum(len(turn["value"].split()) for turn in item["conversations"])
        images = []
        if "image" in item:
            _open(image_folder, item["image"])  # one path: a list raises TypeError here
            images = [item["image"]]
        source = copy.deepcopy(item["conversations"])
        if "image" in item:  # preprocess_multimodal
            for sentence in source:
                if IMAGE_TOKEN in sentence["value"]:
                    sentence["value"] = (IMAGE_TOKEN + "\n" + sentence["value"]
                                         .replace(IMAGE_TOKEN, "").strip()).strip()
        # preprocess_v1: the first turn's role is looked up before a non-human one is skipped
        if roles[source[0]["from"]] != roles["human"]:
            source = source[1:]
        for position, sentence in enumerate(source):
            role = roles[sentence["from"]]
            assert role == ("USER", "ASSISTANT")[position % 2], item["id"]
        # prepare_inputs_labels_for_multimodal: one image feature per <image> token (a text row
        # gets a blank image it never reads)
        tokens = sum(sentence["value"].count(IMAGE_TOKEN) for sentence in source)
        assert tokens == len(images), item["id"]
        loaded.append({"id": item["id"], "images": images, "length": length,
                       "turns": [(roles[s["from"]], s["value"]) for s in source]})
    return loaded


def llava_onevision(items: list[dict], image_folder: Path) -> list[dict]:
    roles = {"human": "user", "gpt": "assistant"}
    loaded = []
    for item in items:
        images = []
        if "image" in item:
            images = item["image"] if isinstance(item["image"], list) else [item["image"]]
            for image_file in images:
                _open(image_folder, image_file)
        source = copy.deepcopy(item["conversations"])
        for sentence in source:  # preprocess_multimodal: only a turn with one token is moved
            value = sentence["value"]
            if value.count(IMAGE_TOKEN) == 1 and not value.startswith(IMAGE_TOKEN):
                sentence["value"] = (IMAGE_TOKEN + "\n" + value.replace(IMAGE_TOKEN, "")
                                     .strip()).strip()
        if roles[source[0]["from"]] != roles["human"]:  # preprocess_qwen
            source = source[1:]
        for position, sentence in enumerate(source):
            assert roles[sentence["from"]] == ("user", "assistant")[position % 2], item["id"]
        tokens = sum(sentence["value"].count(IMAGE_TOKEN) for sentence in source)
        assert tokens == len(images), item["id"]
        loaded.append({"id": item["id"], "images": images,
                       "turns": [(roles[s["from"]], s["value"]) for s in source]})
    return loaded


def llamafactory_sharegpt(dataset_dir: Path, name: str) -> list[dict]:
    attr = json.loads((dataset_dir / "dataset_info.json").read_text())[name]
    assert attr["formatting"] == "sharegpt"
    columns, tags = attr["columns"], attr["tags"]
    role, content = tags["role_tag"], tags["content_tag"]
    back = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant",
            tags["system_tag"]: "system"}
    accept = ((tags["user_tag"],), (tags["assistant_tag"],))
    loaded = []
    for example in json.loads((dataset_dir / attr["file_name"]).read_text()):
        messages = example[columns["messages"]]
        system = []
        if messages and messages[0][role] == tags["system_tag"]:
            system, messages = messages[:1], messages[1:]
        # converter.py skips (with a warning) a row whose tags do not alternate or whose count
        # is odd: a silent loss, so here it is an error.
        assert all(message[role] in accept[index % 2] for index, message in enumerate(messages))
        assert len(messages) % 2 == 0
        images = example[columns["images"]] or []
        # mm_plugin counts the tokens of the dialog (the system text is not scanned)
        assert sum(message[content].count(IMAGE_TOKEN) for message in messages) == len(images)
        for image in images:
            Image.open(image).convert("RGB")
        loaded.append({"turns": [{"role": back[message[role]], "content": message[content]}
                                 for message in system + messages], "images": images})
    return loaded
