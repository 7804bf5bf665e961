"""Tests of integrity.store.versions: round trips, content versions, atomic commits, local and S3."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import s3fs
from polars.testing import assert_frame_equal

from integrity.store import versions as store_mod
from integrity.store.versions import StoreError, VersionStore, content_version

TURN = pl.Struct({"role": pl.String, "content": pl.String})
DATA_SCHEMA = {
    "example_id": pl.String,
    "images": pl.List(pl.String),
    "turns": pl.List(TURN),
    "score": pl.Float64,
    "n_images": pl.Int64,
}
QUARANTINE_SCHEMA = {"reason": pl.String, "raw": pl.String, "lines": pl.List(pl.Int64)}


def _data(n: int = 6) -> pl.DataFrame:
    """A small SFT-like frame with list and struct columns and some nulls."""
    return pl.DataFrame(
        {
            "example_id": [f"src:{i:04d}" for i in range(n)],
            "images": [[f"img/{i}.png"] if i % 3 else [] for i in range(n)],
            "turns": [
                [
                    {"role": "user", "content": f"<image>\nWhat is shown in {i}?"},
                    {"role": "assistant", "content": None if i == 2 else f"A shape {i}."},
                ]
                for i in range(n)
            ],
            "score": [None if i % 4 == 1 else i / 7 for i in range(n)],
            "n_images": [1 if i % 3 else 0 for i in range(n)],
        },
        schema=DATA_SCHEMA,
    )


def _quarantine_empty() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def _write(store: VersionStore, **kw: Any) -> store_mod.Manifest:
    """Write the default two tables of asset raw_sft, with overrides from ``kw``."""
    args: dict[str, Any] = {
        "tables": {"data": _data(), "quarantine": _quarantine_empty()},
        "partition": "src",
        "upstream": {"sources": "abc"},
        "code_version": "1",
        "params": {"policy": "p1"},
    }
    args.update(kw)
    return store.write("raw_sft", **args)


def _version_dirs(root: Path, asset: str) -> list[str]:
    return sorted(p.name for p in (root / asset).iterdir() if p.name[0] not in "._")


# --- local --------------------------------------------------------------------------------------


def test_round_trip_local(tmp_path: Path) -> None:
    store = VersionStore(str(tmp_path / "store"))
    data = _data()
    man = _write(store, extra={"kept": 6})

    assert store.exists("raw_sft", man.version)
    assert_frame_equal(store.read("raw_sft", man.version), data)
    assert_frame_equal(store.scan("raw_sft", man.version).collect(), data)
    quarantine = store.read("raw_sft", man.version, "quarantine")
    assert quarantine.height == 0
    assert quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)

    assert man.tables["data"].rows == 6
    assert man.tables["data"].columns == {k: str(v) for k, v in DATA_SCHEMA.items()}
    assert man.tables["data"].parts == ["data/part-00000.parquet"]
    assert man.tables["quarantine"].rows == 0
    assert man.tables["quarantine"].parts == ["quarantine/part-00000.parquet"]
    assert store.manifest("raw_sft", man.version) == man
    assert man.partition == "src" and man.extra == {"kept": 6}

    version_dir = tmp_path / "store" / "raw_sft" / man.version
    assert store.uri("raw_sft", man.version) == str(version_dir)
    assert json.loads((version_dir / "manifest.json").read_text())["version"] == man.version
    assert (version_dir / "quarantine" / "part-00000.parquet").is_file()
    assert not list((tmp_path / "store" / "raw_sft" / ".staging").iterdir())
    assert store.latest("raw_sft", "src") == man.version
    assert store.latest("raw_sft") is None


def test_idempotent_and_content_addressed(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = VersionStore(str(root))
    first = _write(store, extra={"run": 1})
    again = _write(store, extra={"run": 2})
    # Same content: nothing rewritten, the existing manifest (and its extra) comes back.
    assert again == first
    assert _version_dirs(root, "raw_sft") == [first.version]
    assert store.versions("raw_sft") == [first.version]

    changed = _data().with_columns(
        pl.when(pl.col("example_id") == "src:0003")
        .then(0.5)
        .otherwise(pl.col("score"))
        .alias("score")
    )
    variants = [
        _write(store, tables={"data": changed, "quarantine": _quarantine_empty()}),
        _write(store, upstream={"sources": "abd"}),
        _write(store, code_version="2"),
        _write(store, params={"policy": "p2"}),
        _write(store, partition="other"),
        _write(store, tables={"data": _data().reverse(), "quarantine": _quarantine_empty()}),
    ]
    versions = {first.version, *(m.version for m in variants)}
    assert len(versions) == 1 + len(variants)
    assert set(store.versions("raw_sft")) == versions
    assert store.versions("raw_sft")[0] == first.version  # sorted by created_at

    # Rewriting an old version still moves the latest pointer to it.
    assert store.latest("raw_sft", "src") == variants[-1].version
    assert _write(store).version == first.version
    assert store.latest("raw_sft", "src") == first.version
    assert store.latest("raw_sft", "other") == variants[4].version


def test_content_version_ignores_memory_layout() -> None:
    data = _data(9)
    ident: dict[str, Any] = {"partition": None, "upstream": {}, "code_version": "1", "params": {}}
    base = content_version("a", {"data": data}, **ident)
    # Equal frames built differently (chunks, slices, rebuilt from rows) have one version.
    same = [
        pl.concat([data.slice(0, 4), data.slice(4)], rechunk=False),
        pl.concat([data.slice(0, 5), data.slice(5)]).rechunk(),
        pl.DataFrame(data.to_dicts(), schema=DATA_SCHEMA),
        pl.concat([data.head(2), data]).tail(9),
    ]
    for frame in same:
        assert frame.equals(data)
        assert content_version("a", {"data": frame}, **ident) == base
    assert len(base) == 16
    assert content_version("b", {"data": data}, **ident) != base
    assert content_version("a", {"other": data}, **ident) != base
    assert content_version("a", {"data": data.clear()}, **ident) != base
    with pytest.raises(StoreError, match="JSON"):
        content_version("a", {"data": data}, **{**ident, "params": {"bad": {1, 2}}})


def test_multi_part(tmp_path: Path) -> None:
    store = VersionStore(str(tmp_path))
    data = _data(10)
    man = store.write(
        "scored", {"data": data, "empty": data.clear()}, code_version="1", rows_per_part=3
    )
    assert man.tables["data"].parts == [f"data/part-{i:05d}.parquet" for i in range(4)]
    assert man.tables["empty"].parts == ["empty/part-00000.parquet"]
    assert_frame_equal(store.read("scored", man.version), data)
    assert_frame_equal(store.scan("scored", man.version).collect(), data)
    assert_frame_equal(store.read("scored", man.version, "empty"), data.clear())
    # The part size is a storage detail, not part of the version.
    other = store.write(
        "scored", {"data": data, "empty": data.clear()}, code_version="1", rows_per_part=4
    )
    assert other.version == man.version


def test_killed_local_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "store"
    store = VersionStore(str(root))
    data = _data(10)
    seen_parts: list[str] = []

    def crash(fs: Any, version_path: str, manifest: Any) -> None:
        seen_parts.extend(sorted(p.name for p in Path(version_path).glob("*/*.parquet")))
        raise RuntimeError("killed")

    monkeypatch.setattr(store_mod, "_write_manifest", crash)
    with pytest.raises(RuntimeError, match="killed"):
        store.write("audited", {"data": data}, code_version="1", rows_per_part=4)
    assert seen_parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert store.versions("audited") == []
    assert store.latest("audited") is None
    assert _version_dirs(root, "audited") == []
    assert not list((root / "audited" / ".staging").iterdir())  # the staging folder is cleaned

    # A crash in the middle of the parts: same outcome.
    monkeypatch.undo()
    real_write = store_mod._write_parquet
    calls = {"n": 0}

    def crash_on_second(fs: Any, path: str, df: pl.DataFrame) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real_write(fs, path, df)

    monkeypatch.setattr(store_mod, "_write_parquet", crash_on_second)
    with pytest.raises(OSError, match="disk full"):
        store.write("audited", {"data": data}, code_version="1", rows_per_part=4)
    assert store.versions("audited") == []
    monkeypatch.undo()

    man = store.write("audited", {"data": data}, code_version="1", rows_per_part=4)
    assert man.version == content_version(
        "audited", {"data": data}, partition=None, upstream={}, code_version="1", params={}
    )
    assert store.exists("audited", man.version)
    assert store.versions("audited") == [man.version]
    assert store.latest("audited") == man.version
    assert_frame_equal(store.read("audited", man.version), data)


def test_lost_race_keeps_winner(tmp_path: Path) -> None:
    store = VersionStore(str(tmp_path))
    winner = store.write("mix", {"data": _data()}, code_version="1", extra={"who": "winner"})
    loser = winner.model_copy(update={"extra": {"who": "loser"}})
    # A second writer that computed the same version commits after the first one did.
    got = store._commit_local({"data": _data()}, loser, rows_per_part=10)
    assert got.extra == {"who": "winner"}
    assert store.manifest("mix", winner.version).extra == {"who": "winner"}
    assert not list((tmp_path / "mix" / ".staging").iterdir())


def test_errors(tmp_path: Path) -> None:
    store = VersionStore(str(tmp_path))
    with pytest.raises(StoreError, match=r"'deadbeefdeadbeef'.*'raw_sft'"):
        store.read("raw_sft", "deadbeefdeadbeef")
    with pytest.raises(StoreError, match="raw_sft"):
        store.manifest("raw_sft", "deadbeefdeadbeef")
    assert not store.exists("raw_sft", "deadbeefdeadbeef")
    assert store.versions("raw_sft") == []
    man = store.write("raw_sft", {"data": _data()}, code_version="1")
    with pytest.raises(StoreError, match="no table 'quarantine'"):
        store.read("raw_sft", man.version, "quarantine")
    for bad in ("", "a/b", "_latest", ".staging"):
        with pytest.raises(StoreError, match="Invalid asset name"):
            store.write(bad, {"data": _data()}, code_version="1")
    with pytest.raises(StoreError, match="Invalid table name"):
        store.write("raw_sft", {"manifest.json": _data()}, code_version="1")
    with pytest.raises(StoreError, match="rows_per_part"):
        store.write("raw_sft", {"data": _data()}, code_version="1", rows_per_part=0)


def test_attachments_lie_beside_a_committed_version(tmp_path: Path) -> None:
    store = VersionStore(str(tmp_path))
    man = _write(store)
    uri = store.attach("raw_sft", man.version, "review.jsonl", b'{"a": 1}\n')
    assert Path(uri).read_bytes() == b'{"a": 1}\n'
    assert store.manifest("raw_sft", man.version) == man  # not part of the version
    with pytest.raises(StoreError, match="Unknown version"):
        store.attach("raw_sft", "0" * 16, "report.html", "x")
    with pytest.raises(StoreError, match="Invalid attachment"):
        store.attach("raw_sft", man.version, "../escape", "x")


def test_an_unpublished_version_is_kept_but_never_latest(tmp_path: Path) -> None:
    """A mix that failed its checks is written unpublished: readable by name, never latest."""
    store = VersionStore(str(tmp_path / "store"))
    good = store.write("mix", {"data": _data(3)}, code_version="c1")
    failed = store.write("mix", {"data": _data(4)}, code_version="c1", publish=False)
    assert store.latest("mix") == good.version
    assert store.read("mix", failed.version).height == 4
    store.publish("mix", failed.version)
    assert store.latest("mix") == failed.version
    with pytest.raises(StoreError, match="Unknown version"):
        store.publish("mix", "0" * 16)


def test_latest_of_an_asset_the_resolver_owns_is_the_resolvers(tmp_path: Path) -> None:
    """``latest_from`` (a Dagster run's materializations) decides "latest" for the assets it
    owns; the store's pointer still answers for the rest (calibration, written by the CLI)."""
    plain = VersionStore(str(tmp_path / "store"))
    first = plain.write("raw_sft", {"data": _data(3)}, partition="a", code_version="c1")
    second = plain.write("raw_sft", {"data": _data(4)}, partition="a", code_version="c1")
    labels = plain.write("calibration", {"data": _data(2)}, code_version="c1")

    class Materialized:
        assets = frozenset({"raw_sft"})
        answers = {("raw_sft", "a"): first.version, ("raw_sft", "b"): "f" * 16}

        def __call__(self, asset: str, partition: str | None) -> str | None:
            return self.answers.get((asset, partition))

    store = VersionStore(str(tmp_path / "store"), latest_from=Materialized())
    assert plain.latest("raw_sft", "a") == plain.pointer("raw_sft", "a") == second.version
    assert store.latest("raw_sft", "a") == first.version
    assert store.latest("raw_sft", "b") is None  # named, but not in this store
    assert store.latest("raw_sft", "c") is None
    assert store.latest("calibration") == labels.version


def test_partition_names_are_safe_file_names(tmp_path: Path) -> None:
    store = VersionStore(str(tmp_path))
    man = store.write("raw_sft", {"data": _data()}, partition="hf/llava 665k", code_version="1")
    assert store.latest("raw_sft", "hf/llava 665k") == man.version
    assert store.latest("raw_sft", "hf") is None


# --- S3 (moto server) ---------------------------------------------------------------------------


@pytest.fixture
def s3_root(s3_server: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A fresh bucket on the moto server; returns (root URI, storage_options)."""
    options = s3_server["storage_options"]
    bucket = f"store-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    return f"s3://{bucket}/prefix", options


def test_round_trip_s3(s3_root: tuple[str, dict[str, Any]]) -> None:
    root, options = s3_root
    store = VersionStore(root, storage_options=options)
    assert store.root == root
    data = _data(10)
    man = _write(store, tables={"data": data, "quarantine": _quarantine_empty()}, rows_per_part=4)
    assert store.uri("raw_sft", man.version) == f"{root}/raw_sft/{man.version}"
    assert len(man.tables["data"].parts) == 3

    # A fresh store object (another process, say) sees the same thing.
    reader = VersionStore(root + "/", storage_options=options)
    assert reader.exists("raw_sft", man.version)
    assert reader.manifest("raw_sft", man.version) == man
    assert_frame_equal(reader.read("raw_sft", man.version), data)
    assert_frame_equal(reader.scan("raw_sft", man.version).collect(), data)
    quarantine = reader.read("raw_sft", man.version, "quarantine")
    assert quarantine.height == 0 and quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert reader.versions("raw_sft") == [man.version]
    assert reader.latest("raw_sft", "src") == man.version
    assert reader.latest("raw_sft") is None

    # Idempotent: same version, nothing new; a change gives a second version.
    assert _write(store, tables={"data": data, "quarantine": _quarantine_empty()}) == man
    uri = store.attach("raw_sft", man.version, "report.html", "<p>ok</p>")
    assert uri == f"{root}/raw_sft/{man.version}/attachments/report.html"
    assert reader.fs.cat(uri) == b"<p>ok</p>"
    other = _write(store, code_version="2")
    assert reader.versions("raw_sft") == [man.version, other.version]
    assert reader.latest("raw_sft", "src") == other.version
    with pytest.raises(StoreError, match="raw_sft"):
        reader.read("raw_sft", "0000000000000000")


def test_killed_s3_write_is_invisible(
    s3_root: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, options = s3_root
    store = VersionStore(root, storage_options=options)
    data = _data(10)

    def crash(fs: Any, version_path: str, manifest: Any) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(store_mod, "_write_manifest", crash)
    with pytest.raises(RuntimeError, match="killed"):
        store.write("audited", {"data": data}, code_version="1", rows_per_part=4)
    version = content_version(
        "audited", {"data": data}, partition=None, upstream={}, code_version="1", params={}
    )
    fs = s3fs.S3FileSystem(**options)
    parts = fs.find(f"{root.removeprefix('s3://')}/audited/{version}")
    assert len(parts) == 3 and all(p.endswith(".parquet") for p in parts)
    assert not store.exists("audited", version)
    assert store.versions("audited") == []
    assert store.latest("audited") is None
    with pytest.raises(StoreError):
        store.read("audited", version)

    monkeypatch.undo()
    man = store.write("audited", {"data": data}, code_version="1", rows_per_part=4)
    assert man.version == version
    assert store.versions("audited") == [version]
    assert store.latest("audited") == version
    assert_frame_equal(store.read("audited", version), data)
