"""Fixtures for ingest tests: real files (JSON, JSONL, parquet, PNG/JPEG) written under tmp_path."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from PIL import Image

from integrity.ingest import IngestResult, SourceConfig, ingest_source

# --- which files get opened -------------------------------------------------------------------
# An audit hook sees every open() in the process (fsspec's local files and PIL included), so a
# test can prove a file was never read. Hooks cannot be removed; this one only records inside
# `with opened() as paths:` blocks.
_RECORDERS: list[list[str]] = []


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _RECORDERS and isinstance(args[0], str | bytes):
        path = os.path.realpath(os.fsdecode(args[0]))
        for recorder in _RECORDERS:
            recorder.append(path)


sys.addaudithook(_audit)


@contextmanager
def _recording() -> Iterator[list[str]]:
    recorder: list[str] = []
    _RECORDERS.append(recorder)
    try:
        yield recorder
    finally:
        _RECORDERS.remove(recorder)


@pytest.fixture
def opened():
    """``with opened() as paths:`` collects the real paths of the files opened in the block."""
    return _recording


# --- images and data files -------------------------------------------------------------------
def image_bytes(fmt: str = "PNG", color: tuple[int, int, int] = (200, 30, 30),
                size: tuple[int, int] = (24, 16)) -> bytes:
    """A real, decodable image; different colors give different bytes."""
    buffer = io.BytesIO()
    image = Image.new("RGB", size, color)
    # A little structure so JPEGs are not trivially tiny and truncation hits scan data.
    for x in range(size[0]):
        image.putpixel((x, x % size[1]), (x * 7 % 256, 255 - color[1], color[2]))
    image.save(buffer, fmt)
    return buffer.getvalue()


class Files:
    """Writes fixture files under one tmp folder and ingests them."""

    def __init__(self, root: Path):
        self.root = root
        self.blob_root = root / "blobs"

    def image(self, relative: str | Path, fmt: str = "PNG", color=(200, 30, 30),
              base: Path | None = None) -> bytes:
        """Write a real image at ``base/relative`` (base: the default image root); return bytes."""
        path = (base or self.root / "images") / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        data = image_bytes(fmt, color)
        path.write_bytes(data)
        return data

    def raw(self, name: str, data: bytes | str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def jsonl(self, name: str, records: list[Any]) -> tuple[Path, list[str]]:
        """Write one JSON value per line; return the path and the lines as written."""
        lines = [record if isinstance(record, str) else json.dumps(record) for record in records]
        return self.raw(name, "\n".join(lines) + "\n"), lines

    def json(self, name: str, records: list[Any]) -> Path:
        return self.raw(name, json.dumps(records, indent=2))

    def ingest(self, path: Path | str, *, name: str = "t", format: str = "auto",
               image_root: Path | str | None = "default", **kwargs) -> IngestResult:
        root = self.root / "images" if image_root == "default" else image_root
        config = SourceConfig(name=name, uri=str(path), format=format,
                              image_root=None if root is None else str(root))
        return ingest_source(config, blob_root=str(self.blob_root), **kwargs)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


@pytest.fixture
def make_image_bytes():
    return image_bytes


def check_accounting(result: IngestResult, record_indices: list[int] | range) -> None:
    """Every record is in exactly one table, and the counts add up."""
    assert result.records_in == len(record_indices)
    assert result.accepted.height + result.quarantine.height == result.rows_in
    summary = result.summary()
    assert summary["accepted"] + summary["quarantined"] == summary["rows_in"]
    seen = pl.concat([result.accepted["row_index"], result.quarantine["row_index"]])
    assert sorted(seen.unique().to_list()) == sorted(record_indices)


@pytest.fixture
def accounted():
    return check_accounting
