"""Stored data is checked against the checksums recorded at commit: a version whose files were
changed on disk is never consumed, and `integrity verify` finds every such change."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from integrity.cli import main
from integrity.store.versions import StoreError, VersionStore


@pytest.fixture
def stored(tmp_path: Path):
    """A committed raw_sft-like version with two parts and an attachment."""
    store = VersionStore(str(tmp_path / "store"))
    frame = pl.DataFrame({"example_id": [f"r{i}" for i in range(6)],
                          "answer": ["Red.", "Blue.", "Two.", "A cat.", "Yes.", "No."]})
    manifest = store.write("raw_sft", {"data": frame}, partition="s", code_version="c",
                           rows_per_part=3)
    store.attach("raw_sft", manifest.version, "export.json", json.dumps(frame.to_dicts()))
    folder = tmp_path / "store" / "raw_sft" / manifest.version
    return store, manifest.version, frame, folder


def rewrite_answers(part: Path) -> None:
    """What was done by hand: every answer of a committed part rewritten, a valid parquet."""
    frame = pl.read_parquet(part)
    frame.with_columns(answer=pl.lit("Green.")).write_parquet(part)


def test_a_rewritten_part_is_refused_on_read_naming_the_file(stored):
    store, version, frame, folder = stored
    assert store.read("raw_sft", version).equals(frame)
    rewrite_answers(folder / "data" / "part-00001.parquet")
    with pytest.raises(StoreError, match=rf"raw_sft version {version}: data/part-00001.parquet "
                                         "does not match the sha256"):
        store.read("raw_sft", version)
    with pytest.raises(StoreError, match="part-00001.parquet does not match"):
        store.scan("raw_sft", version).collect()


def test_deleted_rows_and_a_missing_part_are_refused(stored):
    store, version, _, folder = stored
    part = folder / "data" / "part-00000.parquet"
    pl.read_parquet(part).head(1).write_parquet(part)  # rows deleted
    with pytest.raises(StoreError, match="part-00000.parquet does not match"):
        store.read("raw_sft", version)
    part.unlink()
    with pytest.raises(StoreError, match="part-00000.parquet is missing"):
        store.read("raw_sft", version)


def test_an_edited_attachment_is_refused(stored):
    store, version, _, folder = stored
    assert json.loads(store.read_attachment("raw_sft", version, "export.json"))[0]["answer"] == "Red."
    (folder / "attachments" / "export.json").write_text("[]")
    with pytest.raises(StoreError, match="attachments/export.json does not match"):
        store.read_attachment("raw_sft", version, "export.json")


def test_verify_finds_every_change_and_the_cli_exits_1(stored, capsys):
    store, version, _, folder = stored
    root = str(folder.parents[1])
    assert store.verify("raw_sft", version) == []
    assert main(["verify", "--store", root]) == 0
    assert "every file matches its checksum" in capsys.readouterr().out
    rewrite_answers(folder / "data" / "part-00000.parquet")
    (folder / "attachments" / "export.json").write_text("[]")
    problems = store.verify("raw_sft", version)
    assert len(problems) == 2
    assert "part-00000.parquet does not match" in problems[0]
    assert "attachment export.json changed" in problems[1]
    assert main(["verify", "--store", root]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL") == 2 and "1 versions of 1 assets" in out


def test_verify_catches_a_manifest_edited_to_match_the_edited_data(stored):
    """Rewrite a part and its checksum in the manifest: the tables no longer hash to the
    version's own name."""
    store, version, _, folder = stored
    part = folder / "data" / "part-00000.parquet"
    rewrite_answers(part)
    manifest = json.loads((folder / "manifest.json").read_text())
    from integrity.store.versions import sha256_of

    manifest["tables"]["data"]["sha256"][0] = sha256_of(part.read_bytes())
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert store.read("raw_sft", version)["answer"][0] == "Green."  # the files agree now...
    [problem] = store.verify("raw_sft", version)
    assert "its tables hash to" in problem and "not to the version's name" in problem


def test_scoring_a_tampered_raw_version_is_a_clear_error(tmp_path, capsys):
    """The case found by hand: every answer of a committed raw_sft rewritten; scoring ran on."""
    from tests.models import DEMO_MODEL_YAML

    lines = [json.dumps({"id": f"t{i}", "conversations": [
        {"from": "human", "value": f"Name a number above {i}."},
        {"from": "gpt", "value": f"{i + 1}."}]}) for i in range(4)]
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "sources.yaml").write_text(
        DEMO_MODEL_YAML + "sources:\n  - {name: s, uri: data.jsonl}\n")
    store = str(tmp_path / "store")
    assert main(["ingest", str(tmp_path / "sources.yaml"), "--store", store]) == 0
    [part] = (tmp_path / "store" / "raw_sft").glob("*/data/part-00000.parquet")
    frame = pl.read_parquet(part)
    frame.with_columns(turns=pl.col("turns").list.reverse()).write_parquet(part)
    assert main(["score", str(tmp_path / "sources.yaml"), "--store", store, "--no-model"]) == 2
    error = capsys.readouterr().err
    assert "integrity: error: raw_sft version " in error
    assert "data/part-00000.parquet does not match the sha256" in error


def test_versions_written_before_checksums_are_reported_not_failed(stored, capsys):
    store, version, frame, folder = stored
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["tables"]["data"]["sha256"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert store.read("raw_sft", version).equals(frame)  # still readable, unverified
    assert main(["verify", "--store", str(folder.parents[1])]) == 0
    out = capsys.readouterr().out
    assert f"SKIP  raw_sft/{version}: written before checksums were recorded" in out
    assert "1 older versions cannot be verified" in out
