"""The columnar path for JSON lines: a batch of plain LLaVA or ShareGPT lines parsed in one
Arrow pass and mapped to canonical rows with polars expressions, no Python per row.

A line takes this path only when the result is provably the per-record mapper's
(``formats.map_llava`` / ``map_sharegpt``): Arrow's reader is strict about types (a number where
text belongs, an array for a string, a repeated key: the parse fails), and a line is sent back to
the per-record path whenever it holds something the columns cannot say the same way:
- a null or a missing turn field, an empty dialog, a blank image ref;
- any key the mapper reads that the columns leave out (``images`` on a LLaVA line);
- extra keys other than strings, integers and booleans (their metadata JSON is built by
  polars, byte for byte what orjson writes for those types);
- a count of ``"`` followed by a colon (spaces between allowed) that differs from the keys
  parsed: every key adds one, so a higher count is an explicit null, a key nested where no
  column looks, or such text inside a string (rare, and always safe).
When a window of lines does not parse, Arrow names the failing row: it goes the per-record way
and the parse resumes after it (halving the lines where Arrow names none). The per-record path
parses, maps or quarantines every line sent to it as before. A test holds both paths to the
same rows on hostile lines.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.json as pa_json

from integrity.ingest.formats import ROLE_ALIASES

WINDOW = 4096  # lines parsed at once
SMALLEST_SPLIT = 16  # below this many lines, lines that fail to parse go record by record
_SIMPLE = (pl.String, pl.Int64, pl.Boolean)  # extra keys whose JSON polars writes as orjson does


@dataclass(frozen=True)
class _Shape:
    """One format's columns: the dialog column and the names of its turn fields."""

    dialog: str
    role: str
    content: str
    image: str  # the image column: a string (LLaVA) or a list of strings (ShareGPT)
    image_is_list: bool
    used: tuple[str, ...]  # every key the per-record mapper reads (formats.py)
    system: bool = False

    def schema(self) -> pa.Schema:
        """The columns declared; ``id`` is inferred (text or integer ids are both common)."""
        turn = pa.struct([(self.role, pa.string()), (self.content, pa.string())])
        image = pa.list_(pa.string()) if self.image_is_list else pa.string()
        fields = [(self.image, image), (self.dialog, pa.list_(turn))]
        return pa.schema(fields + ([("system", pa.string())] if self.system else []))


SHAPES = {
    "llava": _Shape("conversations", "from", "value", "image", False,
                    ("id", "image", "images", "conversations")),
    "sharegpt": _Shape("messages", "role", "content", "images", True,
                       ("id", "image", "images", "messages", "system"), system=True),
}


def _parse(lines: list[bytes], schema: pa.Schema) -> tuple[pa.Table | None, int | None]:
    """The lines as one table, or None and the position of the line that fails (when known)."""
    try:
        table = pa_json.read_json(
            io.BytesIO(b"\n".join(lines)),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=1 << 26),
            parse_options=pa_json.ParseOptions(explicit_schema=schema,
                                               unexpected_field_behavior="infer"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        row = _FAILED_ROW.search(str(error))
        return None, int(row.group(1)) if row else None
    return (table, None) if table.num_rows == len(lines) else (None, None)


_FAILED_ROW = re.compile(r"in row (\d+)")


def _utf8(line: bytes) -> bool:
    try:
        line.decode()
        return True
    except UnicodeDecodeError:
        return False


Run = tuple[list[int], pa.Table]  # positions of lines parsed together, and their table


def _object_shaped(line: bytes) -> bool:
    return line.startswith(b"{") and line.endswith(b"}")


def _parsed_runs(lines: list[bytes], positions: list[int], schema: pa.Schema, runs: list[Run],
                 leftover: list[int], *, screened: bool = False) -> None:
    """Parse the lines at ``positions`` into runs; a line that fails (Arrow names its row) goes
    to ``leftover`` and the parse resumes after it; when Arrow names none, the lines are halved.

    Each failure costs a parse of the lines before it, so on the first one every line not
    shaped like an object (``{...}``: a line cut short, most often) is set aside at once."""
    while len(positions) >= SMALLEST_SPLIT:
        table, failed = _parse([lines[position] for position in positions], schema)
        if table is not None:
            runs.append((positions, table))
            return
        if not screened:
            screened = True
            shaped = [position for position in positions if _object_shaped(lines[position])]
            if len(shaped) < len(positions):
                leftover += [position for position in positions
                             if not _object_shaped(lines[position])]
                positions = shaped
                continue
        if failed is None or failed >= len(positions):
            middle = len(positions) // 2
            _parsed_runs(lines, positions[:middle], schema, runs, leftover, screened=True)
            positions = positions[middle:]
            continue
        _parsed_runs(lines, positions[:failed], schema, runs, leftover, screened=True)
        leftover.append(positions[failed])
        positions = positions[failed + 1 :]
    leftover.extend(positions)


def _lines_to_parse(lines: list[bytes], schema: pa.Schema) -> tuple[list[Run], list[int]]:
    """Runs of parsed lines and the positions of the lines left over, window by window: a bad
    line costs a re-parse of its window's lines before it, never of the whole batch."""
    runs: list[Run] = []
    leftover: list[int] = []
    for start in range(0, len(lines), WINDOW):
        window = list(range(start, min(start + WINDOW, len(lines))))
        # Arrow does not check UTF-8 as it parses; orjson refuses what is not UTF-8.
        if not _utf8(b"".join(lines[start : start + WINDOW])):
            leftover += [position for position in window if not _utf8(lines[position])]
            window = [position for position in window if _utf8(lines[position])]
        _parsed_runs(lines, window, schema, runs, leftover)
    return runs, leftover


def _roles(field: str) -> pl.Expr:
    role = pl.element().struct.field(field)
    return role.str.to_lowercase().replace_strict(ROLE_ALIASES, default=role)


def _non_null_fields(dtype: pl.DataType) -> pl.Expr:
    """Per turn, how many of its keys hold a value (the per-record path ignores the extra ones)."""
    fields = [pl.element().struct.field(field.name).is_not_null()
              for field in dtype.inner.fields]  # type: ignore[union-attr]
    return pl.sum_horizontal(fields)


def _member(name: str) -> pl.Expr:
    """``"name":value`` as JSON, null where the row has no value (orjson's spelling)."""
    encoded = pl.struct(name).struct.json_encode().str.strip_prefix("{").str.strip_suffix("}")
    return pl.when(pl.col(name).is_not_null()).then(encoded)


def _rows(table: pa.Table, shape: _Shape, keys_in_line: pl.Series) -> pl.DataFrame:
    """Canonical columns of one parsed run, with ``_back``: the rows the per-record path redoes."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if "id" not in frame.columns:
        frame = frame.with_columns(id=pl.lit(None, pl.String))
    declared = [*shape.schema().names, "id"]
    id_type = frame.schema["id"]
    id_is_text = id_type in (pl.String, pl.Int64, pl.Null)
    extras = sorted(name for name in frame.columns if name not in declared)
    simple = [name for name in extras if frame.schema[name] in _SIMPLE and name not in shape.used]
    other = [name for name in extras if name not in simple]

    dialog, turn, image = pl.col(shape.dialog), pl.element().struct, pl.col(shape.image)
    blank_image = (image.list.eval(pl.element().is_null() | (pl.element().str.strip_chars() == ""))
                   .list.any() if shape.image_is_list
                   else image.str.strip_chars() == "")
    present = [pl.col(name).is_not_null() for name in simple]
    keys = (pl.sum_horizontal(pl.col(name).is_not_null() for name in declared)
            + dialog.list.eval(_non_null_fields(frame.schema[shape.dialog])).list.sum()
            .fill_null(0)
            + (pl.sum_horizontal(present) if present else pl.lit(0)))
    back = pl.any_horizontal(
        dialog.is_null(),
        dialog.list.len() == 0,
        dialog.list.eval(turn.field(shape.role).is_null() | turn.field(shape.content).is_null())
        .list.any(),
        blank_image.fill_null(False),
        keys_in_line.cast(pl.Int64) != keys,
        *(pl.col(name).is_not_null() for name in other),
        pl.lit(False) if id_is_text else pl.col("id").is_not_null(),
    )
    turns = dialog.list.eval(pl.struct(role=_roles(shape.role), content=turn.field(shape.content)))
    if shape.system:  # a non-empty system prompt is the first turn
        system = pl.concat_list(pl.struct(role=pl.lit("system"), content=pl.col("system")))
        turns = (pl.when(pl.col("system").fill_null("") != "")
                 .then(pl.concat_list(system, turns)).otherwise(turns))
    no_images = pl.lit([], dtype=pl.List(pl.String))
    images = (image.fill_null(no_images) if shape.image_is_list
              else pl.when(image.is_null()).then(no_images).otherwise(pl.concat_list(image)))
    members = pl.concat_str([_member(name) for name in simple], separator=",", ignore_nulls=True)
    metadata = pl.concat_str(pl.lit("{"), members, pl.lit("}")) if simple else pl.lit("{}")
    return frame.select(
        example_id=pl.col("id").cast(pl.String) if id_is_text else pl.lit(None, pl.String),
        images=images,
        turns=turns.cast(pl.List(pl.Struct({"role": pl.String, "content": pl.String}))),
        metadata=metadata,
        _back=back,
    )


def _merged(runs: list[Run]) -> list[Run]:
    """The runs as one table where their inferred columns agree (polars' per-call cost, not the
    rows, dominates small runs), else as they are."""
    if len(runs) < 2:
        return runs
    try:
        table = pa.concat_tables([table for _, table in runs], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return runs
    return [([position for run, _ in runs for position in run], table)]


def columnar_rows(lines: list[bytes], indexes: Sequence[int], origin_format: str
                  ) -> tuple[pl.DataFrame | None, list[int], list[int]]:
    """The rows of the unparsed JSON ``lines`` that take the columnar path (``row_index`` from
    ``indexes``; ``example_id`` null where the line has none), the positions of the lines behind
    them row for row, and the positions of the lines left to the per-record path."""
    shape = SHAPES[origin_format]
    runs, leftover = _lines_to_parse(lines, shape.schema())
    frames, taken = [], []
    for run, table in _merged(runs):
        # Lines are valid UTF-8 here (_lines_to_parse); a key is `"` then a colon, spaces between.
        keys_in_line = (pl.Series([lines[position] for position in run], dtype=pl.Binary)
                        .cast(pl.String).str.count_matches(r'"\s*:'))
        positions = pl.Series(run, dtype=pl.Int64)
        rows = _rows(table, shape, keys_in_line).with_columns(
            row_index=pl.Series([indexes[position] for position in run], dtype=pl.Int64))
        leftover += positions.filter(rows["_back"]).to_list()
        taken += positions.filter(~rows["_back"]).to_list()
        frames.append(rows.filter(~pl.col("_back")).drop("_back"))
    leftover.sort()  # the per-record path maps them in file order
    if not frames:
        return None, taken, leftover
    return pl.concat(frames).with_columns(
        image_keys=pl.col("images"), pref_role=pl.lit(None, pl.String),
        pref_group=pl.lit(None, pl.String)), taken, leftover
