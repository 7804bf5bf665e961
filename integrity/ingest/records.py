"""Containers: turn .json, .jsonl or .parquet files (local or s3://) into numbered records.

A source's uri is one file, a glob (``data/train-*.parquet``) or a folder of shards; shards are
read in name order as one source. A record is one dict as the file holds it, or the parse error
of its line. Malformed lines of a JSONL file become records with an error (they are quarantined,
not lost); a file that cannot be parsed at all raises IngestError naming the file and, where
known, the line.
"""

from __future__ import annotations

import codecs
import json
import os
import posixpath
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import orjson
import pyarrow.parquet as pq

from integrity.errors import UserError


class IngestError(UserError):
    """A whole file cannot be read or parsed; the message names the file (and line)."""


@dataclass(slots=True)
class Record:
    """One record of a file: its position, its raw text where the file had one, its value.

    ``index`` is the record's position in the source (unique across shards); ``shard`` names its
    file and ``shard_index`` its position there when the source has more than one file. A JSON
    line is parsed on demand (``parse``): most lines never are, the columnar path reads them."""

    index: int
    value: Any = None
    error: str | None = None
    text: str | None = None
    line: bytes | None = None  # the line as the file holds it (JSONL), decoded on demand
    shard: str | None = None
    shard_index: int | None = None
    duplicate_keys: list[str] | None = None  # keys an object of the record repeats
    parsed: bool = True

    def parse(self) -> Record:
        """Parse the record's line, once: sets ``value`` (and ``duplicate_keys``) or ``error``."""
        if not self.parsed:
            self.parsed = True
            try:
                self.value = orjson.loads(self.line)
                self.duplicate_keys = repeated_keys(self.line, self.value)
            except orjson.JSONDecodeError as error:
                line = self.index if self.shard_index is None else self.shard_index
                self.error = f"line {line + 1}: {error.msg}"
        return self

    def raw(self) -> str:
        """The record's raw text (re-serialised for JSON arrays and parquet rows; a record
        nested deeper than JSON serialisers go is shown cut at that depth)."""
        if self.text is None:
            if self.line is not None:
                self.text = self.line.decode("utf-8", errors="replace")
            else:
                try:
                    self.text = orjson.dumps(self.value, default=json_fallback,
                                             option=orjson.OPT_SORT_KEYS).decode()
                except orjson.JSONEncodeError:
                    self.text = orjson.dumps(_cut(self.value, MAX_DEPTH - 1),
                                             default=json_fallback,
                                             option=orjson.OPT_SORT_KEYS).decode()
        return self.text


# orjson serialises at most 254 levels; a record nested deeper is quarantined (too_deeply_nested).
MAX_DEPTH = 254


def _cut(value: Any, depth: int) -> Any:
    """``value`` with everything below ``depth`` levels replaced by "..."."""
    if depth <= 0:
        return "..." if isinstance(value, dict | list) else value
    if isinstance(value, dict):
        return {key: _cut(item, depth - 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut(item, depth - 1) for item in value]
    return value


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
    if "://" not in uri:  # a FIFO or device would block or never end: regular files only
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = None  # reported below as fsspec sees it
        if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            raise IngestError(f"{uri}: not a regular file (a FIFO, device or socket)")
    try:
        return fs.open(path, "rb")
    except (FileNotFoundError, IsADirectoryError) as error:
        raise IngestError(f"{uri}: file not found") from error
    except OSError as error:
        raise IngestError(f"{uri}: cannot read: {error}") from error


def shard_uris(uri: str, storage_options: dict | None = None) -> list[str]:
    """The files of a source: ``uri`` itself, or the data files a glob or folder names, sorted."""
    if uri.startswith(("http://", "https://")):
        return [uri]  # a web address names one file (a ? starts its query, not a glob)
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
    uri: str, *, storage_options: dict | None = None, batch_size: int = 20_000,
    shards: list[str] | None = None,
) -> Iterator[list[Record] | LineBatch]:
    """Yield the records of ``uri`` (a file, glob or folder) in batches, in file order;
    ``shards``: its files when the caller listed them already (``shard_uris``). A JSON-lines
    file's batches are ``LineBatch``es: sequences of records made as they are asked for."""
    shards = shards or shard_uris(uri, storage_options)
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
            if isinstance(batch, LineBatch):
                batch.shard, batch.offset, last = name, offset, batch.numbers[-1]
                yield batch
                continue
            for record in batch:
                record.shard, record.shard_index = name, record.index
                last = record.index
                record.index += offset
            yield batch
        offset += last + 1


def _file_records(uri: str, storage_options: dict, batch_size: int
                  ) -> Iterator[list[Record] | LineBatch]:
    if container_of(uri) == "parquet":
        yield from _parquet_records(uri, storage_options, batch_size)
        return
    with _open(uri, storage_options) as handle:
        data = handle.read().removeprefix(codecs.BOM_UTF8)  # Windows tools write a BOM
    start = data.lstrip()[:1]
    if start == b"[" or (start == b"{" and _one_document(data)):
        yield from _array_records(uri, data, batch_size)
    else:
        yield from _line_records(uri, data, batch_size)


def _one_document(data: bytes) -> bool:
    """Whether a file that starts with ``{`` is one (pretty-printed) object rather than JSON
    lines. A first line that parses alone is JSON lines' (one object over several lines never
    starts so), decided without reading on: orjson checks the whole input's UTF-8 before it
    parses (60 ms for 60 MB of lines)."""
    first_line, _, rest = data.lstrip().partition(b"\n")
    try:
        orjson.loads(first_line)
        return False  # a whole value on line one: the rest is more lines, or nothing
    except orjson.JSONDecodeError:
        pass
    try:
        return isinstance(orjson.loads(data), dict) and bool(rest.strip())
    except orjson.JSONDecodeError:
        return False


def _array_records(uri: str, data: bytes, batch_size: int) -> Iterator[list[Record]]:
    try:
        values = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        line = data.count(b"\n", 0, error.pos) + 1
        raise IngestError(f"{uri}: not valid JSON at line {line}: {error.msg}") from error
    if isinstance(values, dict):
        values = [values]
    repeated = _repeated_keys_by_record(data, values)
    for start in range(0, len(values), batch_size):
        yield [Record(i, value, duplicate_keys=repeated.get(i))
               for i, value in enumerate(values[start : start + batch_size], start)]


def _key_count(value: Any) -> int:
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            count += len(item)
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return count


class _Repeated(dict):
    """An object whose text repeats a key (JSON parsers silently keep the last value)."""

    repeated: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    marked = _Repeated(value)
    marked.repeated = sorted({key for key, _ in pairs if [k for k, _ in pairs].count(key) > 1})
    return marked


def _repeated_in(value: Any) -> list[str]:
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Repeated):
            found += item.repeated
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return sorted(set(found))


def repeated_keys(text: bytes, value: Any) -> list[str] | None:
    """The keys the JSON ``text`` of ``value`` repeats, or None. Cheap for the usual record:
    only when the text has another count of ``":`` than ``value`` has keys (a repeat, a ``":``
    inside a string, or spaces before a colon) is it parsed again, keeping every pair."""
    if text.count(b'":') == _key_count(value):
        return None
    try:
        return _repeated_in(json.loads(text, object_pairs_hook=_pairs)) or None
    except RecursionError:  # nested past Python's parser: quarantined as too deep anyway
        return None


def _repeated_keys_by_record(data: bytes, values: list) -> dict[int, list[str]]:
    if data.count(b'":') == sum(_key_count(value) for value in values):
        return {}
    again = json.loads(data, object_pairs_hook=_pairs)
    again = [again] if isinstance(again, dict) else again
    return {index: keys for index, value in enumerate(again) if (keys := _repeated_in(value))}


class LineBatch:
    """A batch of a JSON-lines file: its non-blank lines, unparsed, and their numbers in the
    file. Its records are made on demand (``record``, iteration): the columnar path reads the
    lines themselves, so most never are (a Python object per line was a fifth of ingest)."""

    __slots__ = ("lines", "numbers", "shard", "offset", "_made")

    def __init__(self, lines: list[bytes], numbers: Sequence[int]) -> None:
        self.lines = lines
        self.numbers = numbers  # each line's number in its file (0-based; blank lines skipped)
        self.shard: str | None = None  # the file's name when the source has several
        self.offset = 0  # added to a line's number for its index in the source
        self._made: dict[int, Record] = {}

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self) -> Iterator[Record]:
        return (self.record(position) for position in range(len(self.lines)))

    def record(self, position: int) -> Record:
        """The record of the line at ``position`` (the same object on every call)."""
        record = self._made.get(position)
        if record is None:
            number = self.numbers[position]
            record = self._made[position] = Record(
                number + self.offset, line=self.lines[position], parsed=False,
                shard=self.shard, shard_index=None if self.shard is None else number)
        return record

    def indexes(self) -> Sequence[int]:
        """Each line's index in the source."""
        return self.numbers if not self.offset else [n + self.offset for n in self.numbers]


def _line_records(uri: str, data: bytes, batch_size: int) -> Iterator[LineBatch]:
    """The file's non-blank lines in batches; only up to the first line that parses are they
    parsed here, so that a file with no JSON line at all is an error, not a quarantine."""
    lines = data.splitlines()
    numbers: Sequence[int] = range(len(lines))
    if not all(map(bytes.strip, lines)):  # blank lines are skipped (a line's number stays)
        numbers = [n for n, line in enumerate(lines) if line.strip()]
        lines = [lines[n] for n in numbers]
    parsed_any = False
    first_error = None
    for start in range(0, len(lines), batch_size):
        batch = LineBatch(lines[start : start + batch_size], numbers[start : start + batch_size])
        for line, number in zip(batch.lines, batch.numbers):
            if parsed_any:
                break
            probe = Record(number, line=line, parsed=False).parse()
            parsed_any = probe.error is None
            first_error = first_error or probe.error
        yield batch
    if first_error and not parsed_any:
        raise IngestError(f"{uri}: no line is valid JSON ({first_error})")


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
