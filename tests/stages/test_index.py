"""The duplicate index as the CLI runs it (integrity/stages/index.py): one version per source,
updated for new sources only, read by the audit, and refusing to answer when stale."""

import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from integrity.decide.policy import DEFAULT_POLICY, load_policy
from integrity.detect.cross_source import DuplicateIndexError, current_matches
from integrity.ingest import SourceConfig
from integrity.names import AUDITED_SFT, DUPLICATE_INDEX, SCORED_SFT
from integrity.stages import audit_to_store, index_to_store, ingest_to_store, score_to_store
from integrity.stages.audit import cross_source_copies
from integrity.stages.index import update_index
from integrity.store.versions import VersionStore


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)).resize(
        (96, 96), Image.BILINEAR)


def _row(example_id: str, image: str, question: str, answer: str) -> dict:
    return {"id": example_id, "image": image, "conversations": [
        {"from": "human", "value": "<image>\n" + question}, {"from": "gpt", "value": answer}]}


@pytest.fixture
def world(tmp_path: Path) -> dict:
    """Sources a, b, c: b re-encodes a's first picture (a near copy) and repeats a's second row
    exactly; c repeats a's third row. Scored without a model."""
    for seed in range(4):
        _picture(seed).save(tmp_path / f"p{seed}.png")
    buffer = io.BytesIO()
    _picture(0).save(buffer, format="JPEG", quality=80)
    (tmp_path / "q0.jpg").write_bytes(buffer.getvalue())
    files = {
        "a": [_row("a0", "p0.png", "Describe the picture.", "Noise."),
              _row("a1", "p1.png", "What is in the image?", "Coloured squares."),
              _row("a2", "p2.png", "Which colour dominates?", "Green.")],
        "b": [_row("b0", "q0.jpg", "What do you see?", "Static."),
              _row("b1", "p1.png", "What is in the image?", "Coloured squares."),
              _row("b2", "p3.png", "Is it bright?", "Somewhat.")],
        "c": [_row("c0", "p2.png", "Which colour dominates?", "Green.")],
    }
    store = VersionStore(str(tmp_path / "store"))
    sources = {}
    for name, rows in files.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        sources[name] = SourceConfig(name=name, uri=str(tmp_path / f"{name}.jsonl"),
                                     image_root=str(tmp_path))
    return {"store": store, "sources": sources}


def _score(world: dict, name: str) -> str:
    store, source = world["store"], world["sources"][name]
    _, raw = ingest_to_store(source, store)
    return score_to_store(source, raw.version, store)[1].version


def test_a_re_encoded_image_and_an_exact_row_in_another_source_are_dropped_naming_the_original(
        world):
    store, policy = world["store"], load_policy(DEFAULT_POLICY)
    scored = {name: _score(world, name) for name in ("a", "b")}
    assert set(update_index(store, {"a": {}, "b": {}})) == {"a", "b"}
    copies = cross_source_copies(store, "b", scored["b"], ["a", "b"], policy)
    assert dict(copies.iter_rows()) == {"b0": "a/a0", "b1": "a/a1"}
    assert cross_source_copies(store, "a", scored["a"], ["a", "b"], policy).is_empty()

    result, manifest, _ = audit_to_store("b", scored["b"], store, policy, report=False,
                                         copies=copies)
    verdicts = result.verdicts.sort("example_id")
    assert verdicts["verdict"].to_list() == ["drop", "drop", "keep"]
    assert verdicts["duplicate_of"].to_list() == ["a/a0", "a/a1", None]
    assert manifest.extra["copies_of_other_sources"] == {"a": 2}
    assert store.read(AUDITED_SFT, manifest.version)["example_id"].to_list() == ["b2"]


def test_the_policy_s_source_priority_decides_which_copy_is_kept(world):
    store = world["store"]
    policy = load_policy(DEFAULT_POLICY)
    policy = policy.model_copy(update={"audit": policy.audit.model_copy(
        update={"source_priority": ["b"]})})
    scored = {name: _score(world, name) for name in ("a", "b")}
    update_index(store, {"a": {}, "b": {}})
    assert cross_source_copies(store, "b", scored["b"], ["a", "b"], policy).is_empty()
    assert dict(cross_source_copies(store, "a", scored["a"], ["a", "b"], policy).iter_rows()) \
        == {"a0": "b/b0", "a1": "b/b1"}


def test_a_new_source_is_indexed_without_indexing_the_others_again(world):
    store, policy = world["store"], load_policy(DEFAULT_POLICY)
    for name in ("a", "b"):
        _score(world, name)
    first = update_index(store, {"a": {}, "b": {}})
    assert update_index(store, {"a": {}, "b": {}}) == {}  # nothing new: nothing written
    scored_c = _score(world, "c")
    second = update_index(store, {"a": {}, "b": {}, "c": {}})
    assert set(second) == {"c"}
    assert store.latest(DUPLICATE_INDEX, "a") == first["a"].version
    assert dict(cross_source_copies(store, "c", scored_c, ["a", "b", "c"], policy)
                .iter_rows()) == {"c0": "a/a2"}


def test_a_match_lapses_when_the_other_source_is_scored_again_until_it_is_indexed(world):
    store = world["store"]
    scored = {name: _score(world, name) for name in ("a", "b")}
    update_index(store, {"a": {}, "b": {}})
    index_b = store.manifest(DUPLICATE_INDEX, store.latest(DUPLICATE_INDEX, "b"))
    against = index_b.extra["against"]
    assert against == {"a": scored["a"]}
    matches = current_matches(store, scored)
    assert not matches.is_empty()
    # a is re-scored (another version): a's index no longer indexes it.
    rescored = store.write(SCORED_SFT, {name: store.read(SCORED_SFT, scored["a"], name)
                                        for name in ("data", "pairs", "keys", "images")},
                           partition="a", upstream={}, code_version="again")
    with pytest.raises(DuplicateIndexError, match="index it again"):
        current_matches(store, {**scored, "a": rescored.version})
    index_to_store("a", rescored.version, store, {"b": scored["b"]})
    again = current_matches(store, {**scored, "a": rescored.version})
    assert again.sort(pl.all()).equals(matches.sort(pl.all()))


def test_a_source_never_indexed_is_named(world):
    store = world["store"]
    scored = {"a": _score(world, "a")}
    with pytest.raises(DuplicateIndexError, match="a has no duplicate_index"):
        current_matches(store, scored)
