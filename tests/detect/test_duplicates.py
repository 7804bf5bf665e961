import hashlib
import io
import random

import numpy as np
from PIL import Image, ImageChops

from integrity.demo.shapes import draw_shapes
from integrity.detect.duplicates import nearest_neighbours, score_duplicates, signatures
from integrity.detect.image_sanity import score_image_sanity
from integrity.detect.pixels import image_stats


def _save(path, image, fmt="PNG", **options) -> tuple[str, str]:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    path.write_bytes(buffer.getvalue())
    return str(path), hashlib.sha256(buffer.getvalue()).hexdigest()


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


def test_near_copies_found_and_other_layouts_not(tmp_path, pairs_of):
    original = draw_shapes("red", "circle", 2, "left", "large", 128, rng=random.Random(1))
    other_layout = draw_shapes("red", "circle", 2, "left", "large", 128, rng=random.Random(2))
    unrelated = draw_shapes("blue", "square", 3, "right", "small", 128, rng=random.Random(3))
    files = {
        "orig": _save(tmp_path / "a.png", original),
        "jpeg": _save(tmp_path / "b.jpg", original, "JPEG", quality=85),
        "shift": _save(tmp_path / "c.png", ImageChops.offset(original, 1, 1)),
        "layout": _save(tmp_path / "d.png", other_layout),
        "unrelated": _save(tmp_path / "e.png", unrelated),
    }
    rows = [{"id": name, "image": sha, "uri": uri, "qa": [("What color?", "Red.")]}
            for name, (uri, sha) in files.items()]
    rows.append({"id": "again", "image": files["orig"][1], "uri": files["orig"][0],
                 "qa": [("What color?", "Red.")]})
    pairs = pairs_of(rows)
    uris, shas = zip(*files.values(), strict=True)
    stats = image_stats(list(uris), list(shas))
    scores = score_duplicates(pairs, stats)
    sim = dict(zip(pairs["example_id"], scores["dup_near_image_sim"], strict=True))
    assert min(sim["orig"], sim["jpeg"], sim["shift"]) > 0.98
    assert max(sim["layout"] or 0, sim["unrelated"] or 0) < 0.9  # None: no candidate at all
    exact = dict(zip(pairs["example_id"], scores["dup_exact_size"], strict=True))
    assert exact["orig"] == exact["again"] == 2 and exact["jpeg"] == 1


def test_signatures_ignore_brightness():
    base = np.random.default_rng(1).uniform(0, 200, size=(1, 768)).astype(np.float32)
    both = signatures(np.vstack([base, base + 40]))
    assert float(both[0] @ both[1]) > 0.999


def test_eval_overlap(pairs_of):
    pairs = pairs_of([{"id": "a", "image": "s1", "qa": [("What is shown?", "A cat.")]},
                      {"id": "b", "image": "s2", "qa": [("Other?", "No.")]},
                      {"id": "c", "image": "s3", "qa": [("Third?", "Yes.")]}])
    import polars as pl
    stats = pl.DataFrame({"image_sha256": ["s1", "s2", "s3"],
                          "image_thumb": np.eye(3, 768, dtype=np.float32)},
                         schema={"image_sha256": pl.String,
                                 "image_thumb": pl.Array(pl.Float32, 768)})
    scores = score_duplicates(pairs, stats, eval_images={"s2"}, eval_questions={"what is shown"})
    assert scores["dup_eval_overlap"].to_list() == [True, True, False]


def test_image_sanity(tmp_path, pairs_of):
    files = {
        "blank": _save(tmp_path / "blank.png", Image.new("RGB", (64, 64), "white")),
        "tiny": _save(tmp_path / "tiny.png", Image.effect_noise((8, 8), 60).convert("RGB")),
        "wide": _save(tmp_path / "wide.png", Image.effect_noise((400, 40), 60).convert("RGB")),
    }
    rows = [{"id": name, "image": sha, "uri": uri, "qa": [("Q?", "A.")]}
            for name, (uri, sha) in files.items()]
    rows.append({"id": "text", "qa": [("Q?", "A.")]})
    pairs = pairs_of(rows)
    uris, shas = zip(*files.values(), strict=True)
    scores = score_image_sanity(pairs, image_stats(list(uris), list(shas)))
    assert scores["image_min_side"].to_list() == [64, 8, 40, None]
    assert scores["image_aspect"].to_list()[:3] == [1.0, 1.0, 10.0]
    std = scores["image_pixel_std"].to_list()
    assert std[0] == 0.0 and std[1] > 10 and std[3] is None


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
