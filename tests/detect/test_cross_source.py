"""Copies across sources (integrity/detect/cross_source.py): keys from real ingested files,
matches in both directions, re-encoded images, templated dialogs, and order independence."""

import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image, ImageDraw

from integrity.detect.context import ScoringContext
from integrity.detect.cross_source import (
    SourceKeys,
    match_sources,
    source_images,
    source_keys,
    stable_hash,
)
from integrity.detect.pairs import qa_pairs
from integrity.ingest import SourceConfig, ingest_source


def _picture(seed: int, side: int = 96) -> Image.Image:
    """A scene of a few coloured shapes on a textured ground, distinct per seed."""
    rng = np.random.default_rng(seed)
    ground = rng.integers(0, 255, size=(side // 8, side // 8, 3), dtype=np.uint8)
    image = Image.fromarray(ground).resize((side, side), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.integers(0, side - 30, size=2)
        size = int(rng.integers(12, 30))
        colour = tuple(int(v) for v in rng.integers(0, 255, size=3))
        draw.ellipse([x, y, x + size, y + size], fill=colour)
    return image


def _reencoded(image: Image.Image) -> Image.Image:
    """The same picture saved as JPEG at quality 70 and read back (another source's copy)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _source(root: Path, name: str, rows: list[dict]) -> SourceKeys:
    """Ingest ``rows`` (LLaVA records) as source ``name`` and reduce it to its keys."""
    path = root / f"{name}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    raw = ingest_source(SourceConfig(name=name, uri=str(path), image_root=str(root))).accepted
    context = ScoringContext(qa_pairs(raw))
    return SourceKeys(name, source_keys(context.pairs),
                      source_images(context.pairs, context.image_stats()), {})


def _row(example_id: str, image: str | None, question: str, answer: str) -> dict:
    row = {"id": example_id, "conversations": [
        {"from": "human", "value": ("<image>\n" if image else "") + question},
        {"from": "gpt", "value": answer}]}
    return row | ({"image": image} if image else {})


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    """p0..p5.png, and q0.jpg: p0 re-encoded as JPEG (a near copy with other bytes)."""
    for seed in range(6):
        _picture(seed).save(tmp_path / f"p{seed}.png")
    _reencoded(_picture(0)).save(tmp_path / "q0.jpg", quality=95)
    return tmp_path


def _matches(left: SourceKeys, right: SourceKeys) -> pl.DataFrame:
    return match_sources(left, right)[0]


def test_the_same_file_as_two_shards_matches_every_row_exactly_both_ways(pictures):
    rows = [_row(f"r{i}", f"p{i % 3}.png", f"What is shown in part {i}?", f"Shape number {i}.")
            for i in range(6)] + [_row("t0", None, "What is 2 plus 2?", "4.")]
    shard_a, shard_b = _source(pictures, "shard_a", rows), _source(pictures, "shard_b", rows)
    exact = _matches(shard_a, shard_b).filter(pl.col("kind") == "exact")
    assert sorted(exact.filter(pl.col("source") == "shard_a")["example_id"]) == \
        sorted(row["id"] for row in rows)
    assert sorted(exact.filter(pl.col("source") == "shard_b")["example_id"]) == \
        sorted(row["id"] for row in rows)
    assert (exact["example_id"] == exact["other_example_id"]).all()  # each to its own twin


def test_another_question_about_the_same_image_is_no_copy(pictures):
    left = _source(pictures, "a", [_row("a1", "p1.png", "What colour is the largest circle?",
                                        "The largest circle is a deep red one near the top.")])
    right = _source(pictures, "b", [_row("b1", "p1.png", "How many circles are in the scene?",
                                         "There are four circles scattered over the ground.")])
    assert _matches(left, right).is_empty()


def test_a_re_encoded_image_in_another_source_is_a_near_copy(pictures):
    left = _source(pictures, "a", [_row("a1", "p0.png", "Describe the picture.", "Circles."),
                                   _row("a2", "p1.png", "Describe the picture.", "Circles.")])
    right = _source(pictures, "b", [_row("b1", "q0.jpg", "What do you see here?", "Dots."),
                                    _row("b2", "p2.png", "What do you see here?", "Dots.")])
    near = _matches(left, right).filter(pl.col("kind") == "near_image")
    assert set(near.select("source", "example_id", "other_example_id").iter_rows()) == {
        ("a", "a1", "b1"), ("b", "b1", "a1")}
    assert near["similarity"].min() > 0.95


def test_a_templated_copy_of_a_dialog_over_the_same_image_is_a_near_text_copy(pictures):
    answer = "A red circle sits above a small blue circle on a green and brown ground."
    left = _source(pictures, "a", [_row("a1", "p3.png", "Describe the image in detail.", answer)])
    right = _source(pictures, "b", [_row("b1", "p3.png",
                                          "Please describe the picture in detail.", answer)])
    found = _matches(left, right)
    assert set(found["kind"]) == {"near_text"}
    assert found["similarity"].min() >= 0.7


def test_matches_do_not_depend_on_which_source_is_indexed_first(pictures):
    rows_a = [_row("a1", "p0.png", "Describe it.", "Circles."),
              _row("a2", "p4.png", "What is shown in the scene here?", "Four round shapes.")]
    rows_b = [_row("b1", "q0.jpg", "What do you see?", "Dots."),
              _row("b2", "p4.png", "What is shown in the scene here?", "Four round shapes."),
              _row("b3", "p5.png", "Anything else?", "No.")]
    a, b = _source(pictures, "a", rows_a), _source(pictures, "b", rows_b)
    order = ["source", "example_id", "other_source", "kind"]
    assert _matches(a, b).sort(order).equals(_matches(b, a).sort(order))


def test_short_text_only_dialogs_are_only_exact_copies(pictures):
    left = _source(pictures, "a", [_row("a1", None, "What is 34 minus 17?", "17.")])
    right = _source(pictures, "b", [_row("b1", None, "What is 35 minus 17?", "18.")])
    assert _matches(left, right).is_empty()


def test_keys_hash_the_same_on_every_run_and_version():
    """MD5-based: a fixed value, so keys stored by another process or polars version match."""
    assert stable_hash(pl.Series(["hello"])).to_list() == [10575884659879408057]
