"""EmbeddingCache: parquet parts per (model_id, kind), locally and on S3."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from integrity.store.embedding_cache import EmbeddingCache, EmbeddingCacheError


def unit_vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_round_trip_keeps_float16_precision_and_skips_absent_keys(tmp_path):
    cache = EmbeddingCache(str(tmp_path))
    vectors = unit_vectors(3)
    cache.put("m@x", "image", ["a", "b", "c"], vectors)

    got = cache.get("m@x", "image", ["c", "zz", "a"])

    assert list(got) == ["c", "a"]
    assert got["c"].dtype == np.float32
    np.testing.assert_array_equal(got["c"], vectors[2].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(got["a"], vectors[0].astype(np.float16).astype(np.float32))
    assert cache.stats()["hits"] == 2 and cache.stats()["misses"] == 1


def test_lookup_returns_rows_in_request_order_with_a_found_mask(tmp_path):
    cache = EmbeddingCache(str(tmp_path))
    vectors = unit_vectors(4)
    cache.put("m", "text", ["k0", "k1", "k2", "k3"], vectors)

    got, found = cache.lookup("m", "text", ["k3", "nope", "k0", "k3"])

    assert found.tolist() == [True, False, True, True]
    np.testing.assert_allclose(got[[0, 2, 3]], vectors[[3, 0, 3]], atol=1e-3)
    assert not got[1].any()


def test_parts_are_immutable_named_files_with_dim_metadata(tmp_path):
    cache = EmbeddingCache(str(tmp_path))
    path = cache.put("m", "image", ["a", "b"], unit_vectors(2, dim=6))
    cache.put("m", "image", ["c"], unit_vectors(1, dim=6))

    files = sorted(os.listdir(tmp_path / "m" / "image"))
    assert len(files) == 2
    assert all(f.startswith("part-") and f.endswith(".parquet") for f in files)  # no temp left
    part = pq.read_table(path)
    assert part.column_names == ["key", "embedding"]
    assert part.schema.metadata[b"dim"] == b"6"
    assert len(part.column("embedding")[0].as_py()) == 12  # float16 bytes


def test_a_new_instance_reads_every_part_and_other_writers_show_after_refresh(tmp_path):
    writer = EmbeddingCache(str(tmp_path))
    writer.put("m", "image", ["a"], unit_vectors(1, seed=1))
    reader = EmbeddingCache(str(tmp_path))
    assert set(reader.get("m", "image", ["a", "b"])) == {"a"}

    writer.put("m", "image", ["b"], unit_vectors(1, seed=2))
    assert set(reader.get("m", "image", ["a", "b"])) == {"a"}  # index is loaded once
    reader.refresh()
    assert set(reader.get("m", "image", ["a", "b"])) == {"a", "b"}
    assert reader.stats()["parts_read"] == 1 + 2


def test_duplicate_keys_across_parts_are_harmless(tmp_path):
    cache = EmbeddingCache(str(tmp_path))
    first, second = unit_vectors(2, seed=3)
    cache.put("m", "text", ["k"], first[None])
    cache.put("m", "text", ["k", "k"], second[None].repeat(2, axis=0))

    assert np.allclose(cache.get("m", "text", ["k"])["k"], first, atol=1e-3)  # in memory: first
    reloaded = EmbeddingCache(str(tmp_path)).get("m", "text", ["k"])["k"]
    assert np.allclose(reloaded, first, atol=1e-3) or np.allclose(reloaded, second, atol=1e-3)


def test_models_and_kinds_are_kept_apart(tmp_path):
    cache = EmbeddingCache(str(tmp_path))
    cache.put("m1", "image", ["a"], unit_vectors(1, dim=4))
    cache.put("m2", "image", ["a"], unit_vectors(1, dim=8))

    assert cache.get("m1", "text", ["a"]) == {}
    assert cache.get("m1", "image", ["a"])["a"].shape == (4,)
    assert cache.get("m2", "image", ["a"])["a"].shape == (8,)


def test_bad_input_is_refused_with_a_clear_error(tmp_path):
    cache = EmbeddingCache(str(tmp_path))
    cache.put("m", "image", ["a"], unit_vectors(1, dim=8))
    with pytest.raises(EmbeddingCacheError, match="8-d"):
        cache.put("m", "image", ["b"], unit_vectors(1, dim=4))
    with pytest.raises(EmbeddingCacheError, match="normalised"):
        cache.put("m", "image", ["b"], 3 * unit_vectors(1, dim=8))
    with pytest.raises(EmbeddingCacheError, match="one vector per key"):
        cache.put("m", "image", ["b", "c"], unit_vectors(1, dim=8))
    with pytest.raises(EmbeddingCacheError, match="kind"):
        cache.get("m", "audio", ["a"])
    with pytest.raises(EmbeddingCacheError, match="model_id"):
        cache.get("../m", "image", ["a"])
    assert cache.put("m", "image", [], np.zeros((0, 8), np.float32)) is None


def test_many_keys_round_trip(tmp_path):
    keys = [f"{i:064x}" for i in range(5000)]
    vectors = unit_vectors(5000, dim=16)
    EmbeddingCache(str(tmp_path)).put("m", "image", keys, vectors)

    got, found = EmbeddingCache(str(tmp_path)).lookup("m", "image", keys[::-1])

    assert found.all()
    np.testing.assert_array_equal(got, vectors[::-1].astype(np.float16).astype(np.float32))


def test_round_trip_on_s3(s3_server):
    import s3fs

    s3fs.S3FileSystem(**s3_server["storage_options"]).mkdir("embeddings-test")
    root = "s3://embeddings-test/cache"
    options = s3_server["storage_options"]
    vectors = unit_vectors(3)
    path = EmbeddingCache(root, storage_options=options).put(
        "m@x", "text", ["a", "b", "c"], vectors
    )
    assert path.startswith("s3://embeddings-test/cache/m@x/text/part-")

    got = EmbeddingCache(root, storage_options=options).get("m@x", "text", ["b", "c", "d"])

    assert list(got) == ["b", "c"]
    np.testing.assert_allclose(got["b"], vectors[1], atol=1e-3)
    card = {"dim": 3, "logit_scale": 100.0, "logit_bias": None}
    EmbeddingCache(root, storage_options=options).put_model_card("m@x", card)
    assert EmbeddingCache(root, storage_options=options).model_card("m@x") == card


def test_a_models_card_is_kept_beside_its_vectors(tmp_path):
    """What scoring needs of a model without running it: absent until written, then read back
    by any instance; a model id that could leave the root is refused like a part's."""
    cache = EmbeddingCache(str(tmp_path))
    assert cache.model_card("m@x") is None
    cache.put_model_card("m@x", {"dim": 32, "logit_scale": 14.29})
    assert EmbeddingCache(str(tmp_path)).model_card("m@x") == {"dim": 32, "logit_scale": 14.29}
    assert sorted(p.name for p in (tmp_path / "m@x").iterdir()) == ["card.json"]
    with pytest.raises(EmbeddingCacheError):
        cache.put_model_card("../escape", {"dim": 1})
