"""Grounding, answer support and caption leakage with the shipped reference CLIP on real images."""

import hashlib
import random

import pytest
import torch

from integrity.demo.reference import REFERENCE_WEIGHTS
from integrity.demo.shapes import draw_shapes
from integrity.embedding_cache import EmbeddingCache
from integrity.encoder import Encoder, EncoderConfig
from integrity.detect.answer_support import score_answer_support
from integrity.detect.caption_leakage import score_caption_leakage
from integrity.detect.grounding import score_grounding

COLORS = ["red", "blue", "green", "yellow", "purple", "orange"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Encoder(EncoderConfig(model="shapes-clip", pretrained=str(REFERENCE_WEIGHTS),
                                workers=0),
                  cache=EmbeddingCache(str(tmp_path_factory.mktemp("cache"))))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """One image per color: two large circles on the left."""
    folder = tmp_path_factory.mktemp("images")
    found = {}
    for color in COLORS:
        path = folder / f"{color}.png"
        draw_shapes(color, "circle", 2, "left", "large", 128, rng=random.Random(1)).save(path)
        found[color] = (str(path), hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def _row(images, color, answer, *, caption=None, question="What color are the shapes?",
         row_id=None):
    uri, sha = images[color]
    row = {"id": row_id or f"{color}-{answer}", "image": sha, "uri": uri, "qa": [(question, answer)]}
    if caption:
        row["caption"] = caption
    return row


def test_answer_support_ranks_the_pixels_answer_first(pairs_of, images, encoder):
    rows = [_row(images, color, f"{color.capitalize()}.") for color in COLORS]
    rows.append(_row(images, "red", "Blue.", caption="two blue circles", row_id="leak"))
    rows.append({"id": "text", "qa": [("What color is the sky?", "Blue.")]})
    pairs = pairs_of(rows)
    support = score_answer_support(pairs, encoder=encoder)
    probs, ranks = support["answer_support_prob"].to_list(), support["answer_support_rank"].to_list()
    assert all(p > 0.5 for p in probs[:6]) and ranks[:6] == [1] * 6
    assert probs[6] < 0.1 and ranks[6] > 1  # the caption said blue; the pixels are red
    assert probs[7] is None and ranks[7] is None  # text-only: nothing to look at
    assert support["answer_support_candidates"].to_list()[:7] == [6] * 7

    leak = score_caption_leakage(pairs, support)
    assert leak["leak_answer_in_caption"].to_list()[6] is True
    assert leak["leak_score"].to_list()[6] > 0.9
    assert leak["leak_score"].to_list()[:6] == [None] * 6  # no caption, nothing leaked


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


def test_a_second_scoring_run_makes_no_model_calls(pairs_of, images, encoder, tmp_path):
    rows = [_row(images, color, f"{color.capitalize()}.") for color in COLORS]
    cache = EmbeddingCache(str(tmp_path / "cache"))
    config = EncoderConfig(model="shapes-clip", pretrained=str(REFERENCE_WEIGHTS), workers=0)
    first = score_answer_support(pairs_of(rows), encoder=Encoder(config, cache=cache))
    again = Encoder(config, cache=EmbeddingCache(str(tmp_path / "cache")))
    second = score_answer_support(pairs_of(rows), encoder=again)
    assert again.images_encoded == 0 and again.texts_encoded == 0
    assert first.equals(second)


def test_questions_with_only_hedged_answers_get_no_support_score(pairs_of, images, encoder):
    pairs = pairs_of([_row(images, "red", "Possibly red.", question="Which hue?"),
                      _row(images, "blue", "Maybe blue.", question="Which hue?")])
    support = score_answer_support(pairs, encoder=encoder)
    assert support["answer_support_prob"].to_list() == [None, None]


def test_score_pairs_encodes_each_image_once_even_without_a_cache(pairs_of, images):
    from integrity.detect import score_pairs
    from tests.detect.conftest import make_raw

    rows = [_row(images, color, f"{color.capitalize()}.") for color in COLORS]
    uncached = Encoder(EncoderConfig(model="shapes-clip", pretrained=str(REFERENCE_WEIGHTS),
                                     workers=0))
    scored = score_pairs(make_raw(rows), encoder=uncached)
    assert uncached.images_encoded == len(COLORS)
    assert scored["answer_support_rank"].to_list() == [1] * len(COLORS)
