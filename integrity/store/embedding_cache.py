"""Embeddings cached by content hash, so a re-audit after a threshold change does no model work.

An entry is keyed by ``(model_id, kind, key)``: ``kind`` is ``image`` (key = sha256 of the image
bytes) or ``text`` (key = sha256 of the UTF-8 text). Entries live as immutable parquet parts::

    <root>/<model_id>/<kind>/part-<uuid4>.parquet   columns: key (string), embedding (binary)

Beside them, ``<root>/<model_id>/card.json`` holds what scoring needs of the model without
running it (its embedding size and temperature), written once by the first process that loads
the model.

``embedding`` holds the float16 bytes of an L2-normalised vector; every part records its
``dim`` in the parquet schema metadata. A writer only ever adds a part (locally written aside
and renamed; an S3 PUT is atomic), so readers and concurrent writers never see half a part.
The same key in two parts is harmless: the first part in name order wins. ``root`` is a local
folder or an ``s3://`` URI (through fsspec).

The parts of one ``(model_id, kind)`` are read once, into an in-memory index (a polars frame
from key to row, and one float16 matrix); ``put`` adds to that index too. Parts written by
other processes become visible after ``refresh()``.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import dataclass

import fsspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from integrity.errors import UserError

KINDS = ("image", "text")
_PART_PREFIX = "part-"
_PART_SUFFIX = ".parquet"
_CARD = "card.json"
# A stored vector is L2-normalised; float16 rounding moves its norm by ~1e-3 at most.
_NORM_TOLERANCE = 1e-2


class EmbeddingCacheError(UserError):
    """The cache holds or was given something unusable (mixed dimensions, a bad name, ...)."""


@dataclass
class _Index:
    """Everything known for one (model_id, kind): ``rows`` maps key -> row of ``vectors``."""

    rows: pl.DataFrame  # key (String), row (Int64); one row per key, first part wins
    vectors: np.ndarray  # (capacity, dim) float16; rows [0, size) are filled
    size: int
    dim: int | None

    @classmethod
    def empty(cls) -> _Index:
        return cls(
            rows=pl.DataFrame(schema={"key": pl.String, "row": pl.Int64}),
            vectors=np.zeros((0, 0), np.float16),
            size=0,
            dim=None,
        )

    def append(self, keys: pl.Series, vectors: np.ndarray) -> None:
        """Add rows for ``keys`` not indexed yet (vectors float16, (len(keys), dim))."""
        if self.dim is None:
            self.dim = vectors.shape[1]
            self.vectors = np.zeros((0, self.dim), np.float16)
        new = (
            pl.DataFrame({"key": keys})
            .with_row_index("offset")
            .unique("key", keep="first", maintain_order=True)
            .join(self.rows, on="key", how="anti")
        )
        if new.height == 0:
            return
        take = new["offset"].to_numpy()
        needed = self.size + len(take)
        if needed > len(self.vectors):  # grow geometrically: many small puts stay linear
            grown = np.zeros((max(needed, 2 * len(self.vectors)), self.dim), np.float16)
            grown[: self.size] = self.vectors[: self.size]
            self.vectors = grown
        self.vectors[self.size : needed] = vectors[take]
        added = new.select("key", row=pl.int_range(self.size, needed, dtype=pl.Int64))
        self.rows = pl.concat([self.rows, added], rechunk=False)
        self.size = needed


def _check_name(what: str, name: str) -> None:
    if not name or "/" in name or "\\" in name or name[0] in "._":
        raise EmbeddingCacheError(
            f"Invalid {what} {name!r}: it must be non-empty, contain no '/' or '\\', and not "
            "start with '.' or '_'."
        )


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise EmbeddingCacheError(f"Invalid kind {kind!r}: expected one of {KINDS}.")


def _decode_embeddings(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The (n, dim) float16 matrix behind a binary column of equal-length float16 blobs."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        raise EmbeddingCacheError("embedding column has nulls")
    if len(array) == 0:
        return np.zeros((0, 0), np.float16)
    if pa.types.is_large_binary(array.type):
        offset_type = np.int64
    elif pa.types.is_binary(array.type):
        offset_type = np.int32
    else:
        raise EmbeddingCacheError(f"embedding column has type {array.type}, expected binary")
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, offset_type)[array.offset : array.offset + len(array) + 1]
    widths = np.diff(offsets)
    if widths[0] == 0 or widths[0] % 2 or np.any(widths != widths[0]):
        raise EmbeddingCacheError(
            "embeddings of different byte lengths under one (model_id, kind): "
            f"{sorted(set(widths.tolist()))[:5]}"
        )
    data = np.frombuffer(data_buf, np.uint8)[offsets[0] : offsets[-1]]
    return data.view("<f2").reshape(len(array), int(widths[0]) // 2)


def _encode_embeddings(vectors: np.ndarray) -> pa.Array:
    """A binary column holding each row of ``vectors`` as little-endian float16 bytes."""
    n, dim = vectors.shape
    data = np.ascontiguousarray(vectors, dtype="<f2").tobytes()
    width = 2 * dim
    large = len(data) >= 2**31  # int32 offsets cannot address it
    offsets = np.arange(n + 1, dtype=np.int64 if large else np.int32) * width
    kind = pa.large_binary() if large else pa.binary()
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


class EmbeddingCache:
    """Embeddings by (model_id, kind, key) under ``root`` (a local folder or s3://...).

    ``storage_options`` go to fsspec (for S3: ``key``, ``secret``,
    ``client_kwargs={"endpoint_url": ...}``). Safe to share between threads of one process;
    processes share through the parts on storage.
    """

    def __init__(self, root: str, *, storage_options: dict | None = None) -> None:
        self.storage_options: dict = dict(storage_options or {})
        self.fs, path = fsspec.core.url_to_fs(root, **self.storage_options)
        self._path: str = path.rstrip("/") or path
        self._local = isinstance(self.fs, LocalFileSystem)
        self.root: str = self._path if self._local else self.fs.unstrip_protocol(self._path)
        self._indexes: dict[tuple[str, str], _Index] = {}
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        self.parts_read = 0
        self.parts_written = 0

    def __repr__(self) -> str:
        return f"EmbeddingCache({self.root!r})"

    # -- reading -----------------------------------------------------------------------

    def _folder(self, model_id: str, kind: str) -> str:
        _check_name("model_id", model_id)
        _check_kind(kind)
        return f"{self._path}/{model_id}/{kind}"

    def _part_paths(self, folder: str) -> list[str]:
        # Other processes add parts: never trust a cached listing.
        self.fs.invalidate_cache(folder)
        if not self.fs.isdir(folder):
            return []
        names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False)]
        parts = sorted(n for n in names if n.startswith(_PART_PREFIX) and n.endswith(_PART_SUFFIX))
        return [f"{folder}/{name}" for name in parts]

    def _load(self, model_id: str, kind: str) -> _Index:
        """The index of (model_id, kind), reading its parts on first use."""
        with self._lock:
            index = self._indexes.get((model_id, kind))
            if index is not None:
                return index
            paths = self._part_paths(self._folder(model_id, kind))
            index = _Index.empty()
            if paths:
                # One dataset read: pyarrow fetches and decodes the parts in parallel.
                table = pq.read_table(
                    paths, columns=["key", "embedding"], filesystem=None if self._local else self.fs
                )
                vectors = _decode_embeddings(table.column("embedding"))
                if len(vectors):
                    index.append(pl.Series("key", table.column("key"), pl.String), vectors)
                self.parts_read += len(paths)
            self._indexes[(model_id, kind)] = index
            return index

    def lookup(self, model_id: str, kind: str, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for ``keys`` in order: ``(vectors (n, dim) float32, found (n,) bool)``.

        Rows of keys not in the cache are zero. ``dim`` is 0 when the cache holds nothing for
        (model_id, kind). Counts a hit or a miss per key.
        """
        index = self._load(model_id, kind)
        with self._lock:
            if index.size == 0:
                found = np.zeros(len(keys), bool)
                vectors = np.zeros((len(keys), index.dim or 0), np.float32)
            else:
                rows = (
                    pl.DataFrame({"key": keys}, schema={"key": pl.String})
                    .join(index.rows, on="key", how="left", maintain_order="left")["row"]
                    .fill_null(-1)
                    .to_numpy()
                )
                found = rows >= 0
                vectors = np.zeros((len(keys), index.dim), np.float32)
                vectors[found] = index.vectors[rows[found]]
            hits = int(found.sum())
            self.hits += hits
            self.misses += len(keys) - hits
        return vectors, found

    def get(self, model_id: str, kind: str, keys: list[str]) -> dict[str, np.ndarray]:
        """``{key: float32 vector}`` for the keys that are cached; absent keys are left out."""
        vectors, found = self.lookup(model_id, kind, keys)
        return {keys[i]: vectors[i] for i in np.flatnonzero(found)}

    def refresh(self, model_id: str | None = None, kind: str | None = None) -> None:
        """Forget loaded indexes (all, or one model_id / kind) so the next read re-scans parts."""
        with self._lock:
            for cached in list(self._indexes):
                if (model_id is None or cached[0] == model_id) and (
                    kind is None or cached[1] == kind
                ):
                    del self._indexes[cached]

    def stats(self) -> dict[str, int]:
        """Counters since creation: hits, misses, parts_read, parts_written."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "parts_read": self.parts_read,
            "parts_written": self.parts_written,
        }

    # -- writing -----------------------------------------------------------------------

    def model_card(self, model_id: str) -> dict | None:
        """The card stored for ``model_id`` (``put_model_card``), or None."""
        _check_name("model_id", model_id)
        path = f"{self._path}/{model_id}/{_CARD}"
        self.fs.invalidate_cache(path)
        if not self.fs.isfile(path):
            return None
        with self.fs.open(path, "rb") as handle:
            try:
                return json.load(handle)
            except json.JSONDecodeError as error:
                raise EmbeddingCacheError(f"{path} is not JSON (delete it to rebuild it): "
                                          f"{error}") from error

    def put_model_card(self, model_id: str, card: dict) -> None:
        """Store ``card`` (JSON-able) for ``model_id``; whole or not at all, as a part."""
        _check_name("model_id", model_id)
        folder = f"{self._path}/{model_id}"
        text = json.dumps(card, sort_keys=True)
        if self._local:
            os.makedirs(folder, exist_ok=True)
            aside = f"{folder}/.{_CARD}.{uuid.uuid4()}.tmp"
            with open(aside, "w") as handle:
                handle.write(text)
            os.replace(aside, f"{folder}/{_CARD}")
        else:
            self.fs.pipe_file(f"{folder}/{_CARD}", text.encode())

    def put(self, model_id: str, kind: str, keys: list[str], vectors: np.ndarray) -> str | None:
        """Store ``vectors`` (n, dim), L2-normalised, for ``keys`` as one new part.

        Returns the part's path, or None when there is nothing to write. Raises
        EmbeddingCacheError for a shape that does not match the keys or the dimension already
        stored, and for vectors that are not unit length.
        """
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(keys):
            raise EmbeddingCacheError(
                f"put needs one vector per key: {len(keys)} keys, vectors of shape {vectors.shape}"
            )
        if len(keys) == 0:
            return None
        half = vectors.astype(np.float16)
        norms = np.linalg.norm(half.astype(np.float32), axis=1)
        if not np.all(np.abs(norms - 1.0) <= _NORM_TOLERANCE):
            raise EmbeddingCacheError("put needs L2-normalised, finite vectors")
        folder = self._folder(model_id, kind)
        index = self._load(model_id, kind)
        if index.dim is not None and index.dim != half.shape[1]:
            raise EmbeddingCacheError(
                f"{model_id}/{kind} holds {index.dim}-d embeddings; got {half.shape[1]}-d"
            )
        key_array = pa.array(keys, pa.string())
        table = pa.table({"key": key_array, "embedding": _encode_embeddings(half)})
        table = table.replace_schema_metadata(
            {"dim": str(half.shape[1]), "dtype": "float16", "model_id": model_id, "kind": kind}
        )
        name = f"{_PART_PREFIX}{uuid.uuid4()}{_PART_SUFFIX}"
        path = f"{folder}/{name}"
        if self._local:
            os.makedirs(folder, exist_ok=True)
            aside = f"{folder}/.{name}.tmp"  # not a part name: listings skip it
            pq.write_table(table, aside)
            os.replace(aside, path)
        else:
            with self.fs.open(path, "wb") as handle:
                pq.write_table(table, handle)
        with self._lock:
            index.append(pl.Series("key", key_array, pl.String), half)
            self.parts_written += 1
        return path if self._local else self.fs.unstrip_protocol(path)
