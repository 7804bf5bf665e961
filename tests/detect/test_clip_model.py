"""The loaded open_clip model (clip_model): long texts split to fit its context, its card."""

from __future__ import annotations

import numpy as np
import pytest

from integrity.detect.clip_model import is_pretrained_tag
from tests.detect.tiny_clip import TINY, TINY_MODEL, make_encoder

pytestmark = TINY_MODEL


def test_a_text_longer_than_the_context_is_split_not_truncated():
    encoder = make_encoder()
    sentences = [f"Sentence {i} says the {i}th shape is a large red circle." for i in range(12)]
    long_text = " ".join(sentences)
    assert encoder.clip.token_lengths([long_text])[0] > encoder.clip.context_length

    vector = encoder.encode_texts([long_text])[0]

    assert encoder.clip.text_pieces(long_text) == sentences
    mean = encoder.encode_texts(sentences).mean(axis=0)
    np.testing.assert_allclose(vector, mean / np.linalg.norm(mean), atol=2e-3)
    truncated = encoder.encode_texts([sentences[0] + " " + sentences[1]])[0]
    assert not np.allclose(vector, truncated, atol=1e-2)


def test_an_over_long_sentence_is_cut_into_word_chunks_that_fit():
    encoder = make_encoder()
    run_on = " ".join(["circle"] * 100) + " " + "x" * 400  # no sentence end, one giant word

    pieces = encoder.clip.text_pieces(run_on)

    assert len(pieces) > 3
    assert all(n <= encoder.clip.context_length for n in encoder.clip.token_lengths(pieces))
    assert encoder.encode_texts([run_on]).shape == (1, 32)


def test_logit_scale_is_the_models_temperature():
    encoder = make_encoder()
    assert encoder.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)  # open_clip's init value
    assert encoder.logit_bias is None


def test_a_weights_tag_is_told_from_a_file_name():
    assert is_pretrained_tag("ViT-B-32", "laion2b_s34b_b79k")
    assert not is_pretrained_tag("ViT-B-32", "weights.pt")
    assert not is_pretrained_tag(TINY, "laion2b_s34b_b79k")
