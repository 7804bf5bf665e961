"""Containers into numbered records (integrity/ingest/records.py): JSON arrays, one pretty-printed
object, JSON lines parsed on demand, parquet in batches, shards read as one source in name order,
repeated keys, raw text, and the errors for what cannot be read.

Errors met through ingest_source (a JSON array's syntax error, garbage parquet, a missing file, a
JSONL file with no valid line) are tested in test_pipeline.py and robustness/test_bad_files.py."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from integrity.errors import UserError
from integrity.ingest.records import (
    MAX_DEPTH,
    IngestError,
    Record,
    container_of,
    json_fallback,
    read_records,
    repeated_keys,
    shard_uris,
)


def records(uri: str | Path, **kwargs) -> list[Record]:
    return [record for batch in read_records(str(uri), **kwargs) for record in batch]


def values(found: list[Record]) -> list:
    return [record.parse().value for record in found]


@pytest.mark.parametrize(
    ("uri", "container"),
    [("a.parquet", "parquet"), ("s3://b/A.PQ", "parquet"), ("a.json", "json"),
     ("a.jsonl", "json"), ("data.txt", "json")],
)
def test_parquet_files_are_parquet_and_everything_else_is_json(uri, container):
    assert container_of(uri) == container


def test_a_json_array_gives_one_record_per_item_in_batches(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"id": i} for i in range(5)], indent=2))
    batches = list(read_records(str(path), batch_size=2))
    assert [len(batch) for batch in batches] == [2, 2, 1]
    found = [record for batch in batches for record in batch]
    assert [record.index for record in found] == [0, 1, 2, 3, 4]
    assert values(found) == [{"id": i} for i in range(5)]
    assert all(record.error is None and record.shard is None for record in found)


def test_a_pretty_printed_object_is_one_record_not_lines(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"id": "x", "conversations": [{"from": "human"}]}, indent=2))
    [record] = records(path)
    assert record.value == {"id": "x", "conversations": [{"from": "human"}]}


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b'{"id": "a"}\n{"id": "b"}\n', True),
        (b'\n\n  {"id": "a"}\n{"id": "b"}', True),  # blank lines first
        (b'{"id": "a"}\n', True),  # one line: a record either way
        (b'{"id": "a"}\n{"id": "b", "x": "\xff"}\n', True),  # bytes that are not UTF-8 later on
        (b'{"id": "a", "t": [1,\n 2]}\n', False),  # one object over two lines
        (b'\n{\n  "id": "a"\n}\n\n', False),
        (b'{"id": "a", "t": [1,\n{"id": "b"}\n', True),  # a cut first line: lines, quarantined
        (b'{"id": "a"} {"id": "b"}\n{"id": "c"}\n', True),  # two values on line one
    ],
)
def test_a_file_starting_with_a_brace_is_one_object_only_when_no_first_line_stands_alone(
        tmp_path, data, lines):
    path = tmp_path / "a.json"
    path.write_bytes(data)
    found = records(path)
    assert all(record.line is not None for record in found) is lines
    if not lines:
        assert [record.value["id"] for record in found] == ["a"]


def test_json_lines_are_numbered_by_line_skipping_blank_ones_and_parsed_on_demand(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "a"}\n\n   \n{"id": "b"}\n{"id": "c"}\n')
    found = records(path)
    assert [record.index for record in found] == [0, 3, 4]
    # No record comes parsed (the first line is probed, to tell JSON lines from garbage).
    assert [record.parsed for record in found] == [False, False, False]
    assert found[1].value is None and found[1].line == b'{"id": "b"}'
    assert values(found) == [{"id": "a"}, {"id": "b"}, {"id": "c"}]


def test_a_malformed_line_is_a_record_with_an_error_naming_its_line_not_a_failure(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "a"}\n{"id": "cut", \n{"id": "c"}\n')
    found = records(path)
    assert [record.parse().error is None for record in found] == [True, False, True]
    assert found[1].error.startswith("line 2: ")
    assert found[1].value is None
    assert found[1].raw() == '{"id": "cut", '


def test_parse_parses_a_line_once(tmp_path):
    record = Record(0, line=b'{"id": "a"}', parsed=False)
    assert record.parse() is record and record.value == {"id": "a"}
    record.value = "changed"
    assert record.parse().value == "changed"  # not parsed again


def test_a_utf8_byte_order_mark_is_ignored(tmp_path):
    lines, array = tmp_path / "bom.jsonl", tmp_path / "bom.json"
    lines.write_bytes(codecs.BOM_UTF8 + b'{"id": "a"}\n{"id": "b"}\n')
    array.write_bytes(codecs.BOM_UTF8 + b'[{"id": "a"}]')
    assert values(records(lines)) == [{"id": "a"}, {"id": "b"}]
    assert values(records(array)) == [{"id": "a"}]


def test_parquet_rows_come_as_dicts_numbered_across_batches(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "n": [1, 2, 3]}), path, row_group_size=2)
    batches = list(read_records(str(path), batch_size=2))
    assert [len(batch) for batch in batches] == [2, 1]
    found = [record for batch in batches for record in batch]
    assert [(record.index, record.value) for record in found] == [
        (0, {"id": "a", "n": 1}), (1, {"id": "b", "n": 2}), (2, {"id": "c", "n": 3})]


# --- shards ----------------------------------------------------------------------------------
def test_a_folder_of_shards_is_one_source_in_name_order_numbered_across_its_files(tmp_path):
    folder = tmp_path / "data"
    (folder / "part-b").mkdir(parents=True)
    (folder / "part-a.jsonl").write_text('{"id": "a0"}\n\n{"id": "a2"}\n')
    (folder / "part-b" / "x.json").write_text(json.dumps([{"id": "b0"}]))
    pq.write_table(pa.table({"id": ["c0", "c1"]}), folder / "part-c.parquet")
    (folder / "README.md").write_text("not data")
    found = records(folder)
    assert values(found) == [{"id": "a0"}, {"id": "a2"}, {"id": "b0"}, {"id": "c0"}, {"id": "c1"}]
    assert [record.index for record in found] == [0, 2, 3, 4, 5]  # unique across shards
    assert [(record.shard, record.shard_index) for record in found] == [
        ("part-a.jsonl", 0), ("part-a.jsonl", 2), ("part-b/x.json", 0),
        ("part-c.parquet", 0), ("part-c.parquet", 1)]


def test_a_bad_line_in_a_later_shard_names_its_line_in_that_shard(tmp_path):
    for name, text in [("a.jsonl", '{"id": 1}\n{"id": 2}\n'), ("b.jsonl", '{"id": 3}\n{oops\n')]:
        (tmp_path / name).write_text(text)
    found = records(tmp_path / "*.jsonl")
    assert found[3].index == 3 and found[3].shard == "b.jsonl"
    assert found[3].parse().error.startswith("line 2: ")


def test_shard_uris_lists_the_data_files_a_glob_or_folder_names_sorted(tmp_path):
    for name in ["train-2.parquet", "train-1.parquet", "test-1.parquet", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.jsonl").write_text("")
    assert shard_uris(str(tmp_path / "train-*.parquet")) == [
        str(tmp_path / "train-1.parquet"), str(tmp_path / "train-2.parquet")]
    assert shard_uris(str(tmp_path)) == [
        str(tmp_path / name) for name in
        ["sub/more.jsonl", "test-1.parquet", "train-1.parquet", "train-2.parquet"]]


def test_one_file_or_a_web_address_is_its_own_only_shard():
    assert shard_uris("/nowhere/a.jsonl") == ["/nowhere/a.jsonl"]  # no listing for one file
    url = "https://example.org/data.json?version=[2]&part=*"
    assert shard_uris(url) == [url]  # ? [ and * in a query are no glob


def test_a_folder_without_data_files_says_so(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(IngestError, match=r"no \.json, \.jsonl or \.parquet file matches") as error:
        records(tmp_path)
    assert str(error.value).startswith(f"{tmp_path}: ")


def test_a_fifo_is_refused_without_blocking_on_it(tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(IngestError, match="not a regular file") as error:
        records(fifo)
    assert str(error.value).startswith(f"{fifo}: ")
    assert isinstance(error.value, UserError)  # the user's to fix: one line, exit 2


# --- repeated keys and raw text ---------------------------------------------------------------
def test_repeated_keys_names_each_key_an_object_repeats_at_any_depth():
    text = b'{"id": "a", "id": "b", "turns": [{"role": "user", "role": "bot"}]}'
    assert repeated_keys(text, orjson.loads(text)) == ["id", "role"]


@pytest.mark.parametrize(
    "text",
    [b'{"id": "a", "n": 1}', b'{"note": "a\\":b", "x": 1}', b'{"a" : 1, "b" : {"c" : 2}}',
     b'{"a": {"x": 1}, "b": {"x": 2}}'],
    ids=["plain", "quote-colon-in-a-string", "spaces-before-colons", "same-key-in-two-objects"],
)
def test_repeated_keys_is_none_when_no_object_repeats_a_key(text):
    assert repeated_keys(text, orjson.loads(text)) is None


def test_each_record_of_a_json_array_carries_the_keys_it_repeats(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[{"id": "a"}, {"id": "b", "id": "c"}, {"x": {"k": 1, "k": 2}}]')
    assert [record.duplicate_keys for record in records(path)] == [None, ["id"], ["k"]]


def test_a_json_line_carries_the_keys_it_repeats_once_parsed(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "id": "c"}\n')
    assert [record.parse().duplicate_keys for record in records(path)] == [None, ["id"]]


def test_raw_is_the_line_as_written_or_the_value_with_sorted_keys_and_bytes_summarised():
    line = Record(0, line='{"b": 1,   "a": "caf\xe9"}'.encode("latin-1"), parsed=False)
    assert line.raw() == '{"b": 1,   "a": "caf\ufffd"}'  # spacing kept, bad byte replaced
    row = Record(0, {"z": 1, "image": {"bytes": b"\x89PNG...."}, "a": [1, 2]})
    assert row.raw() == '{"a":[1,2],"image":{"bytes":"<8 bytes>"},"z":1}'


def test_raw_of_a_record_nested_past_json_serialisers_is_cut_at_that_depth():
    value: list = []
    for _ in range(MAX_DEPTH + 50):
        value = [value]
    text = Record(0, {"k": value}).raw()
    cut = orjson.loads(text)  # what is shown is valid JSON
    depth = 0
    while isinstance(cut, dict | list):
        cut = cut["k"] if isinstance(cut, dict) else cut[0]
        depth += 1
    assert (cut, depth) == ("...", MAX_DEPTH - 1)


def test_json_fallback_summarises_bytes_and_stringifies_the_rest():
    assert json_fallback(b"abc") == "<3 bytes>"
    assert json_fallback(bytearray(5)) == "<5 bytes>"
    assert json_fallback(memoryview(b"12")) == "<2 bytes>"
    assert json_fallback(Path("/a/b")) == "/a/b"
