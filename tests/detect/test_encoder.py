"""Encoder: a real open_clip model from a tiny config, real PNGs, a real cache."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from integrity.detect.encoder import Encoder
from integrity.detect.encoder_config import EncoderConfig, EncoderError
from integrity.store.embedding_cache import EmbeddingCache, EmbeddingCacheError
from tests.detect.tiny_clip import TINY, TINY_MODEL, make_encoder, write_pngs

pytestmark = TINY_MODEL


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


def test_a_warm_cache_serves_an_encoder_that_never_loads_its_model(tmp_path):
    """The card the first encoder left in the cache stands in for the model: same id, size
    and temperature, the same vectors; the model loads at the first vector the cache lacks."""
    weights = tmp_path / "tiny.pt"
    torch.save(make_encoder(seed=3).clip.model.state_dict(), weights)
    uris, shas = write_pngs(tmp_path / "images", 3)
    first = make_encoder(EmbeddingCache(str(tmp_path / "cache")), pretrained=str(weights))
    cold_images, cold_texts = first.encode_images(uris, shas), first.encode_texts(["a red dot"])

    second = make_encoder(EmbeddingCache(str(tmp_path / "cache")), pretrained=str(weights))
    warm_images, warm_texts = second.encode_images(uris, shas), second.encode_texts(["a red dot"])

    assert second.device_used is None and second._clip is None
    assert (second.model_id, second.dim, second.logit_scale, second.logit_bias) == (
        first.model_id, first.dim, first.logit_scale, first.logit_bias)
    np.testing.assert_array_equal(warm_images, cold_images)
    np.testing.assert_array_equal(warm_texts, cold_texts)
    new = second.encode_texts(["two blue squares"])
    assert second.device_used == "cpu" and second.texts_encoded == 1
    np.testing.assert_array_equal(new, first.encode_texts(["two blue squares"]))


def test_a_card_that_disagrees_with_the_model_is_an_error(tmp_path):
    cache = EmbeddingCache(str(tmp_path / "cache"))
    named = make_encoder(cache, model_id="my-clip@v1")
    cache.put_model_card(named.model_id, {**named.card.model_dump(), "dim": 64})
    stale = make_encoder(EmbeddingCache(str(tmp_path / "cache")), model_id="my-clip@v1")
    with pytest.raises(EncoderError, match="64-d vectors, but the model makes 32-d"):
        stale.encode_texts(["not cached"])
    cache.put_model_card("my-clip@v1", {"dim": "wide"})
    with pytest.raises(EncoderError, match="card cached for 'my-clip@v1'.*delete it"):
        make_encoder(EmbeddingCache(str(tmp_path / "cache")), model_id="my-clip@v1")
    (tmp_path / "cache" / "my-clip@v1" / "card.json").write_text("{cut sho")
    with pytest.raises(EmbeddingCacheError, match="card.json is not JSON"):
        make_encoder(EmbeddingCache(str(tmp_path / "cache")), model_id="my-clip@v1")


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


def test_unknown_models_and_weights_are_a_clear_error():
    with pytest.raises(EncoderError, match="no-such-model"):
        Encoder(EncoderConfig(model="no-such-model"))
    with pytest.raises(EncoderError, match="missing.pt"):
        Encoder(EncoderConfig(model=TINY, pretrained="/nowhere/missing.pt"))


def test_a_checkpoint_file_is_identified_by_its_hash(tmp_path):
    source = make_encoder()
    path = tmp_path / "tiny.pt"
    torch.save(source.clip.model.state_dict(), path)

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
