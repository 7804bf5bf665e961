"""Containers: turn .json, .jsonl or .parquet files (local or s3://) into numbered records.

A source's uri is one file, a glob (``data/train-*.parquet``) or a folder of shards; shards are
read in name order as one source. A record is one dict as the file holds it, or the parse error
of its line. Malformed lines of a JSONL file become records with an error (they are quarantined,
not lost); a file that cannot be parsed at all raises IngestError naming the file and, where
known, the line.
"""

from __future__ import annotations

from collections.abc import Iterator
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import orjson
import pyarrow.parquet as pq


class IngestError(Exception):
    """A whole file cannot be read or parsed; the message names the file (and line)."""


@dataclass(slots=True)
class Record:
    """One record of a file: its position, its raw text where the file had one, its value.

    ``index`` is the record's position in the source (unique across shards); ``shard`` names its
    file and ``shard_index`` its position there when the source has more than one file."""

    index: int
    value: Any = None
    error: str | None = None
    text: str | None = None
    line: bytes | None = None  # the line as the file holds it (JSONL), decoded on demand
    shard: str | None = None
    shard_index: int | None = None

    def raw(self) -> str:
        """The record's raw text (re-serialised for JSON arrays and parquet rows)."""
        if self.text is None:
            if self.line is not None:
                self.text = self.line.decode("utf-8", errors="replace")
            else:
                self.text = orjson.dumps(self.value, default=json_fallback,
                                         option=orjson.OPT_SORT_KEYS).decode()
        return self.text


def json_fallback(value: Any) -> str:
    """orjson fallback for what JSON cannot hold (image bytes in parquet rows)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return str(value)


DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".pq")
_GLOB = re.compile(r"[*?\[]")


def container_of(uri: str) -> str:
    """``parquet`` for .parquet files, ``json`` otherwise (array or lines is decided by content)."""
    return "parquet" if uri.lower().endswith((".parquet", ".pq")) else "json"


def _open(uri: str, storage_options: dict):
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options if "://" in uri else {}))
    try:
        return fs.open(path, "rb")
    except (FileNotFoundError, IsADirectoryError) as error:
        raise IngestError(f"{uri}: file not found") from error
    except OSError as error:
        raise IngestError(f"{uri}: cannot read: {error}") from error


def shard_uris(uri: str, storage_options: dict | None = None) -> list[str]:
    """The files of a source: ``uri`` itself, or the data files a glob or folder names, sorted."""
    if not _GLOB.search(uri) and not uri.endswith("/") and "://" not in uri \
            and not Path(uri).is_dir():
        return [uri]  # one local file: the common case needs no listing
    fs, path = fsspec.core.url_to_fs(uri, **((storage_options or {}) if "://" in uri else {}))
    if _GLOB.search(path):
        paths = fs.glob(path)
    elif fs.isdir(path):
        paths = fs.find(path)
    else:
        return [uri]
    protocol = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    shards = sorted(p for p in paths if p.lower().endswith(DATA_SUFFIXES) and not fs.isdir(p))
    if not shards:
        raise IngestError(f"{uri}: no .json, .jsonl or .parquet file matches")
    return [protocol + p if protocol and not p.startswith(protocol) else p for p in shards]


def read_records(
    uri: str, *, storage_options: dict | None = None, batch_size: int = 20_000
) -> Iterator[list[Record]]:
    """Yield the records of ``uri`` (a file, glob or folder) in batches, in file order."""
    shards = shard_uris(uri, storage_options)
    if len(shards) == 1:
        yield from _file_records(shards[0], storage_options or {}, batch_size)
        return
    # Shards are named relative to their common folder: unique, and stable when it moves.
    common = posixpath.commonpath([shard.split("://", 1)[-1] for shard in shards])
    offset = 0
    for shard in shards:
        name = posixpath.relpath(shard.split("://", 1)[-1], common)
        last = -1
        for batch in _file_records(shard, storage_options or {}, batch_size):
            for record in batch:
                record.shard, record.shard_index = name, record.index
                last = record.index
                record.index += offset
            yield batch
        offset += last + 1


def _file_records(uri: str, storage_options: dict, batch_size: int) -> Iterator[list[Record]]:
    if container_of(uri) == "parquet":
        yield from _parquet_records(uri, storage_options, batch_size)
        return
    with _open(uri, storage_options) as handle:
        data = handle.read()
    if data.lstrip()[:1] == b"[":
        yield from _array_records(uri, data, batch_size)
    else:
        yield from _line_records(uri, data, batch_size)


def _array_records(uri: str, data: bytes, batch_size: int) -> Iterator[list[Record]]:
    try:
        values = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        line = data.count(b"\n", 0, error.pos) + 1
        raise IngestError(f"{uri}: not valid JSON at line {line}: {error.msg}") from error
    for start in range(0, len(values), batch_size):
        yield [Record(i, value) for i, value in enumerate(values[start : start + batch_size], start)]


def _line_records(uri: str, data: bytes, batch_size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    parsed_any = False
    first_error = None
    for number, line in enumerate(data.splitlines()):
        if not line.strip():
            continue
        try:
            batch.append(Record(number, orjson.loads(line), line=line))
            parsed_any = True
        except orjson.JSONDecodeError as error:
            batch.append(Record(number, error=f"line {number + 1}: {error.msg}", line=line))
            first_error = first_error or f"line {number + 1}: {error.msg}"
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if first_error and not parsed_any:
        raise IngestError(f"{uri}: no line is valid JSON ({first_error})")
    if batch:
        yield batch


def _parquet_records(uri: str, storage_options: dict, batch_size: int) -> Iterator[list[Record]]:
    with _open(uri, storage_options) as handle:
        try:
            parquet = pq.ParquetFile(handle)
            index = 0
            for batch in parquet.iter_batches(batch_size=batch_size):
                rows = batch.to_pylist()
                yield [Record(i, row) for i, row in enumerate(rows, index)]
                index += len(rows)
        except Exception as error:  # pyarrow raises several types for a file that is not parquet
            raise IngestError(f"{uri}: not a readable parquet file: {error}") from error
