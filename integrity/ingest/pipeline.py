"""Ingest one source: records -> canonical rows -> contracts -> images -> raw_sft + quarantine.

Every record ends in exactly one of two tables: accepted rows (RAW_SFT_SCHEMA) or quarantine
(QUARANTINE_SCHEMA, with a reason and the raw text). ``IngestResult`` asserts that the counts
add up, so nothing is ever silently lost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import orjson
import polars as pl
import pyarrow as pa

from integrity.ingest.images import ImageResolver
from integrity.ingest.columnar import SHAPES, columnar_rows
from integrity.ingest.formats import MAPPERS, MappedRow, RecordError, detect_format
from integrity.ingest.records import (
    MAX_DEPTH,
    LineBatch,
    Record,
    container_of,
    json_fallback,
    read_records,
    shard_uris,
)
from integrity.ingest.sources import SourceConfig
from integrity.ingest.validate import first_violation
from integrity.ingest.schema import QUARANTINE_SCHEMA, RAW_SFT_SCHEMA, QuarantineReason

# Internal key for embedded images: never a valid path, so it cannot collide with a ref.
_EMBEDDED = "\x00embedded:"


@dataclass
class IngestResult:
    """The outcome of one source: accepted rows, quarantined rows, and what came in."""

    source: str
    origin_format: str
    records_in: int
    rows_in: int
    accepted: pl.DataFrame
    quarantine: pl.DataFrame
    files: int = 1
    columnar_rows: int = 0  # rows mapped on the columnar path (the rest went record by record)

    def __post_init__(self) -> None:
        out = self.accepted.height + self.quarantine.height
        if out != self.rows_in:
            raise AssertionError(f"{self.source}: {self.rows_in} rows in but {out} out")
        seen = pl.concat([self.accepted["row_index"], self.quarantine["row_index"]]).n_unique()
        if seen != self.records_in:
            raise AssertionError(f"{self.source}: {self.records_in} records in, {seen} accounted for")

    def quarantine_by_reason(self) -> dict[str, int]:
        # Ties by name: the summary is part of the manifest, and must not depend on hashing.
        counts = self.quarantine.group_by("reason").len().sort(["len", "reason"],
                                                               descending=[True, False])
        return dict(counts.iter_rows())

    def modality_counts(self) -> dict[str, int]:
        return dict(self.accepted.group_by("modality").len().sort("modality").iter_rows())

    def summary(self) -> dict:
        modalities = self.modality_counts()
        return {
            "source": self.source,
            "origin_format": self.origin_format,
            "files": self.files,
            "records_in": self.records_in,
            "rows_in": self.rows_in,
            "accepted": self.accepted.height,
            "quarantined": self.quarantine.height,
            "quarantine_rate": self.quarantine.height / self.rows_in if self.rows_in else 0.0,
            "modality": modalities,
            "text_only_share": modalities.get("text", 0) / self.accepted.height
            if self.accepted.height
            else 0.0,
            "quarantine_by_reason": self.quarantine_by_reason(),
        }


def _fallback_id(source: str, record: Record) -> str:
    """The id of a record that has none: its position (file and row), never its content (two
    equal records are two rows; the duplicate detector finds and counts the repeat)."""
    if record.shard is not None:
        return f"{source}:{record.shard}:{record.shard_index}"
    return f"{source}:{record.index}"


class _Batch:
    """Column buffers for one batch: mapped rows and quarantined records."""

    def __init__(self, source: str, origin_format: str):
        self.source, self.origin_format = source, origin_format
        self.rows: dict[str, list] = {key: [] for key in
                                      ("example_id", "row_index", "images", "image_keys", "turns",
                                       "metadata", "pref_role", "pref_group", "raw")}
        self.quarantine: list[dict] = []
        self.embedded: list[bytes] = []
        # Rows mapped on the columnar path, the lines they came from and the line of each row.
        self.columnar: list[tuple[pl.DataFrame, LineBatch, list[int]]] = []

    def add_columnar(self, frame: pl.DataFrame, lines: LineBatch, taken: list[int]) -> None:
        """Rows mapped on the columnar path from the lines at ``taken``; a row without an id
        is named by its position."""
        unnamed = frame["example_id"].is_null().arg_true().to_list()
        if unnamed:
            ids = frame["example_id"].to_list()
            for row in unnamed:
                ids[row] = _fallback_id(self.source, lines.record(taken[row]))
            frame = frame.with_columns(example_id=pl.Series(ids, dtype=pl.String))
        self.columnar.append((frame, lines, taken))

    def __len__(self) -> int:
        """Rows mapped (not counting quarantined records)."""
        return len(self.rows["example_id"]) + sum(frame.height for frame, _, _ in self.columnar)

    def reject(self, record: Record, reason: QuarantineReason, detail: str) -> None:
        value = record.value if isinstance(record.value, dict) else {}
        example_id = None if value.get("id") is None else str(value["id"])
        self.quarantine.append({"source": self.source, "origin_format": self.origin_format,
                                "row_index": record.index, "example_id": example_id,
                                "reason": reason.value, "detail": detail, "raw": record.raw()})

    def add_all(self, record: Record, rows: list[MappedRow]) -> None:
        """Add every row of one record, or none: RecordError (too_deeply_nested) when one
        cannot be serialised."""
        try:
            metadata = [orjson.dumps(row.metadata, default=json_fallback,
                                     option=orjson.OPT_SORT_KEYS).decode() for row in rows]
        except orjson.JSONEncodeError as error:
            raise RecordError(QuarantineReason.TOO_DEEP,
                              f"nested deeper than {MAX_DEPTH} levels ({error})") from error
        for row, text in zip(rows, metadata, strict=True):
            self.add(record, row, text)

    def add(self, record: Record, row: MappedRow, metadata: str) -> None:
        if row.example_id is None:
            group = _fallback_id(self.source, record)
            suffix = row.variant or row.pref_role
            row.example_id = group if suffix is None else f"{group}#{suffix}"
            row.pref_group = group if row.pref_role is not None else None
        refs, keys = [], []
        for position, image in enumerate(row.images):
            if isinstance(image, bytes):
                refs.append(f"embedded:{position}")
                keys.append(f"{_EMBEDDED}{len(self.embedded)}")
                self.embedded.append(image)
            else:
                refs.append(image)
                keys.append(image)
        buffer = self.rows
        buffer["example_id"].append(row.example_id)
        buffer["row_index"].append(record.index)
        buffer["images"].append(refs)
        buffer["image_keys"].append(keys)
        buffer["turns"].append(row.turns)
        buffer["metadata"].append(metadata)
        buffer["pref_role"].append(row.pref_role)
        buffer["pref_group"].append(row.pref_group)
        buffer["raw"].append(record)

    def frame(self) -> pl.DataFrame:
        """Every mapped row in record order, with ``_position``: where its record is in
        ``raw_of``'s numbering."""
        # Arrow builds nested columns from Python objects ~30x faster than polars' constructor.
        # The raw text is left out: only rows that break a contract need it (``raw_of``).
        columns = {key: values for key, values in self.rows.items() if key != "raw"}
        frames = [pl.from_arrow(pa.table(columns, schema=_BATCH_SCHEMA)),
                  *(frame.select(_BATCH_SCHEMA.names) for frame, _, _ in self.columnar)]
        return (pl.concat(frames).with_row_index("_position")
                .sort("row_index", maintain_order=True))

    def raw_of(self, positions: list[int]) -> list[str]:
        """The raw text of the records behind the rows at ``positions`` (``frame``'s)."""
        records = self.rows["raw"]
        texts = []
        for position in positions:
            if position < len(records):
                texts.append(records[position].raw())
                continue
            position -= len(records)
            for _, lines, taken in self.columnar:
                if position < len(taken):
                    texts.append(lines.record(taken[position]).raw())
                    break
                position -= len(taken)
        return texts


_BATCH_SCHEMA = pa.schema(
    [("example_id", pa.string()), ("row_index", pa.int64()), ("images", pa.list_(pa.string())),
     ("image_keys", pa.list_(pa.string())),
     ("turns", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
     ("metadata", pa.string()), ("pref_role", pa.string()), ("pref_group", pa.string())]
)


@dataclass
class _Checking:
    """A batch whose contracts are checked, waiting for its images' checks: its rows, their
    image keys one per row (``_row``), and the distinct images to check (refs or bytes)."""

    batch: _Batch
    frame: pl.DataFrame
    exploded: pl.DataFrame
    keys: list[str]
    items: list[str | bytes]

    @property
    def embedded_bytes(self) -> int:
        """Bytes of the images embedded in the batch, held until they are checked."""
        return sum(len(data) for data in self.batch.embedded)


def _contracts(batch: _Batch) -> _Checking:
    """The batch's rows with the first contract each breaks, and the images left to check."""
    frame = first_violation(batch.frame())
    # Images of rows that already broke a contract are not worth reading.
    frame = frame.with_columns(
        image_keys=pl.when(pl.col("reason").is_null())
        .then("image_keys")
        .otherwise(pl.lit([], dtype=pl.List(pl.String)))
    )
    exploded = (
        frame.select("image_keys")
        .with_row_index("_row")
        .explode("image_keys")
        .drop_nulls("image_keys")
    )
    keys = exploded["image_keys"].unique(maintain_order=True).to_list()
    items = [batch.embedded[int(key[len(_EMBEDDED):])] if key.startswith(_EMBEDDED) else key
             for key in keys]
    return _Checking(batch, frame, exploded, keys, items)


def _with_images(checking: _Checking, checks: list) -> pl.DataFrame:
    """Add image_uris, image_sha256 and the first image failure (reason/detail) per row."""
    table = pl.DataFrame(
        {"image_keys": checking.keys, "uri": [c.uri for c in checks],
         "sha256": [c.sha256 for c in checks], "image_reason": [c.reason for c in checks],
         "image_detail": [c.detail for c in checks]},
        schema={"image_keys": pl.String, "uri": pl.String, "sha256": pl.String,
                "image_reason": pl.String, "image_detail": pl.String},
    )
    per_row = (
        checking.exploded.join(table, on="image_keys", how="left", maintain_order="left")
        .group_by("_row", maintain_order=True)
        .agg(
            image_uris=pl.col("uri"),
            image_sha256=pl.col("sha256"),
            image_reason=pl.col("image_reason").drop_nulls().first(),
            image_detail=pl.col("image_detail").drop_nulls().first(),
        )
    )
    return (
        checking.frame.with_row_index("_row")
        .join(per_row, on="_row", how="left", maintain_order="left")
        .with_columns(
            pl.col("image_uris").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.col("image_sha256").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            reason=pl.coalesce("reason", "image_reason"),
            detail=pl.coalesce("detail", "image_detail"),
        )
        .drop("_row", "image_reason", "image_detail")
    )


def _split(checking: _Checking, checks: list) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(accepted rows, quarantined rows) of a batch once its images are checked."""
    batch, frame = checking.batch, _with_images(checking, checks)
    constants = {"source": pl.lit(batch.source), "origin_format": pl.lit(batch.origin_format)}
    accepted = frame.filter(pl.col("reason").is_null()).with_columns(
        **constants,
        modality=pl.when(pl.col("images").list.len() > 0)
        .then(pl.lit("image-text"))
        .otherwise(pl.lit("text")),
    ).select(RAW_SFT_SCHEMA.names())
    rejected = frame.filter(pl.col("reason").is_not_null())
    rejected = rejected.with_columns(
        **constants, raw=pl.Series(batch.raw_of(rejected["_position"].to_list()),
                                   dtype=pl.String))
    quarantine = pl.concat(
        [pl.DataFrame(batch.quarantine, schema=QUARANTINE_SCHEMA),
         rejected.select(QUARANTINE_SCHEMA.names())]
    ).sort("row_index", maintain_order=True)
    return accepted, quarantine


def _map_one(record: Record, batch: _Batch, origin_format: str | None,
             container: str) -> str | None:
    """Map one parsed record into ``batch`` (or quarantine it); returns the source's format, which
    the first mappable record fixes."""
    if record.error is not None:
        batch.reject(record, QuarantineReason.MALFORMED_JSON, record.error)
        return origin_format
    if not isinstance(record.value, dict):
        batch.reject(record, QuarantineReason.MISSING_FIELD, "record is not a JSON object")
        return origin_format
    if record.duplicate_keys:
        batch.reject(record, QuarantineReason.DUPLICATE_KEY,
                     f"repeated key(s) {', '.join(map(repr, record.duplicate_keys))}: "
                     "JSON readers keep only the last value, silently")
        return origin_format
    try:
        if origin_format is None:
            origin_format = detect_format(record.value, container)
            batch.origin_format = origin_format
        batch.add_all(record, MAPPERS[origin_format](record.value))
    except RecordError as error:
        batch.reject(record, error.reason, error.detail)
    except RecursionError:
        batch.reject(record, QuarantineReason.TOO_DEEP, f"nested deeper than {MAX_DEPTH} levels")
    return origin_format


def ingest_source(
    source: SourceConfig,
    *,
    blob_root: str | None = None,
    batch_size: int = 20_000,
    workers: int | None = None,
    columnar: bool = True,
) -> IngestResult:
    """Read one source into accepted raw_sft rows and quarantined rows.

    ``blob_root`` receives embedded image bytes (content-addressed); it is required only for
    sources that embed images. ``columnar``: plain LLaVA/ShareGPT JSON lines take the columnar
    path (``columnar.py``; same rows, record by record when False). Raises IngestError for a
    file that cannot be parsed at all.
    """
    resolver = ImageResolver(
        source.effective_image_root,
        blob_root=blob_root,
        storage_options=source.storage_options,
        workers=workers,
    )
    shards = shard_uris(source.uri, source.storage_options)
    container = container_of(shards[0])
    origin_format = None if source.format == "auto" else source.format
    reading = _Reading(origin_format)
    processed: list[tuple[pl.DataFrame, pl.DataFrame]] = []
    # A batch's images are checked on a second thread while this one checks the contracts of
    # the next batches and reads and parses them (parsing mostly releases the GIL). Image
    # checks are most of the work (Pillow's per-file Python): that thread does nothing else.
    # The first batch holds most of a source's distinct images (later ones repeat them), so
    # this thread reads up to BATCHES_IN_FLIGHT batches ahead while they are checked, holding
    # at most EMBEDDED_BYTES_IN_FLIGHT of embedded image bytes.
    in_flight: deque[tuple[_Checking, Future]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-images") as images:
        for batch in _batches(source, shards, container, batch_size, columnar, reading):
            while in_flight and (
                    len(in_flight) == BATCHES_IN_FLIGHT
                    or sum(checking.embedded_bytes for checking, _ in in_flight)
                    > EMBEDDED_BYTES_IN_FLIGHT):
                checking, checks = in_flight.popleft()
                processed.append(_split(checking, checks.result()))
            checking = _contracts(batch)
            in_flight.append((checking, images.submit(resolver.check_many, checking.items)))
        processed += [_split(checking, checks.result()) for checking, checks in in_flight]
    origin_format = reading.origin_format or "unknown"
    accepted, quarantined = [good for good, _ in processed], [bad for _, bad in processed]
    return IngestResult(
        source=source.name,
        origin_format=origin_format,
        records_in=reading.records_in,
        rows_in=reading.rows_in,
        files=len(shards),
        columnar_rows=reading.columnar_rows,
        accepted=pl.concat(accepted) if accepted else pl.DataFrame(schema=RAW_SFT_SCHEMA),
        # Records rejected before the format was known still belong to this source's format.
        quarantine=(pl.concat(quarantined) if quarantined else pl.DataFrame(schema=QUARANTINE_SCHEMA))
        .with_columns(origin_format=pl.lit(origin_format)),
    )


BATCHES_IN_FLIGHT = 8
EMBEDDED_BYTES_IN_FLIGHT = 256 * 1024 * 1024


@dataclass
class _Reading:
    """What reading a source has seen so far: its format (fixed by the first mappable record)
    and the counts ``IngestResult`` reports."""

    origin_format: str | None
    records_in: int = 0
    rows_in: int = 0
    columnar_rows: int = 0


def _batches(source: SourceConfig, shards: list[str], container: str, batch_size: int,
             columnar: bool, reading: _Reading) -> Iterator[_Batch]:
    """Every batch of ``source``'s records, parsed and mapped (images not yet checked)."""
    for records in read_records(source.uri, storage_options=source.storage_options,
                                batch_size=batch_size, shards=shards):
        reading.records_in += len(records)
        batch = _Batch(source.name, reading.origin_format or "unknown")
        for position, record in enumerate(records):
            if columnar and reading.origin_format in SHAPES and isinstance(records, LineBatch):
                # The format is known: the rest of the batch's lines go columnar where they can.
                indexes = records.indexes()
                frame, taken, left_over = columnar_rows(records.lines[position:],
                                                        indexes[position:], reading.origin_format)
                if frame is not None:
                    batch.add_columnar(frame, records, [position + at for at in taken])
                    reading.columnar_rows += frame.height
                for left in left_over:
                    reading.origin_format = _map_one(records.record(position + left).parse(),
                                                     batch, reading.origin_format, container)
                break
            reading.origin_format = _map_one(record.parse(), batch, reading.origin_format,
                                             container)
        reading.rows_in += len(batch) + len(batch.quarantine)
        yield batch
