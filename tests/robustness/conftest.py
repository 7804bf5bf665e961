"""Fixtures for the bad-input matrix: a tmp workspace that writes data files and images and
ingests them, and the accounting check every case ends with."""

from __future__ import annotations

import io
import json
import signal
import struct
import zlib
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from PIL import Image

from integrity.ingest import IngestResult, SourceConfig, ingest_source


def png_bytes(mode: str = "RGB", size: tuple[int, int] = (24, 16), color: Any = None) -> bytes:
    """A real PNG in ``mode`` (RGB, P, I;16, LA, 1, ...)."""
    buffer = io.BytesIO()
    Image.new(mode, size, color if color is not None else 0).save(buffer, "PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR announces ``width`` x ``height`` (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def qa(question: str = "<image>\nWhat is it?", answer: str = "A square.") -> list[dict]:
    """LLaVA conversations: one question, one answer."""
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


class Workspace:
    """Data files under ``root``, images under ``root/images`` (the default image root)."""

    def __init__(self, root: Path):
        self.root = root
        self.images = root / "images"
        self.images.mkdir()
        self.blob_root = root / "blobs"

    def image(self, relative: str, data: bytes | None = None) -> Path:
        path = self.images / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes() if data is None else data)
        return path

    def raw(self, name: str, data: bytes | str) -> Path:
        path = self.root / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def jsonl(self, name: str, records: list[Any]) -> Path:
        """One record per line; str records are written as they are (to write broken lines)."""
        lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
        return self.raw(name, "\n".join(lines) + "\n")

    def ingest(self, path: Path, **kwargs: Any) -> IngestResult:
        config = SourceConfig(name="t", uri=str(path), image_root=str(self.images))
        return ingest_source(config, blob_root=str(self.blob_root), **kwargs)

    def ingest_one(self, record: Any) -> IngestResult:
        """Ingest a JSONL file of ``record`` between two good text rows."""
        good = {"conversations": qa("Hi", "Hello")}
        return self.ingest(self.jsonl("one.jsonl", [good, record, good]))


DEADLINE_SECONDS = 180  # the slowest case (two processes scoring at once) takes about a minute


@pytest.fixture(autouse=True)
def deadline():
    """Every case of the matrix finishes in time, or fails: a hang is the bug."""
    def expired(signum, frame):
        raise TimeoutError(f"the case did not finish within {DEADLINE_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(DEADLINE_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


@pytest.fixture
def make_png():
    return png_bytes


@pytest.fixture
def make_bomb():
    return png_claiming


@pytest.fixture
def conversation():
    return qa


def assert_accounted(result: IngestResult, records: int) -> None:
    """rows in = accepted + quarantined, and every record is in one of the two tables."""
    summary = result.summary()
    assert summary["records_in"] == records
    assert summary["accepted"] + summary["quarantined"] == summary["rows_in"]
    assert result.accepted.height + result.quarantine.height == result.rows_in
    seen = pl.concat([result.accepted["row_index"], result.quarantine["row_index"]]).unique()
    assert sorted(seen.to_list()) == list(range(records))


def only_quarantined(result: IngestResult) -> dict:
    """The one quarantined row of ``ingest_one`` (the middle record), checked for accounting."""
    assert_accounted(result, 3)
    assert result.accepted["row_index"].to_list() == [0, 2]
    assert result.quarantine.height == 1
    return result.quarantine.row(0, named=True)


@pytest.fixture
def accounted():
    return assert_accounted


@pytest.fixture
def quarantined():
    return only_quarantined
