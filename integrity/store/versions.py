"""Content-addressed, versioned dataset store: parquet parts plus a manifest, local or ``s3://``.

Layout::

    <root>/<asset>/<version>/<table>/part-00000.parquet ...
    <root>/<asset>/<version>/manifest.json          # written last: the commit marker
    <root>/<asset>/_latest/<partition>.json        # {"version": ...}, written after commit
    <root>/<asset>/.staging/<version>-<uuid>/      # local only: a version being written

A version is visible if and only if its ``manifest.json`` exists, so a killed run never leaves
a half-written version behind. The version is a hash of the data and of everything that
produced it (see :func:`content_version`), so writing the same thing twice is a no-op.

The manifest records the sha256 of every part file, and every read checks it (hashing the bytes
it reads anyway): data changed on disk after the commit is a StoreError naming the version and
the file, never silently consumed. Attachments (reports, exports) are recorded the same way in
``attachments/SHA256SUMS.json``. :meth:`VersionStore.verify` checks a whole version, its content
hash included.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

import fsspec.core
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel

from integrity.errors import UserError

MANIFEST = "manifest.json"
LATEST_DIR = "_latest"
STAGING_DIR = ".staging"
ATTACHMENTS_DIR = "attachments"  # files derived from a version, beside its tables
ATTACHMENT_SUMS = "SHA256SUMS.json"  # attachment name -> sha256, written with each attachment
UNPARTITIONED = "_unpartitioned"
VERSION_CHARS = 16
# Rows per Arrow batch when hashing: bounds the memory of the normalising copy.
_HASH_BATCH_ROWS = 65_536


class StoreError(UserError):
    """A user-facing store error (unknown version, bad name, ...), one clear sentence."""


class TableInfo(BaseModel):
    """One table of a version: row count, schema, the part files holding it and their sha256
    (empty for versions written before checksums were recorded)."""

    rows: int
    columns: dict[str, str]
    parts: list[str]
    sha256: list[str] = []


class Manifest(BaseModel):
    """Everything known about one committed version of an asset."""

    asset: str
    version: str
    partition: str | None
    tables: dict[str, TableInfo]
    upstream: dict[str, str]
    code_version: str
    params: dict[str, Any]
    extra: dict[str, Any]
    created_at: str


def _canonical_json(obj: Any) -> bytes:
    """Return ``obj`` as canonical JSON bytes (sorted keys, no spaces); StoreError if not JSON."""
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        msg = f"Version identity must be plain JSON (str, number, list, dict): {exc}."
        raise StoreError(msg) from exc
    return text.encode()


def _table_digest(df: pl.DataFrame) -> str:
    """Return the sha256 hex of ``df``'s uncompressed Arrow IPC stream, in fixed-size batches.

    ``take`` rebuilds every buffer: polars can leave garbage in the padding bits of validity
    bitmaps and keep chunk layouts that depend on how the frame was built, which would give
    equal frames different bytes.
    """
    table = df.to_arrow()
    digest = hashlib.sha256()

    class _Sink:  # a write-only file that hashes instead of storing
        closed = False

        def write(self, data: bytes) -> int:
            digest.update(data)
            return len(data)

        def flush(self) -> None:
            pass

    with ipc.new_stream(pa.PythonFile(_Sink(), mode="w"), table.schema) as writer:
        for start in range(0, table.num_rows, _HASH_BATCH_ROWS):
            chunk = table.slice(start, _HASH_BATCH_ROWS)
            writer.write_table(chunk.take(pl.int_range(chunk.num_rows, eager=True).to_arrow()))
    return digest.hexdigest()


def content_version(
    asset: str,
    tables: dict[str, pl.DataFrame],
    *,
    partition: str | None = None,
    upstream: dict[str, str] | None = None,
    code_version: str,
    params: dict[str, Any] | None = None,
) -> str:
    """Return the content version (16 hex chars) of ``tables`` produced under this identity.

    sha256 over canonical JSON of asset, partition, upstream, code_version, params and, per
    table in sorted name order, its name and the sha256 of its Arrow IPC stream. Same data and
    identity give the same version; any change (including row order) gives another.
    """
    doc = {
        "asset": asset,
        "partition": partition,
        "upstream": upstream or {},
        "code_version": code_version,
        "params": params or {},
        "tables": [[name, _table_digest(tables[name])] for name in sorted(tables)],
    }
    return hashlib.sha256(_canonical_json(doc)).hexdigest()[:VERSION_CHARS]


def _check_name(kind: str, name: str) -> None:
    """Raise StoreError unless ``name`` is usable as one path segment that is not reserved."""
    if not name or "/" in name or "\\" in name or name[0] in "._" or name == MANIFEST:
        raise StoreError(
            f"Invalid {kind} name {name!r}: it must be non-empty, have no '/', and not start "
            "with '.' or '_'."
        )


class _HashingWriter:
    """A file wrapper that hashes every byte written through it."""

    def __init__(self, file) -> None:
        self.file, self.digest = file, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.file.write(data)

    def __getattr__(self, name: str):
        return getattr(self.file, name)


def _write_parquet(fs: AbstractFileSystem, path: str, df: pl.DataFrame) -> str:
    """Write ``df`` as one parquet file at ``path`` on ``fs``; return the file's sha256."""
    with fs.open(path, "wb") as f:
        writer = _HashingWriter(f)
        df.write_parquet(writer)
    return writer.digest.hexdigest()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_text(fs: AbstractFileSystem, path: str, text: str | bytes) -> None:
    """Write ``text`` to ``path``; locally through a temp file + rename so readers never see half."""
    data = text.encode() if isinstance(text, str) else text
    if isinstance(fs, LocalFileSystem):
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:  # disk full, killed: never leave the half-written file behind
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            raise
    else:
        # An S3 PUT is atomic already.
        with fs.open(path, "wb") as f:
            f.write(data)


def _write_manifest(fs: AbstractFileSystem, version_path: str, manifest: Manifest) -> None:
    """Write ``manifest.json`` into ``version_path``: the commit marker, always written last."""
    _write_text(fs, f"{version_path}/{MANIFEST}", manifest.model_dump_json(indent=2))


def _polars_s3_options(options: dict[str, Any]) -> dict[str, str]:
    """Translate fsspec/s3fs storage options to the object_store keys polars' readers expect."""
    client = options.get("client_kwargs") or {}
    # Like boto3, fall back to the environment's endpoint (credentials polars reads itself).
    endpoint = (options.get("endpoint_url") or client.get("endpoint_url")
                or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
    out = {
        "aws_access_key_id": options.get("key"),
        "aws_secret_access_key": options.get("secret"),
        "aws_session_token": options.get("token"),
        "aws_endpoint_url": endpoint,
        "aws_region": client.get("region_name") or os.environ.get("AWS_DEFAULT_REGION"),
    }
    if endpoint and str(endpoint).startswith("http://"):
        out["aws_allow_http"] = "true"
    if options.get("anon"):
        out["aws_skip_signature"] = "true"
    return {k: str(v) for k, v in out.items() if v}


class LatestVersions(Protocol):
    """Says which version of each of ``assets`` is the latest (a Dagster run's materializations)."""

    assets: frozenset[str]

    def __call__(self, asset: str, partition: str | None) -> str | None: ...


class VersionStore:
    """Immutable, content-addressed versions of assets under ``root`` (a folder or s3://...)."""

    def __init__(self, root: str, *, storage_options: dict[str, Any] | None = None,
                 latest_from: LatestVersions | None = None) -> None:
        """Open the store at ``root``; a local folder is created if missing.

        ``storage_options`` go to fsspec (for S3: ``key``, ``secret``,
        ``client_kwargs={"endpoint_url": ...}``). ``latest_from``: who says which version of
        its ``assets`` is the latest (see :meth:`latest`); by default the store's own pointers.
        """
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        self._latest_from = latest_from
        self.fs, path = fsspec.core.url_to_fs(root, **self.storage_options)
        self._path: str = path.rstrip("/")
        self._local = isinstance(self.fs, LocalFileSystem)
        if self._local:
            self.fs.makedirs(self._path, exist_ok=True)
            self.root: str = self._path
        else:
            self.root = self.fs.unstrip_protocol(self._path)

    # -- paths ---------------------------------------------------------------------------

    @property
    def blob_root(self) -> str:
        """Where embedded image bytes are written: beside the versions, content-addressed."""
        return f"{self.root.rstrip('/')}/images"

    def uri(self, asset: str, version: str) -> str:
        """Return the URI of a version's folder: ``<root>/<asset>/<version>``."""
        return f"{self.root}/{asset}/{version}"

    def _version_path(self, asset: str, version: str) -> str:
        return f"{self._path}/{asset}/{version}"

    def _latest_path(self, asset: str, partition: str | None) -> str:
        # Quote so any partition key is one safe file name; plain keys stay as they are.
        name = UNPARTITIONED if partition is None else quote(partition, safe="")
        return f"{self._path}/{asset}/{LATEST_DIR}/{name}.json"

    def _is_file(self, path: str) -> bool:
        # Other processes write here too: never trust a cached listing.
        self.fs.invalidate_cache(path.rsplit("/", 1)[0])
        return bool(self.fs.isfile(path))

    def _read_json(self, path: str) -> Any:
        with self.fs.open(path, "r", encoding="utf-8") as f:
            return json.load(f)

    # -- reading -------------------------------------------------------------------------

    def exists(self, asset: str, version: str) -> bool:
        """Return True if the version is committed (its manifest.json exists)."""
        return self._is_file(f"{self._version_path(asset, version)}/{MANIFEST}")

    def manifest(self, asset: str, version: str) -> Manifest:
        """Return the manifest of a committed version; StoreError if there is none."""
        if not self.exists(asset, version):
            raise StoreError(f"Unknown version {version!r} of asset {asset!r} in {self.root}.")
        path = f"{self._version_path(asset, version)}/{MANIFEST}"
        return Manifest.model_validate(self._read_json(path))

    def _parts(self, asset: str, version: str, table: str) -> list[tuple[str, str | None]]:
        """(fs path, recorded sha256 or None) of a committed table's parts; StoreError for an
        unknown table."""
        man = self.manifest(asset, version)
        if table not in man.tables:
            raise StoreError(
                f"Version {version!r} of asset {asset!r} has no table {table!r} "
                f"(it has {sorted(man.tables)})."
            )
        base = self._version_path(asset, version)
        info = man.tables[table]
        sums = info.sha256 or [None] * len(info.parts)
        return [(f"{base}/{part}", digest) for part, digest in zip(info.parts, sums, strict=True)]

    def _part_paths(self, asset: str, version: str, table: str) -> list[str]:
        return [path for path, _ in self._parts(asset, version, table)]

    def _read_verified(self, asset: str, version: str, path: str, expected: str | None) -> bytes:
        """The bytes of one stored file, checked against the sha256 recorded at commit."""
        name = path[len(self._version_path(asset, version)):].lstrip("/")
        try:
            with self.fs.open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise StoreError(f"{asset} version {version}: {name} is missing "
                             "(the stored version was changed after it was written)") from None
        if expected is not None and sha256_of(data) != expected:
            raise StoreError(
                f"{asset} version {version}: {name} does not match the sha256 "
                "recorded when it was written (the stored data was changed after the commit; "
                "`integrity verify` checks the whole store)")
        return data


    def read(self, asset: str, version: str, table: str = "data") -> pl.DataFrame:
        """Return one table of a committed version as a DataFrame, rows in written order; each
        part's bytes are checked against the sha256 the manifest recorded."""
        frames = [pl.read_parquet(io.BytesIO(self._read_verified(asset, version, path, digest)))
                  for path, digest in self._parts(asset, version, table)]
        return pl.concat(frames, how="vertical")

    def scan(self, asset: str, version: str, table: str = "data") -> pl.LazyFrame:
        """Return one table of a committed version as a LazyFrame over its parquet parts (each
        part checked against its recorded sha256 first, one streamed pass)."""
        for path, digest in self._parts(asset, version, table):
            if digest is not None and self._file_sha256(path) != digest:
                self._read_verified(asset, version, path, digest)  # raises, naming the file
        paths = self._part_paths(asset, version, table)
        if self._local:
            return pl.scan_parquet(paths)
        uris = [self.fs.unstrip_protocol(p) for p in paths]
        if "s3" in self.fs.protocol:
            options = _polars_s3_options(self.storage_options)
        else:
            options = self.storage_options
        return pl.scan_parquet(uris, storage_options=options or None)

    def assets(self) -> list[str]:
        """The assets with at least one committed version (caches beside them are not)."""
        self.fs.invalidate_cache(self._path)
        names = [entry.rstrip("/").rsplit("/", 1)[-1]
                 for entry in self.fs.ls(self._path, detail=False) if self.fs.isdir(entry)]
        return sorted(name for name in names if name[:1] not in "._" and self.versions(name))

    def versions(self, asset: str) -> list[str]:
        """Return the committed versions of ``asset``, oldest first (by created_at)."""
        asset_path = f"{self._path}/{asset}"
        self.fs.invalidate_cache(asset_path)
        if not self.fs.isdir(asset_path):
            return []
        found = []
        for entry in self.fs.ls(asset_path, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            manifest_path = f"{asset_path}/{name}/{MANIFEST}"
            if name[:1] in "._" or not self._is_file(manifest_path):
                continue
            found.append((self._read_json(manifest_path)["created_at"], name))
        return [name for _, name in sorted(found)]

    def _file_sha256(self, path: str) -> str | None:
        digest = hashlib.sha256()
        try:
            with self.fs.open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        return digest.hexdigest()

    def checksummed(self, asset: str, version: str) -> bool:
        """Whether the version's manifest records its files' checksums (versions written
        before they were recorded do not, and cannot be verified)."""
        return all(info.sha256 for info in self.manifest(asset, version).tables.values())

    def verify(self, asset: str, version: str) -> list[str]:
        """Every problem of one committed version (empty when it is intact): a part or an
        attachment whose bytes changed or went missing, a table whose rows no longer hash to the
        version's content hash."""
        man = self.manifest(asset, version)
        problems, tables = [], {}
        if not self.checksummed(asset, version):
            return []  # written before checksums were recorded: nothing to check against
        for table, info in man.tables.items():
            try:
                tables[table] = self.read(asset, version, table)
            except StoreError as error:
                problems.append(str(error))
        if len(tables) == len(man.tables):
            recomputed = content_version(asset, tables, partition=man.partition,
                                         upstream=man.upstream, code_version=man.code_version,
                                         params=man.params)
            if recomputed != version:
                problems.append(f"{asset}/{version}: its tables hash to {recomputed}, not to the "
                                "version's name (the manifest or the data was edited)")
        for name, digest in self._attachment_sums(asset, version).items():
            path = f"{self._version_path(asset, version)}/{ATTACHMENTS_DIR}/{name}"
            if self._file_sha256(path) != digest:
                problems.append(f"{asset}/{version}: attachment {name} changed or is missing")
        return problems

    def latest(self, asset: str, partition: str | None = None) -> str | None:
        """The latest version of ``partition`` of ``asset``, or None: the one every reader
        (audit peers, calibration, the gate, the CLI) means by "latest".

        It is the version last committed by whoever owns the asset: the store's pointer
        (:meth:`pointer`) unless ``latest_from`` owns the asset. A Dagster run passes its
        materializations for the assets of the code location, so nothing in a run reads a
        version Dagster never materialized and checked (one written by the CLI, say).
        """
        if self._latest_from is not None and asset in self._latest_from.assets:
            version = self._latest_from(asset, partition)
        else:
            version = self.pointer(asset, partition)
        return version if version is not None and self.exists(asset, version) else None

    def pointer(self, asset: str, partition: str | None = None) -> str | None:
        """The version last committed to this store for ``partition`` of ``asset`` (by any
        writer), or None."""
        path = self._latest_path(asset, partition)
        return self._read_json(path)["version"] if self._is_file(path) else None

    # -- writing -------------------------------------------------------------------------

    def attach(self, asset: str, version: str, name: str, content: str | bytes) -> str:
        """Write a file derived from a committed version (a report, an export) next to it, at
        ``<version>/attachments/<name>``; returns its URI. Not part of the version's hash:
        write only what the version's own data determines. Its sha256 is recorded in
        ``attachments/SHA256SUMS.json`` (see :meth:`read_attachment`)."""
        _check_name("attachment", name)
        if name == ATTACHMENT_SUMS:
            raise StoreError(f"Invalid attachment name {name!r}: reserved.")
        if not self.exists(asset, version):
            raise StoreError(f"Unknown version {version!r} of asset {asset!r} in {self.root}.")
        folder = f"{self._version_path(asset, version)}/{ATTACHMENTS_DIR}"
        self.fs.makedirs(folder, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        _write_text(self.fs, f"{folder}/{name}", data)
        sums = self._attachment_sums(asset, version) | {name: sha256_of(data)}
        _write_text(self.fs, f"{folder}/{ATTACHMENT_SUMS}", json.dumps(sums, indent=2, sort_keys=True))
        return self.attachment_uri(asset, version, name)

    def _attachment_sums(self, asset: str, version: str) -> dict[str, str]:
        path = f"{self._version_path(asset, version)}/{ATTACHMENTS_DIR}/{ATTACHMENT_SUMS}"
        return self._read_json(path) if self._is_file(path) else {}

    def read_attachment(self, asset: str, version: str, name: str) -> bytes:
        """An attachment's bytes, checked against the sha256 recorded when it was attached."""
        path = f"{self._version_path(asset, version)}/{ATTACHMENTS_DIR}/{name}"
        return self._read_verified(asset, version, path,
                                   self._attachment_sums(asset, version).get(name))

    def attachment_uri(self, asset: str, version: str, name: str) -> str:
        return f"{self.uri(asset, version)}/{ATTACHMENTS_DIR}/{name}"

    def write(
        self,
        asset: str,
        tables: dict[str, pl.DataFrame],
        *,
        partition: str | None = None,
        upstream: dict[str, str] | None = None,
        code_version: str,
        params: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        rows_per_part: int = 1_000_000,
        publish: bool = True,
    ) -> Manifest:
        """Write ``tables`` as one version of ``asset`` and return its manifest.

        The version is :func:`content_version` of the tables and identity; ``extra`` and
        ``created_at`` are recorded but not hashed. If the version exists already nothing is
        written and its manifest is returned. Either way, with ``publish``, the latest pointer
        of ``partition`` is set to this version; without, the version is kept (readable by its
        name) but consumers of ``latest`` never see it (see :meth:`publish`).
        """
        _check_name("asset", asset)
        if not tables:
            raise StoreError(f"Nothing to write for asset {asset!r}: no tables given.")
        for name in tables:
            _check_name("table", name)
        if rows_per_part < 1:
            raise StoreError(f"rows_per_part must be at least 1, got {rows_per_part}.")
        upstream, params = dict(upstream or {}), dict(params or {})
        version = content_version(
            asset,
            tables,
            partition=partition,
            upstream=upstream,
            code_version=code_version,
            params=params,
        )

        if self.exists(asset, version):
            manifest = self.manifest(asset, version)
        else:
            manifest = Manifest(
                asset=asset,
                version=version,
                partition=partition,
                tables={
                    name: TableInfo(
                        rows=df.height,
                        columns={col: str(dtype) for col, dtype in df.schema.items()},
                        parts=[
                            f"{name}/part-{i:05d}.parquet"
                            for i in range(max(1, -(-df.height // rows_per_part)))
                        ],
                    )
                    for name, df in tables.items()
                },
                upstream=upstream,
                code_version=code_version,
                params=params,
                extra=dict(extra or {}),
                created_at=datetime.now(UTC).isoformat(),
            )
            if self._local:
                manifest = self._commit_local(tables, manifest, rows_per_part)
            else:
                # No rename on S3: parts go in place, and the manifest (last) makes them visible.
                path = self._version_path(asset, version)
                self._write_parts(path, tables, manifest, rows_per_part)
                _write_manifest(self.fs, path, manifest)
        if publish:
            self.publish(asset, version, partition)
        return manifest

    def publish(self, asset: str, version: str, partition: str | None = None) -> None:
        """Make ``version`` the latest of ``partition``: what consumers of ``latest`` read."""
        if not self.exists(asset, version):
            raise StoreError(f"Unknown version {version!r} of asset {asset!r} in {self.root}.")
        self.fs.makedirs(self._latest_path(asset, partition).rsplit("/", 1)[0], exist_ok=True)
        _write_text(self.fs, self._latest_path(asset, partition), json.dumps({"version": version}))

    def _write_parts(
        self, base: str, tables: dict[str, pl.DataFrame], manifest: Manifest, rows_per_part: int
    ) -> None:
        """Write every table's parts under ``base``; an empty table gets one part (its schema)."""
        for name, df in tables.items():
            self.fs.makedirs(f"{base}/{name}", exist_ok=True)
            manifest.tables[name].sha256 = [
                _write_parquet(self.fs, f"{base}/{part}",
                               df.slice(i * rows_per_part, rows_per_part))
                for i, part in enumerate(manifest.tables[name].parts)]

    def _commit_local(
        self, tables: dict[str, pl.DataFrame], manifest: Manifest, rows_per_part: int
    ) -> Manifest:
        """Write the version into a staging folder, then rename it into place (atomic).

        Returns ``manifest``, or the existing one when another writer committed it first.
        """
        asset, version = manifest.asset, manifest.version
        staging = f"{self._path}/{asset}/{STAGING_DIR}/{version}-{uuid.uuid4().hex}"
        target = self._version_path(asset, version)
        try:
            self._write_parts(staging, tables, manifest, rows_per_part)
            _write_manifest(self.fs, staging, manifest)
            try:
                os.rename(staging, target)
                return manifest
            except OSError:
                # The target folder exists: fine if another writer committed the same version.
                if self.exists(asset, version):
                    return self.manifest(asset, version)
                raise StoreError(
                    f"Cannot commit version {version!r} of asset {asset!r}: {target} exists "
                    "without a manifest; remove it and retry."
                ) from None
        finally:
            if self.fs.exists(staging):
                self.fs.rm(staging, recursive=True)
