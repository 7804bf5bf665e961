"""Build raw_sft frames by hand for detector tests (detectors take frames, not files), and the
demo's shapes CLIP with a few of its images for the model-based detectors, and the fixtures of
the tiny open_clip model (tiny_clip.py)."""

import hashlib
import io
import json
import random

import open_clip
import polars as pl
import pytest
import torch
from PIL import Image

from demo.model import demo_encoder_config
from demo.shapes import draw_shapes
from integrity.detect.encoder import Encoder
from integrity.detect.pairs import qa_pairs
from integrity.ingest.schema import RAW_SFT_SCHEMA
from integrity.store.embedding_cache import EmbeddingCache
from tests.detect.tiny_clip import TINY, TINY_CONFIG

COLORS = ["red", "blue", "green", "yellow", "purple", "orange"]


def make_raw(rows: list[dict]) -> pl.DataFrame:
    """rows: dicts with id, qa [(question, answer), ...], and optional image (sha), uri, name
    (the image file name), caption (or a whole metadata dict), system, pref_role, pref_group."""
    records = []
    for index, row in enumerate(rows):
        image = row.get("image")
        turns = [{"role": "system", "content": row["system"]}] if "system" in row else []
        for position, (question, answer) in enumerate(row["qa"]):
            prefix = "<image>\n" if image and position == 0 else ""
            turns += [{"role": "user", "content": prefix + question},
                      {"role": "assistant", "content": answer}]
        metadata = row.get("metadata", {"caption": row["caption"]} if "caption" in row else {})
        records.append({
            "example_id": row["id"], "source": "t", "origin_format": "llava", "row_index": index,
            "images": [row.get("name", f"{image}.png")] if image else [],
            "image_uris": [row.get("uri", f"/x/{image}.png")] if image else [],
            "image_sha256": [image] if image else [],
            "turns": turns, "metadata": json.dumps(metadata),
            "pref_role": row.get("pref_role"), "pref_group": row.get("pref_group"),
            "modality": "image-text" if image else "text",
        })
    return pl.DataFrame(records, schema=RAW_SFT_SCHEMA)


@pytest.fixture
def pairs_of():
    return lambda rows: qa_pairs(make_raw(rows))


def save_image(path, image: Image.Image, fmt: str = "PNG", **options) -> tuple[str, str]:
    """Write ``image`` to ``path``; (its uri, the sha256 of its bytes)."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    path.write_bytes(buffer.getvalue())
    return str(path), hashlib.sha256(buffer.getvalue()).hexdigest()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """The demo's shapes CLIP (shipped with the repository: nothing is downloaded)."""
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


def shape_row(images, color, answer, *, layout=0, caption=None,
              question="What color are the shapes?", row_id=None) -> dict:
    """A make_raw row asking about one of ``images``."""
    uri, sha = images[color, layout]
    row = {"id": row_id or f"{color}{layout}-{answer}", "image": sha, "uri": uri,
           "qa": [(question, answer)]}
    if caption:
        row["caption"] = caption
    return row


def color_labels(images) -> list[dict]:
    """Every color answered on both of its images: the source's own color paradigm."""
    return [shape_row(images, color, f"{color.capitalize()}.", layout=layout)
            for color in COLORS for layout in (0, 1)]


@pytest.fixture(scope="module")
def tiny_model_config(tmp_path_factory):
    """Register the tiny config with open_clip (its file stem is the model name)."""
    path = tmp_path_factory.mktemp("open_clip_configs") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """The tiny model's ops are microseconds: a second thread only waits on busy shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
