"""Embeddings detectors share (embeddings.image_matrix, distinct_texts, pair_column): one vector
per distinct image or text, each pair's index into them, and pair columns filled from them."""

import hashlib
import io
import random
import shutil
import uuid

import numpy as np
import polars as pl
import s3fs

from demo.shapes import draw_shapes
from integrity.detect.embeddings import distinct_texts, image_matrix, pair_column
from tests.detect.conftest import color_labels, shape_row

_AMBIENT_AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN")


def s3_shapes(s3_server, monkeypatch, tmp_path, colors, *, size=96):
    """Shapes images of ``colors`` in a fresh bucket of the moto server, reachable only with its
    storage_options: no credentials or endpoint in the environment. {color: (s3 uri, sha256)};
    ``size`` keeps them apart from the ``images`` fixture (and from any embedding cache)."""
    options = s3_server["storage_options"]
    bucket = f"images-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir(bucket)
    found = {}
    for color in colors:
        buffer = io.BytesIO()
        draw_shapes(color, "square", 1, "right", "small", size, rng=random.Random(7)).save(
            buffer, "PNG")
        uri = f"s3://{bucket}/{color}.png"
        fs.pipe(uri, buffer.getvalue())
        found[color] = (uri, hashlib.sha256(buffer.getvalue()).hexdigest())
    for name in _AMBIENT_AWS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3fs.S3FileSystem.clear_instance_cache()
    return options, found


def s3_rows(found) -> list[dict]:
    """One make_raw row per image of ``s3_shapes``."""
    return [{"id": color, "image": sha, "uri": uri, "qa": [("What color is the shape?",
                                                           f"{color.capitalize()}.")]}
            for color, (uri, sha) in found.items()]


def test_a_pair_column_holds_the_values_at_their_rows_and_null_elsewhere():
    column = pair_column(np.array([0.5, -1.0], dtype=np.float32), np.array([3, 0]), 5)
    assert column.dtype == pl.Float32
    assert column.to_list() == [-1.0, None, None, 0.5, None]
    assert pair_column(np.array([np.nan, 2.0]), np.array([0, 1]), 2).to_list() == [None, 2.0]
    assert pair_column(np.array([], dtype=np.float32), np.array([], dtype=np.int64), 2) \
        .null_count() == 2


def test_each_distinct_text_is_one_row_of_the_matrix_in_first_seen_order(encoder):
    texts = pl.Series(["Blue.", "Red.", "Blue.", "Two circles.", "Red."])
    index, vectors = distinct_texts(texts, encoder)
    assert index.tolist() == [0, 1, 0, 2, 1]
    assert vectors.shape == (3, encoder.dim)
    assert np.allclose(vectors[index], encoder.encode_texts(texts.to_list()), atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])


def test_the_image_matrix_has_one_row_per_distinct_image_and_skips_text_pairs(
        pairs_of, images, encoder):
    labels = color_labels(images)[:3]  # red0, red1, blue0
    pairs = pairs_of([
        {"id": "text", "qa": [("What is 2 + 2?", "Four.")]},
        labels[2],
        shape_row(images, "red", "Two.", layout=1, question="How many shapes?"),
        labels[0],
        {**labels[2], "id": "again", "qa": [("Which color?", "Blue."), ("How many?", "Two.")]},
    ])
    rows, image_of_row, vectors = image_matrix(pairs, encoder)
    assert rows.tolist() == [1, 2, 3, 4, 5]  # every pair with an image, in pair order
    assert image_of_row.tolist() == [0, 1, 2, 0, 0]  # blue0, red1, red0, blue0, blue0
    assert vectors.shape == (3, encoder.dim)
    order = [images["blue", 0], images["red", 1], images["red", 0]]
    expected = encoder.encode_images([uri for uri, _ in order], [sha for _, sha in order])
    assert np.allclose(vectors, expected, atol=1e-6)


def test_one_image_stored_at_two_paths_is_one_row(pairs_of, images, encoder, tmp_path):
    uri, sha = images["green", 0]
    copy = tmp_path / "copy.png"
    shutil.copy(uri, copy)
    pairs = pairs_of([shape_row(images, "green", "Green."),
                      {**shape_row(images, "green", "Two.", question="How many?"),
                       "uri": str(copy)}])
    rows, image_of_row, vectors = image_matrix(pairs, encoder)
    assert rows.tolist() == [0, 1] and image_of_row.tolist() == [0, 0] and len(vectors) == 1


def test_a_source_without_images_has_an_empty_matrix(pairs_of, encoder):
    rows, image_of_row, vectors = image_matrix(
        pairs_of([{"id": "a", "qa": [("Q?", "A.")]}]), encoder)
    assert len(rows) == len(image_of_row) == 0 and vectors.shape == (0, encoder.dim)


def test_the_image_matrix_reads_s3_images_with_the_sources_storage_options(
        pairs_of, encoder, s3_server, monkeypatch, tmp_path):
    options, found = s3_shapes(s3_server, monkeypatch, tmp_path, ["red", "blue"], size=96)
    pairs = pairs_of(s3_rows(found))
    rows, image_of_row, vectors = image_matrix(pairs, encoder, storage_options=options)
    assert rows.tolist() == [0, 1] and image_of_row.tolist() == [0, 1]
    assert vectors.shape == (2, encoder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    assert not np.allclose(vectors[0], vectors[1])
