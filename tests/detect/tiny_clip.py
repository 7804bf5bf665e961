"""A tiny open_clip model (random weights, a 32 px image tower) and noise PNGs: the encoder
tests run a real model in milliseconds. A test module using it sets ``pytestmark = TINY_MODEL``
(the fixtures are conftest's)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from integrity.detect.encoder import Encoder
from integrity.detect.encoder_config import EncoderConfig

TINY = "integrity-test-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


# What a test module of the tiny model uses: ``pytestmark = TINY_MODEL``.
TINY_MODEL = pytest.mark.usefixtures("tiny_model_config", "one_torch_thread", "offline")


def make_encoder(cache=None, *, seed=0, **options) -> Encoder:
    torch.manual_seed(seed)  # random init: the seed decides the weights
    options = {"model": TINY, "batch_size": 4, "workers": 0, **options}
    return Encoder(EncoderConfig(**options), cache=cache)


def write_pngs(folder, n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` distinct noise PNGs of odd sizes; returns their paths and sha256s."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    uris, shas = [], []
    for i in range(n):
        pixels = rng.integers(0, 256, (40 + i % 3, 48, 3), dtype=np.uint8)
        path = folder / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        uris.append(str(path))
        shas.append(hashlib.sha256(path.read_bytes()).hexdigest())
    return uris, shas
