"""Encoder: a real open_clip model from a tiny config, real PNGs, a real cache."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from integrity.store.embedding_cache import EmbeddingCache
from integrity.detect.encoder import Encoder, EncoderConfig, EncoderError, split_sentences

TINY = "integrity-test-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module", autouse=True)
def tiny_model_config(tmp_path_factory):
    """Register the tiny config with open_clip (its file stem is the model name)."""
    path = tmp_path_factory.mktemp("open_clip_configs") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model's ops are microseconds: a second thread only waits on busy shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


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


def test_image_embeddings_are_unit_vectors_in_input_order(tmp_path):
    encoder = make_encoder()
    uris, shas = write_pngs(tmp_path, 5)

    vectors = encoder.encode_images(uris, shas)
    reordered = encoder.encode_images(uris[::-1], shas[::-1])

    assert vectors.shape == (5, encoder.dim) == (5, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)
    np.testing.assert_array_equal(reordered, vectors[::-1])
    assert len({v.tobytes() for v in vectors}) == 5


def test_same_bytes_at_two_paths_are_encoded_once(tmp_path):
    encoder = make_encoder()
    uris, shas = write_pngs(tmp_path, 3)
    copy = tmp_path / "copy.png"
    copy.write_bytes(open(uris[1], "rb").read())

    vectors = encoder.encode_images([*uris, str(copy), uris[0]], [*shas, shas[1], shas[0]])

    assert encoder.images_encoded == 3
    np.testing.assert_array_equal(vectors[3], vectors[1])
    np.testing.assert_array_equal(vectors[4], vectors[0])


def test_a_second_encoder_on_the_same_cache_makes_no_model_calls(tmp_path):
    uris, shas = write_pngs(tmp_path / "images", 6)
    texts = ["a red circle", "two blue squares", "a red circle"]
    first = make_encoder(EmbeddingCache(str(tmp_path / "cache")))
    cold_images = first.encode_images(uris, shas)
    cold_texts = first.encode_texts(texts)

    second = make_encoder(EmbeddingCache(str(tmp_path / "cache")))
    warm_images = second.encode_images(uris, shas)
    warm_texts = second.encode_texts(texts)

    assert second.model_id == first.model_id
    assert (second.image_batches, second.text_batches) == (0, 0)
    assert (second.images_encoded, second.texts_encoded) == (0, 0)
    np.testing.assert_array_equal(warm_images, cold_images)  # both float16-rounded
    np.testing.assert_array_equal(warm_texts, cold_texts)
    assert second.cache.stats()["misses"] == 0


def test_a_partially_cached_set_encodes_only_the_new_items(tmp_path):
    uris, shas = write_pngs(tmp_path / "images", 7)
    cache_root = str(tmp_path / "cache")
    make_encoder(EmbeddingCache(cache_root)).encode_images(uris[:4], shas[:4])

    encoder = make_encoder(EmbeddingCache(cache_root))
    vectors = encoder.encode_images(uris[2:], shas[2:])

    assert encoder.images_encoded == 3
    fresh = make_encoder().encode_images(uris[2:], shas[2:])
    np.testing.assert_allclose(vectors, fresh, atol=2e-3)


def test_different_weights_never_share_cache_entries(tmp_path):
    cache = EmbeddingCache(str(tmp_path))
    seeded = make_encoder(cache, seed=0)
    other = make_encoder(cache, seed=1)
    named = make_encoder(cache, model_id="my-clip@v1")

    assert seeded.model_id.startswith(f"{TINY}@random-")
    assert other.model_id != seeded.model_id
    assert named.model_id == "my-clip@v1"


def test_worker_processes_give_the_same_result_as_in_process(tmp_path):
    uris, shas = write_pngs(tmp_path, 12)  # > 2 batches, so the pool is used

    in_process = make_encoder(workers=0).encode_images(uris, shas)
    pooled = make_encoder(workers=2).encode_images(uris, shas)

    np.testing.assert_array_equal(pooled, in_process)


def test_images_are_read_from_s3(tmp_path, s3_server):
    import s3fs

    options = s3_server["storage_options"]
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("encoder-images")
    local, shas = write_pngs(tmp_path, 10)
    uris = [f"s3://encoder-images/{i}.png" for i in range(10)]
    for path, uri in zip(local, uris):
        fs.put_file(path, uri)

    remote = make_encoder(workers=2).encode_images(uris, shas, storage_options=options)

    np.testing.assert_array_equal(remote, make_encoder().encode_images(local, shas))


def test_unreadable_images_are_named_and_the_rest_is_cached(tmp_path):
    uris, shas = write_pngs(tmp_path / "images", 3)
    broken = tmp_path / "images" / "broken.png"
    broken.write_bytes(b"not an image")
    cache_root = str(tmp_path / "cache")

    with pytest.raises(EncoderError, match="broken.png"):
        make_encoder(EmbeddingCache(cache_root)).encode_images(
            [*uris, str(broken)], [*shas, "f" * 64]
        )

    again = make_encoder(EmbeddingCache(cache_root))
    again.encode_images(uris, shas)
    assert again.images_encoded == 0


def test_an_image_changed_since_ingest_is_refused_not_cached(tmp_path):
    uris, shas = write_pngs(tmp_path / "images", 2)
    write_pngs(tmp_path / "images", 1, seed=9)  # overwrites img0.png with other pixels
    cache = EmbeddingCache(str(tmp_path / "cache"))

    with pytest.raises(EncoderError, match="img0.png changed since it was ingested"):
        make_encoder(cache).encode_images(uris, shas)

    assert set(cache.get(make_encoder().model_id, "image", shas)) == {shas[1]}


def test_text_embeddings_are_unit_vectors_and_duplicates_encode_once():
    encoder = make_encoder()

    vectors = encoder.encode_texts(["a red circle", "a blue square", "a red circle", ""])

    assert vectors.shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert encoder.texts_encoded == 3
    assert encoder.encode_texts([]).shape == (0, 32)


def test_a_text_longer_than_the_context_is_split_not_truncated():
    encoder = make_encoder()
    sentences = [f"Sentence {i} says the {i}th shape is a large red circle." for i in range(12)]
    long_text = " ".join(sentences)
    assert encoder._token_lengths([long_text])[0] > encoder.context_length

    vector = encoder.encode_texts([long_text])[0]

    assert encoder.text_pieces(long_text) == sentences
    mean = encoder.encode_texts(sentences).mean(axis=0)
    np.testing.assert_allclose(vector, mean / np.linalg.norm(mean), atol=2e-3)
    truncated = encoder.encode_texts([sentences[0] + " " + sentences[1]])[0]
    assert not np.allclose(vector, truncated, atol=1e-2)


def test_an_over_long_sentence_is_cut_into_word_chunks_that_fit():
    encoder = make_encoder()
    run_on = " ".join(["circle"] * 100) + " " + "x" * 400  # no sentence end, one giant word

    pieces = encoder.text_pieces(run_on)

    assert len(pieces) > 3
    assert all(n <= encoder.context_length for n in encoder._token_lengths(pieces))
    assert encoder.encode_texts([run_on]).shape == (1, 32)


def test_split_sentences():
    assert split_sentences("A red circle. Two squares! Is it blue? yes") == [
        "A red circle.",
        "Two squares!",
        "Is it blue?",
        "yes",
    ]
    assert split_sentences('He said "stop." Then 3.5 m left.\n- item one\n\n- item two') == [
        'He said "stop."',
        "Then 3.5 m left.",
        "- item one",
        "- item two",
    ]
    assert split_sentences("  ") == []
    assert split_sentences("no end") == ["no end"]


def test_logit_scale_is_the_models_temperature():
    encoder = make_encoder()
    assert encoder.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)  # open_clip's init value
    assert encoder.logit_bias is None


def test_invalid_options_name_the_field():
    with pytest.raises(ValidationError, match="device") as error:
        EncoderConfig(device="gpu")
    assert "auto, cpu, cuda" in str(error.value)
    with pytest.raises(ValidationError, match="precision"):
        EncoderConfig(precision="fp8")
    with pytest.raises(ValidationError, match="workers"):
        EncoderConfig(workers=-1)
    with pytest.raises(ValidationError, match="batch"):
        EncoderConfig(batch_size=0)
    with pytest.raises(ValidationError, match="modle"):
        EncoderConfig(modle="ViT-B-32")
    assert EncoderConfig(device="cuda:1").device == "cuda:1"


def test_unknown_models_and_weights_are_a_clear_error():
    with pytest.raises(EncoderError, match="no-such-model"):
        Encoder(EncoderConfig(model="no-such-model"))
    with pytest.raises(EncoderError, match="missing.pt"):
        Encoder(EncoderConfig(model=TINY, pretrained="/nowhere/missing.pt"))


def test_a_checkpoint_file_is_identified_by_its_hash(tmp_path):
    source = make_encoder()
    path = tmp_path / "tiny.pt"
    torch.save(source.model.state_dict(), path)

    loaded = make_encoder(seed=5, pretrained=str(path))

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert loaded.model_id == f"{TINY}@{digest}"
    np.testing.assert_array_equal(loaded.encode_texts(["red"]), source.encode_texts(["red"]))


def test_the_progress_bar_counts_images_not_sources(tmp_path, capsys):
    """`integrity score` showed "0/1 source" for minutes: the bar now counts images encoded."""
    uris, shas = write_pngs(tmp_path / "images", 6)
    encoder = make_encoder()
    encoder.progress = True
    encoder.encode_images(uris, shas)
    bar = capsys.readouterr().err
    assert "encoding images" in bar and "6/6" in bar and "image/s" in bar
