"""What a detector gets (context.ScoringContext): shared evidence computed once on first use
(image statistics, image embeddings, the source's claims) and earlier detectors' columns."""

import numpy as np
import polars as pl
import pytest
from PIL import Image

from integrity.detect.claims import source_claims
from integrity.detect.context import ScoringContext
from integrity.detect.embeddings import image_matrix
from tests.detect.conftest import color_labels, save_image, shape_row
from tests.detect.test_embeddings import s3_rows, s3_shapes


def test_shared_evidence_is_computed_once_per_key_and_context(pairs_of):
    context = ScoringContext(pairs_of([{"id": "a", "qa": [("Q?", "A.")]}]))
    calls = []

    def compute(value):
        calls.append(value)
        return [value]

    first = context.shared("x", lambda: compute(1))
    assert context.shared("x", lambda: compute(2)) is first and first == [1]
    assert context.shared("y", lambda: compute(3)) == [3]
    assert calls == [1, 3]
    other = ScoringContext(context.pairs)  # a new context computes afresh
    assert other.shared("x", lambda: compute(4)) == [4]


def test_evidence_started_in_the_background_is_computed_once_and_its_errors_reach_the_caller(
        pairs_of):
    """Near-copy searches start on a background thread when scoring starts; a detector asking
    for the same evidence meanwhile waits for it rather than computing it again, and an error
    raised in the background is raised where the evidence is asked for, not lost."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    context = ScoringContext(pairs_of([{"id": "a", "qa": [("Q?", "A.")]}]))
    release, calls = threading.Event(), []

    def slow() -> list[str]:
        calls.append(threading.current_thread().name)
        release.wait(5)
        return ["found"]

    def broken():
        raise ValueError("image unreadable")

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence") as background:
        context.start(background, "near", lambda c: c.shared("near", slow))
        context.start(background, "bad", lambda c: c.shared("bad", broken))
        while not calls:  # the background has begun computing it
            threading.Event().wait(0.01)
        threading.Timer(0.2, release.set).start()
        assert context.shared("near", lambda: ["computed twice"]) == ["found"]
    assert calls == ["evidence_0"]
    assert set(context.seconds) == {"near (background)", "bad (background)"}
    with pytest.raises(ValueError, match="image unreadable"):
        context.shared("bad", lambda: "never called")


def test_a_detector_reads_the_columns_an_earlier_one_wrote(pairs_of):
    context = ScoringContext(pairs_of([{"id": "a", "qa": [("Q?", "A.")]}]))
    written = pl.DataFrame({"grounding_margin": [0.25]})
    context.outputs["grounding"] = written
    assert context.output("grounding") is written
    with pytest.raises(KeyError):
        context.output("answer_support")  # not run (yet): never an empty stand-in


def test_image_statistics_cover_each_distinct_image_once_and_are_computed_once(
        tmp_path, pairs_of):
    small = save_image(tmp_path / "small.png", Image.new("RGB", (20, 10), "red"))
    large = save_image(tmp_path / "large.png", Image.new("RGB", (80, 60), "blue"))
    context = ScoringContext(pairs_of([
        {"id": "a", "image": small[1], "uri": small[0], "qa": [("Q1?", "A."), ("Q2?", "B.")]},
        {"id": "b", "image": large[1], "uri": large[0], "qa": [("Q?", "A.")]},
        {"id": "c", "image": small[1], "uri": small[0], "qa": [("Q?", "C.")]},
        {"id": "d", "qa": [("Q?", "A.")]},
    ]))
    stats = context.image_stats()
    assert stats["image_sha256"].to_list() == [small[1], large[1]]
    assert stats.select("image_width", "image_height").rows() == [(20, 10), (80, 60)]
    (tmp_path / "small.png").unlink()  # a second call reads no file
    assert context.image_stats() is stats


def test_image_embeddings_need_an_encoder_and_are_computed_once(pairs_of, images, encoder):
    pairs = pairs_of(color_labels(images)[:4] + [
        shape_row(images, "red", "Two.", question="How many shapes?"),
        {"id": "text", "qa": [("Q?", "A.")]}])
    assert ScoringContext(pairs).image_embeddings() is None
    context = ScoringContext(pairs, encoder=encoder)
    rows, image_of_row, vectors = context.image_embeddings()
    expected = image_matrix(pairs, encoder)
    assert rows.tolist() == expected[0].tolist() == [0, 1, 2, 3, 4]
    assert image_of_row.tolist() == expected[1].tolist() == [0, 1, 2, 3, 0]
    assert np.allclose(vectors, expected[2]) and vectors.shape == (4, encoder.dim)
    assert context.image_embeddings() is context.image_embeddings()


def test_image_embeddings_read_s3_images_with_the_contexts_storage_options(
        pairs_of, encoder, s3_server, monkeypatch, tmp_path):
    options, found = s3_shapes(s3_server, monkeypatch, tmp_path, ["green", "yellow"], size=88)
    context = ScoringContext(pairs_of(s3_rows(found)), encoder=encoder, storage_options=options)
    rows, image_of_row, vectors = context.image_embeddings()
    assert rows.tolist() == [0, 1] and image_of_row.tolist() == [0, 1]
    assert vectors.shape == (2, encoder.dim) and not np.allclose(vectors[0], vectors[1])


def test_the_sources_claims_are_learned_from_its_pairs_once(pairs_of):
    pairs = pairs_of([{"id": f"{c}{n}", "image": f"{c}{n}",
                       "qa": [("What color are the shapes?", f"{c}.")]}
                      for c in ("Red", "Blue") for n in (1, 2)])
    context = ScoringContext(pairs)
    claims = context.claims()
    assert claims.paradigm.sort("word").equals(source_claims(pairs).paradigm.sort("word"))
    assert dict(claims.paradigm.iter_rows()) == {"red": ["blue"], "blue": ["red"]}
    assert context.claims() is claims
