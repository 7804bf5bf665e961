"""Tests of integrity.store.lineage: checkpoint lineage and taint over a real store, local and S3."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import s3fs

from integrity.store.lineage import (
    LineageError,
    checkpoint_lineage,
    downstream_of,
    format_lineage,
    format_taint,
    load_graph,
    upstream_of,
)
from integrity.store.versions import StoreError, VersionStore

AUDIT_CHECKS = ["grounding", "preference_contamination"]
MIX_CHECKS = ["modality_ratio", "curriculum_order"]


def _table(tag: str) -> dict[str, pl.DataFrame]:
    return {"data": pl.DataFrame({"example_id": [f"{tag}:0", f"{tag}:1"], "score": [0.1, 0.9]})}


def _build(store: VersionStore) -> dict[str, str]:
    """Two sources, a policy change on A, two mixes and two checkpoints; returns name -> version.

    raw A, B -> scored A, B -> audited A1, A2 (policy p1, p2), B1 (p1)
    mix1 = A1 + B1 -> ck1;  mix2 = A2 + B1 -> ck2
    """
    v: dict[str, str] = {}
    for src in ("A", "B"):
        v[f"raw{src}"] = store.write(
            "raw_sft", _table(f"raw{src}"), partition=src, code_version="1"
        ).version
        v[f"scored{src}"] = store.write(
            "scored_sft", _table(f"scored{src}"), partition=src,
            upstream={"raw_sft": v[f"raw{src}"]}, code_version="1",
        ).version
    for name, src, policy in (("A1", "A", "p1"), ("A2", "A", "p2"), ("B1", "B", "p1")):
        v[name] = store.write(
            "audited_sft", _table(f"audited{src}"), partition=src,
            upstream={"scored_sft": v[f"scored{src}"], "raw_sft": v[f"raw{src}"]},
            code_version="1", params={"policy": policy, "reviews": None},
        ).version
    for mix, ck, a_version, policy in (("mix1", "ck1", "A1", "p1"), ("mix2", "ck2", "A2", "p2")):
        upstream = {"audited_sft/A": v[a_version], "audited_sft/B": v["B1"]}
        gate = {key: {"version": value, "checks_passed": AUDIT_CHECKS}
                for key, value in upstream.items()}
        v[mix] = store.write(
            "training_mix", _table("mix"), upstream=upstream, code_version="1",
            params={"policy": policy}, extra={"gate": gate, "summary": {"rows": 4}},
        ).version
        v[ck] = store.write(
            "training_checkpoint", _table("ck"), upstream={"training_mix": v[mix]},
            code_version="1", params={"trainer": "vqa", "config": {"steps": 10}},
            extra={"accuracy": 0.9,
                   "gate": {"training_mix": {"version": v[mix], "checks_passed": MIX_CHECKS}}},
        ).version
    return v


def _pairs(frame: pl.DataFrame) -> set[tuple[str, str]]:
    return set(frame.select("asset", "version").iter_rows())


@pytest.fixture
def built(tmp_path: Path) -> tuple[VersionStore, dict[str, str]]:
    store = VersionStore(str(tmp_path / "store"))
    v = _build(store)
    # Folders that hold no versions: skipped, or (no manifest) contribute nothing.
    for folder in ("embeddings/m/image", "images/ab", "reviews", "notes/draft"):
        (tmp_path / "store" / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "store" / "reviews" / "A.jsonl").write_text("{}\n")
    (tmp_path / "store" / "embeddings" / "m" / "manifest.json").write_text("{}")
    (tmp_path / "store" / "audited_sft" / ".staging" / "x").mkdir(parents=True)
    return store, v


def test_graph_tables(built: tuple[VersionStore, dict[str, str]]) -> None:
    store, v = built
    graph = load_graph(store)
    versions = graph.sql("SELECT asset, count(*) FROM versions GROUP BY asset").fetchall()
    assert dict(versions) == {"raw_sft": 2, "scored_sft": 2, "audited_sft": 3,
                              "training_mix": 2, "training_checkpoint": 2}
    assert graph.sql("SELECT count(*) FROM edges").fetchall() == [(2 + 6 + 4 + 2,)]
    row = graph.sql(
        "SELECT upstream_asset, upstream_partition, checks_passed FROM edges "
        "WHERE version = ? AND upstream_version = ?", params=[v["mix1"], v["A1"]]
    ).fetchall()
    assert row == [ ("audited_sft", "A", AUDIT_CHECKS)]
    [(policy, extra)] = graph.sql(
        "SELECT policy, extra_json FROM versions WHERE version = ?", params=[v["A2"]]
    ).fetchall()
    assert policy == "p2" and json.loads(extra) == {}


def test_checkpoint_lineage_is_exactly_what_ck1_consumed(
    built: tuple[VersionStore, dict[str, str]],
) -> None:
    store, v = built
    frame = checkpoint_lineage(store, v["ck1"])
    assert _pairs(frame) == {
        ("training_checkpoint", v["ck1"]), ("training_mix", v["mix1"]),
        ("audited_sft", v["A1"]), ("audited_sft", v["B1"]),
        ("scored_sft", v["scoredA"]), ("scored_sft", v["scoredB"]),
        ("raw_sft", v["rawA"]), ("raw_sft", v["rawB"]),
    }
    assert frame.height == 8  # one row per version, though raw is reached twice per source
    rows = {r["version"]: r for r in frame.iter_rows(named=True)}
    assert rows[v["ck1"]]["depth"] == 0 and rows[v["ck1"]]["reached_from"] is None
    assert rows[v["mix1"]]["checks_passed"] == MIX_CHECKS
    assert rows[v["A1"]] | {"created_at": None} == {
        "depth": 2, "asset": "audited_sft", "version": v["A1"], "partition": "A",
        "reached_from_asset": "training_mix", "reached_from": v["mix1"], "policy": "p1",
        "checks_passed": AUDIT_CHECKS, "code_version": "1", "created_at": None, "in_store": True,
    }
    # raw sits under scored (the deeper path), and takes its partition from its own manifest.
    assert (rows[v["rawA"]]["depth"], rows[v["rawA"]]["reached_from"]) == (4, v["scoredA"])
    assert rows[v["rawA"]]["partition"] == "A" and rows[v["rawA"]]["checks_passed"] is None

    text = format_lineage(frame)
    assert text.splitlines()[0].startswith(f"training_checkpoint {v['ck1']}")
    assert f"└── training_mix {v['mix1']}  [gate passed: modality_ratio, curriculum_order" in text
    assert f"audited_sft/A {v['A1']}" in text and v["A2"] not in text
    assert f"raw_sft/B {v['rawB']}" in text


def test_upstream_of_any_asset(built: tuple[VersionStore, dict[str, str]]) -> None:
    store, v = built
    frame = upstream_of(store, "audited_sft", v["A2"])
    assert _pairs(frame) == {("audited_sft", v["A2"]), ("scored_sft", v["scoredA"]),
                             ("raw_sft", v["rawA"])}


def test_upstream_missing_from_store_is_shown(tmp_path: Path) -> None:
    store = VersionStore(str(tmp_path / "store"))
    man = store.write("scored_sft", _table("s"), partition="A",
                      upstream={"raw_sft": "0123456789abcdef"}, code_version="1")
    frame = upstream_of(store, "scored_sft", man.version)
    row = frame.filter(pl.col("asset") == "raw_sft").row(0, named=True)
    assert row["version"] == "0123456789abcdef" and row["in_store"] is False
    assert "NOT IN STORE" in format_lineage(frame)


def test_taint_of_a_version(built: tuple[VersionStore, dict[str, str]]) -> None:
    store, v = built
    graph = load_graph(store)
    a1 = downstream_of(graph, version=v["A1"])
    assert _pairs(a1) == {("training_mix", v["mix1"]), ("training_checkpoint", v["ck1"])}
    assert set(a1["tainted_version"]) == {v["A1"]}
    assert dict(zip(a1["version"], a1["depth"])) == {v["mix1"]: 1, v["ck1"]: 2}
    a2 = downstream_of(graph, version=v["A2"])
    assert _pairs(a2) == {("training_mix", v["mix2"]), ("training_checkpoint", v["ck2"])}
    raw_a = downstream_of(graph, version=v["rawA"])
    assert _pairs(raw_a) == {
        ("scored_sft", v["scoredA"]), ("audited_sft", v["A1"]), ("audited_sft", v["A2"]),
        ("training_mix", v["mix1"]), ("training_mix", v["mix2"]),
        ("training_checkpoint", v["ck1"]), ("training_checkpoint", v["ck2"]),
    }
    assert downstream_of(graph, version=v["ck1"]).is_empty()
    assert format_taint(downstream_of(graph, version=v["ck1"])).startswith("Nothing downstream")


def test_taint_of_a_source(built: tuple[VersionStore, dict[str, str]]) -> None:
    store, v = built
    frame = downstream_of(store, source="B")
    assert _pairs(frame) == {
        ("training_mix", v["mix1"]), ("training_mix", v["mix2"]),
        ("training_checkpoint", v["ck1"]), ("training_checkpoint", v["ck2"]),
    }
    # Each came through the nearest tainted version: the audited one.
    mixes = frame.filter(pl.col("asset") == "training_mix")
    assert set(mixes["tainted_version"]) == {v["B1"]} and set(mixes["depth"]) == {1}
    assert set(mixes["tainted_partition"]) == {"B"}
    text = format_taint(frame)
    assert text.splitlines()[0] == (
        "4 tainted version(s) downstream (training_checkpoint: 2, training_mix: 2)"
    )
    assert f"audited_sft/B {v['B1']}" in text and v["ck2"] in text
    with pytest.raises(LineageError, match="source 'C'"):
        downstream_of(store, source="C")


def test_version_prefixes(built: tuple[VersionStore, dict[str, str]]) -> None:
    store, v = built
    graph = load_graph(store)
    assert _pairs(checkpoint_lineage(graph, v["ck1"][:7])) == _pairs(
        checkpoint_lineage(graph, v["ck1"])
    )
    assert _pairs(downstream_of(graph, version=v["A1"][:8])) == _pairs(
        downstream_of(graph, version=v["A1"])
    )
    # Versions are content hashes of fixed inputs: this collision is deterministic.
    first, count = Counter(version[0] for version in v.values()).most_common(1)[0]
    assert count > 1
    with pytest.raises(LineageError, match="ambiguous"):
        downstream_of(graph, version=first)
    with pytest.raises(LineageError, match="No version matches 'zzz'"):
        downstream_of(graph, version="zzz")
    with pytest.raises(LineageError, match="No training_checkpoint version"):
        checkpoint_lineage(graph, v["mix1"])  # a version, but no checkpoint
    with pytest.raises(LineageError, match="Empty"):
        checkpoint_lineage(graph, " ")
    with pytest.raises(LineageError, match="exactly one"):
        downstream_of(graph, version=v["A1"], source="A")
    assert issubclass(LineageError, StoreError)  # the CLI reports it as a user error


def test_empty_store(tmp_path: Path) -> None:
    store = VersionStore(str(tmp_path / "store"))
    assert load_graph(store).sql("SELECT count(*) FROM versions").fetchall() == [(0,)]
    with pytest.raises(LineageError):
        checkpoint_lineage(store, "abc")


def test_lineage_on_s3(s3_server: dict[str, Any], tmp_path: Path) -> None:
    options = s3_server["storage_options"]
    bucket = f"lineage-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    s3_store = VersionStore(f"s3://{bucket}/prefix", storage_options=options)
    v = _build(s3_store)
    local = VersionStore(str(tmp_path / "store"))
    assert _build(local) == v  # content versions: the same on both

    s3_lineage = checkpoint_lineage(s3_store, v["ck2"])
    assert _pairs(s3_lineage) == _pairs(checkpoint_lineage(local, v["ck2"]))
    assert ("audited_sft", v["A2"]) in _pairs(s3_lineage)
    assert ("audited_sft", v["A1"]) not in _pairs(s3_lineage)
    assert _pairs(downstream_of(s3_store, source="B")) == {
        ("training_mix", v["mix1"]), ("training_mix", v["mix2"]),
        ("training_checkpoint", v["ck1"]), ("training_checkpoint", v["ck2"]),
    }


def test_bad_manifest_is_a_clear_error(built: tuple[VersionStore, dict[str, str]]) -> None:
    store, v = built
    bad = Path(store.root) / "training_mix" / "0000000000000000"
    bad.mkdir()
    (bad / "manifest.json").write_text('{"asset": "training_mix"}')
    with pytest.raises(LineageError, match="0000000000000000/manifest.json is not a version"):
        load_graph(store)


def test_cli_prints_lineage_and_taint(built: tuple[VersionStore, dict[str, str]],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from integrity.cli import main

    store, v = built
    assert main(["lineage", "checkpoint", v["ck1"][:8], "--store", store.root]) == 0
    text = capsys.readouterr().out
    assert v["mix1"] in text and v["A1"] in text and v["A2"] not in text
    assert main(["lineage", "taint", "--source", "B", "--store", store.root, "--json"]) == 0
    reached = {row["version"] for row in json.loads(capsys.readouterr().out)}
    assert reached == {v["mix1"], v["mix2"], v["ck1"], v["ck2"]}
    assert main(["lineage", "checkpoint", "latest", "--store", store.root]) == 0
    assert main(["lineage", "checkpoint", "zz", "--store", store.root]) == 2
