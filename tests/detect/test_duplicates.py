"""Duplicates: exact and near-copy images, near-duplicate dialogs, eval-set overlap."""

import io
import random

import numpy as np
import polars as pl
import pytest
from PIL import Image, ImageChops

from demo.shapes import draw_shapes
from integrity.detect.duplicates import (
    Duplicate,
    dialog_shingles,
    nearest_neighbours,
    score_duplicates,
    signatures,
)
from integrity.detect.pixels import image_stats
from tests.detect.conftest import save_image


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """The uris near-copy verification decodes (``duplicates.load_rgb``), in order."""
    import integrity.detect.duplicates as duplicates

    seen: list[str] = []
    load = duplicates.load_rgb

    def counting_load(uri, **options):
        seen.append(uri)
        return load(uri, **options)

    monkeypatch.setattr(duplicates, "load_rgb", counting_load)
    return seen


def test_nearest_neighbours_matches_brute_force():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index, cosine = nearest_neighbours(vectors, 3, block=64)
    full = vectors @ vectors.T
    np.fill_diagonal(full, -np.inf)
    expected = np.argsort(-full, axis=1)[:, :3]
    assert (index == expected).all()
    assert np.allclose(cosine, np.take_along_axis(full, expected, axis=1), atol=1e-6)
    assert nearest_neighbours(vectors[:1], 3)[0].shape == (1, 0)


def _reencoded(image: Image.Image, *, quality: int, scale: float, crop: int = 0,
               fmt: str = "JPEG") -> Image.Image:
    """An ordinary copy: cropped by a few pixels, resized, saved lossy with 4:2:0 chroma."""
    side = image.width
    if crop:
        image = image.crop((crop, crop, side - crop, side - crop)).resize((side, side))
    image = image.resize((round(side * scale), round(side * scale)), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, fmt, quality=quality, **({"subsampling": 2} if fmt == "JPEG" else {}))
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_near_copies_survive_re_encoding_and_unrelated_images_stay_apart(tmp_path, pairs_of):
    """JPEG with 4:2:0 chroma, resized by 0.9, once scored a median 0.962 against a cut of 0.98
    fixed inside the detector: 7 of 104 copy groups were found."""
    original = draw_shapes("red", "circle", 2, "left", "large", 128, rng=random.Random(1))
    small_circle = draw_shapes("green", "circle", 1, "left", "small", 128, rng=random.Random(5))
    small_square = draw_shapes("green", "square", 1, "left", "small", 128, rng=random.Random(5))
    files = {
        "orig": save_image(tmp_path / "a.png", original),
        "jpeg": save_image(tmp_path / "b.jpg", _reencoded(original, quality=60, scale=1.0), "PNG"),
        "resized": save_image(tmp_path / "c.png", _reencoded(original, quality=70, scale=0.9)),
        "cropped": save_image(tmp_path / "d.png",
                              _reencoded(original, quality=80, scale=0.8, crop=2)),
        "webp": save_image(tmp_path / "e.webp", original, "WEBP", quality=80),
        "shift": save_image(tmp_path / "f.png", ImageChops.offset(original, 1, 1)),
        "circle": save_image(tmp_path / "g.png", small_circle),
        "square": save_image(tmp_path / "h.png", small_square),
        "layout": save_image(tmp_path / "i.png", draw_shapes("red", "circle", 2, "left", "large",
                                                             128, rng=random.Random(2))),
    }
    rows = [{"id": name, "image": sha, "uri": uri, "qa": [("What color?", "Red.")]}
            for name, (uri, sha) in files.items()]
    rows.append({"id": "again", "image": files["orig"][1], "uri": files["orig"][0],
                 "qa": [("What shape?", "Circle.")]})
    pairs = pairs_of(rows)
    uris, shas = zip(*files.values(), strict=True)
    scores = score_duplicates(pairs, image_stats(list(uris), list(shas)))
    sim = dict(zip(pairs["example_id"], scores["dup_near_image_sim"], strict=True))
    cut = Duplicate().near_image_sim_min
    assert min(sim[name] for name in ("orig", "jpeg", "resized", "cropped", "webp", "shift")) \
        >= cut
    # A small circle where the other has a small square, and another layout, stay below.
    assert max(sim["circle"] or 0, sim["square"] or 0, sim["layout"] or 0) < cut
    exact = dict(zip(pairs["example_id"], scores["dup_exact_size"], strict=True))
    assert exact["orig"] == 1 and exact["again"] == 1  # same image, different dialogs
    # ... which is reported: one image file used by two rows.
    rows_of_image = dict(zip(pairs["example_id"], scores["dup_image_rows"], strict=True))
    assert rows_of_image["orig"] == rows_of_image["again"] == 2 and rows_of_image["jpeg"] == 1


def test_templated_copies_of_a_dialog_are_near_duplicates_and_other_questions_are_not(pairs_of):
    rows = [
        {"id": "orig", "image": "s1", "qa": [("Which shape appears in the image?", "A circle."),
                                             ("Where are the shapes?", "On the left.")]},
        {"id": "copy", "image": "s1", "qa": [("Please answer: which shape appears in the "
                                              "image?", "a circle"),
                                             ("Please answer: where are the shapes?",
                                              "on the left")]},
        {"id": "other", "image": "s1", "qa": [("What color are the shapes?", "Red.")]},
        {"id": "elsewhere", "image": "s2", "qa": [("Which shape appears in the image?",
                                                   "A circle."), ("Where are the shapes?",
                                                                  "On the left.")]},
    ]
    pairs = pairs_of(rows)
    stats = pl.DataFrame({"image_sha256": ["s1", "s2"],
                          "image_thumb": np.eye(2, 768, dtype=np.float32)},
                         schema={"image_sha256": pl.String,
                                 "image_thumb": pl.Array(pl.Float32, 768)})
    scores = score_duplicates(pairs, stats).with_columns(pairs.select("example_id")).unique(
        "example_id", maintain_order=True)
    by_id = {row["example_id"]: row for row in scores.iter_rows(named=True)}
    assert by_id["copy"]["dup_text_sim"] >= Duplicate().text_sim_min
    assert by_id["copy"]["dup_text_of"] == "orig" and by_id["copy"]["dup_text_later"]
    assert by_id["orig"]["dup_text_later"] is False
    assert (by_id["other"]["dup_text_sim"] or 0) < Duplicate().text_sim_min
    assert by_id["elsewhere"]["dup_text_sim"] is None  # another image: never compared


def test_dialog_shingles_are_each_examples_words_and_answer_words_hashed(pairs_of):
    """Built from distinct questions and answers, not a string per word of every row: the
    same multiset of hashes per example, in order of first appearance, as hashing each row's
    question words, answer words and "=" answer words one by one."""
    from integrity.detect.text import tokens

    rows = [{"id": "a", "image": "s1", "qa": [("Which shape is it?", "A red circle."),
                                              ("Where is it?", "Left, left.")]},
            {"id": "b", "image": None, "qa": [("Which shape is it?", "A circle.")]},
            {"id": "c", "image": "s2", "qa": [("?", "A red circle.")]}]
    pairs = pairs_of(rows)
    found = dialog_shingles(pairs)
    for row, (example, qa) in enumerate((r["id"], r["qa"]) for r in rows):
        def words_of(text):
            return pl.select(tokens(pl.lit(text))).to_series()[0].to_list()

        words = [w for q, _ in qa for w in words_of(q)]
        answers = [w for _, a in qa for w in words_of(a)]
        expected = pl.Series(words + answers + ["=" + w for w in answers]).hash(seed=3)
        assert sorted(found.filter(pl.col("row") == row)["shingle"].to_list()) == sorted(
            expected.to_list()), example
    assert found["row"].unique().to_list() == [0, 1, 2]


def test_short_text_dialogs_are_only_ever_exact_copies(pairs_of):
    """"What is 34 minus 17? 17." shares most of its words with "What is 51 minus 34? 17."."""
    pairs = pairs_of([{"id": "a", "qa": [("What is 34 minus 17?", "17.")]},
                      {"id": "b", "qa": [("What is 51 minus 34?", "17.")]}])
    stats = pl.DataFrame(schema={"image_sha256": pl.String,
                                 "image_thumb": pl.Array(pl.Float32, 768)})
    assert score_duplicates(pairs, stats)["dup_text_sim"].to_list() == [None, None]


def test_signatures_ignore_brightness():
    base = np.random.default_rng(1).uniform(0, 200, size=(1, 768)).astype(np.float32)
    both = signatures(np.vstack([base, base + 40]))
    assert float(both[0] @ both[1]) > 0.999


def test_eval_overlap(pairs_of):
    pairs = pairs_of([{"id": "a", "image": "s1", "qa": [("What is shown?", "A cat.")]},
                      {"id": "b", "image": "s2", "qa": [("Other?", "No.")]},
                      {"id": "c", "image": "s3", "qa": [("Third?", "Yes.")]}])
    stats = pl.DataFrame({"image_sha256": ["s1", "s2", "s3"],
                          "image_thumb": np.eye(3, 768, dtype=np.float32)},
                         schema={"image_sha256": pl.String,
                                 "image_thumb": pl.Array(pl.Float32, 768)})
    scores = score_duplicates(pairs, stats, eval_images={"s2"}, eval_questions={"what is shown"})
    assert scores["dup_eval_overlap"].to_list() == [True, True, False]


def test_the_inverted_file_finds_the_near_copies_the_exact_search_finds(monkeypatch):
    from integrity.detect import duplicates

    rng = np.random.default_rng(0)
    originals = rng.normal(size=(3000, 64)).astype(np.float32)
    copies = originals[:300] + rng.normal(scale=0.05, size=(300, 64)).astype(np.float32)
    vectors = np.vstack([originals, copies])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact, exact_cos = duplicates.nearest_neighbours(vectors, 3)
    monkeypatch.setattr(duplicates, "EXACT_SEARCH_MAX", 100)
    found, found_cos, order = duplicates.candidate_neighbours(vectors, 3)
    assert sorted(order) == list(range(len(vectors)))
    # Every planted copy and its original find each other first, as in the exact search.
    planted = np.arange(300)
    assert (found[planted, 0] == planted + 3000).all() and (found[planted + 3000, 0] == planted).all()
    assert (exact[planted, 0] == found[planted, 0]).all()
    assert np.allclose(found_cos[planted, 0], exact_cos[planted, 0])
    # Elsewhere the best neighbour is never better than the exact one (it is a real neighbour).
    assert (found_cos[:, 0] <= exact_cos[:, 0] + 1e-6).all()
    # Copies sit next to their originals in the order the verification walks.
    rank = np.empty(len(vectors), dtype=np.int64)
    rank[order] = np.arange(len(vectors))
    cell_size = len(vectors) / round(np.sqrt(len(vectors)))
    assert np.median(np.abs(rank[planted] - rank[planted + 3000])) < cell_size


def test_verification_decodes_each_image_once_and_a_small_budget_only_costs_decodes(
        tmp_path, decodes):
    """The 1M-row run decoded 20k images about three times each: spectra were budgeted by count
    (1,024) whatever their size. The budget is in bytes, and then the 20k images' spectra still
    needed two chunks, which decoded 28k images: the chunks now share the decoded pixels kept
    (a quarter of a spectrum each), so each image is decoded once; past that budget too an
    image is decoded again, and every budget scores the same."""
    import integrity.detect.duplicates as duplicates

    images, rng = [], random.Random(3)
    for index in range(40):
        picture = draw_shapes(rng.choice(["red", "green"]), rng.choice(["circle", "square"]), 1,
                              "left", "small", 32, rng=random.Random(index))
        uri, sha = save_image(tmp_path / f"{index}.png", picture)
        images.append((sha, uri))
    left = np.array([i for i in range(40) for j in (1, 2)])
    right = (left + np.array([1, 2] * 40)) % 40
    whole = duplicates.verify_pairs(left, right, images, side=48, radius=2, storage_options={})
    assert sorted(decodes) == sorted(uri for _, uri in images)  # each image exactly once
    decodes.clear()
    ten_spectra = 10 * 3 * 48 * 25 * 8
    chunked = duplicates.verify_pairs(left, right, images, side=48, radius=2,
                                      storage_options={}, budget=ten_spectra)
    assert sorted(decodes) == sorted(uri for _, uri in images)  # chunks share the pixels kept
    assert np.array_equal(chunked, whole)
    decodes.clear()
    small = duplicates.verify_pairs(left, right, images, side=48, radius=2, storage_options={},
                                    budget=ten_spectra, pixel_budget=5 * 3 * 48 * 48)
    assert len(decodes) > len(images)  # past the pixel budget an image is decoded again
    assert np.array_equal(small, whole)


def test_images_the_statistics_decoded_whole_are_not_decoded_again_to_verify(tmp_path,
                                                                             decodes):
    """Scoring decoded every image twice: once for its statistics and once more to verify its
    near copies. Images the statistics read whole are kept (within a budget) and verified from
    there, to the same scores; a large JPEG, which statistics read at a reduced size, is still
    decoded whole to verify."""
    import integrity.detect.duplicates as duplicates
    from integrity.detect.pixels import Decoded

    images, rng = [], random.Random(4)
    for index in range(12):
        picture = draw_shapes(rng.choice(["red", "green"]), "circle", 1, "left", "small", 32,
                              rng=random.Random(index))
        images.append(save_image(tmp_path / f"{index}.png", picture))
    large = draw_shapes("red", "circle", 1, "left", "small", 400, rng=random.Random(1))
    images.append(save_image(tmp_path / "large.jpg", large, "JPEG"))
    uris, shas = (list(column) for column in zip(*images, strict=True))
    kept = Decoded()
    stats = image_stats(uris, shas, decoded=kept)
    assert set(kept.pixels) == set(shas[:-1])  # the JPEG was read at a reduced size
    left = np.arange(13)
    right = (left + 1) % 13
    listed = list(zip(shas, uris, strict=True))
    side, radius, _ = duplicates.verify_geometry(stats)
    reused = duplicates.verify_pairs(left, right, listed, side=side, radius=radius,
                                     storage_options={}, decoded=kept)
    assert decodes == [uris[-1]]
    decodes.clear()
    again = duplicates.verify_pairs(left, right, listed, side=side, radius=radius,
                                    storage_options={})
    assert sorted(decodes) == sorted(uris)
    assert np.array_equal(reused, again)
    tight = Decoded(budget=3 * 32 * 32 * 2)
    image_stats(uris, shas, decoded=tight)
    assert len(tight.pixels) == 2  # the rest past the budget is decoded again when needed
