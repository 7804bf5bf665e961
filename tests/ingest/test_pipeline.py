"""Bad input lands in quarantine with the right reason; whole unreadable files raise IngestError."""

from __future__ import annotations

import io
import json
import os
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from integrity.ingest import IngestError, pipeline
from integrity.ingest.schema import QUARANTINE_SCHEMA, QuarantineReason

R = QuarantineReason


def convo(*turns: tuple[str, object]) -> list[dict]:
    return [{"from": role, "value": value} for role, value in turns]


def qa(question: str = "<image>\nWhat is it?", answer: str = "A square.") -> list[dict]:
    return convo(("human", question), ("gpt", answer))


def bomb_png(width: int, height: int) -> bytes:
    """A small PNG (1 bit per pixel, all zeros: compresses to almost nothing) with a huge header."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def test_every_bad_record_is_quarantined_with_its_reason(files, accounted):
    files.image("ok.png")
    files.image("photo.jpg", "JPEG")
    (files.root / "images" / "adir").mkdir()
    (files.root / "images" / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    jpeg = (files.root / "images" / "photo.jpg").read_bytes()
    (files.root / "images" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (files.root / "images" / "bomb.png").write_bytes(bomb_png(20_000, 20_000))
    (files.root / "images" / "big.png").write_bytes(bomb_png(9_000, 8_000))  # 72M > 64M pixels

    cases: list[tuple[object, str | None]] = [
        ({"id": "good", "image": "ok.png", "conversations": qa()}, None),
        ('{"id": "cut", "conversations": [{"from": "human", "value": "hi"', R.MALFORMED_JSON),
        ({"id": "noconv", "image": "ok.png"}, R.MISSING_FIELD),
        ({"id": "empty", "conversations": []}, R.MISSING_FIELD),
        ({"id": "novalue", "conversations": [{"from": "human"}, {"from": "gpt", "value": "a"}]},
         R.MISSING_FIELD),
        ({"id": "intvalue", "conversations": convo(("human", 42), ("gpt", "a"))}, R.MISSING_FIELD),
        ({"id": "nullvalue", "conversations": convo(("human", "q"), ("gpt", None))},
         R.MISSING_FIELD),
        ({"id": "role", "conversations": convo(("human", "q"), ("bot", "a"))}, R.UNKNOWN_ROLE),
        ({"id": "twousers", "conversations": convo(("human", "q"), ("human", "q2"), ("gpt", "a"),
                                                   ("gpt", "a2"))}, R.ROLES_NOT_ALTERNATING),
        ({"id": "endsuser", "conversations": convo(("human", "q"), ("gpt", "a"), ("human", "q2"))},
         R.ROLES_NOT_ALTERNATING),
        ({"id": "startsgpt", "conversations": convo(("gpt", "a"), ("human", "q"))},
         R.ROLES_NOT_ALTERNATING),
        ({"id": "nofile", "image": "nowhere/missing.png", "conversations": qa()}, R.MISSING_IMAGE),
        ({"id": "dir", "image": "adir", "conversations": qa()}, R.MISSING_IMAGE),
        ({"id": "notref", "image": 5, "conversations": qa()}, R.MISSING_IMAGE),
        ({"id": "nul", "image": "ok.png\x00.jpg", "conversations": qa()}, R.MISSING_IMAGE),
        ({"id": "garbage", "image": "garbage.png", "conversations": qa()}, R.CORRUPT_IMAGE),
        ({"id": "trunc", "image": "truncated.jpg", "conversations": qa()}, R.CORRUPT_IMAGE),
        ({"id": "bomb", "image": "bomb.png", "conversations": qa()}, R.IMAGE_TOO_LARGE),
        ({"id": "big", "image": "big.png", "conversations": qa()}, R.IMAGE_TOO_LARGE),
        ({"id": "moretokens", "image": "ok.png", "conversations": qa("<image>\n<image>\nQ?")},
         R.IMAGE_TOKEN_MISMATCH),
        ({"id": "fewertokens", "image": ["ok.png", "photo.jpg"], "conversations": qa()},
         R.IMAGE_TOKEN_MISMATCH),
        ({"id": "notoken", "image": "ok.png", "conversations": qa("What is it?")},
         R.IMAGE_TOKEN_MISMATCH),
        ({"id": "tokennoimage", "conversations": qa()}, R.IMAGE_TOKEN_MISMATCH),
        (42, R.MISSING_FIELD),
        (["a", "list"], R.MISSING_FIELD),
        ("not json at all", R.MALFORMED_JSON),
        ({"id": "text", "conversations": qa("Hi", "Hello")}, None),
        ({"id": "two", "image": ["ok.png", "photo.jpg"],
          "conversations": qa("<image> and <image>: same?")}, None),
    ]
    path, lines = files.jsonl("bad.jsonl", [record for record, _ in cases])
    result = files.ingest(path)

    accounted(result, range(len(cases)))
    assert result.quarantine.schema == QUARANTINE_SCHEMA
    expected_bad = {i: reason.value for i, (_, reason) in enumerate(cases) if reason is not None}
    got = {row["row_index"]: row["reason"] for row in result.quarantine.to_dicts()}
    assert got == expected_bad
    assert result.accepted["row_index"].to_list() == [0, len(cases) - 2, len(cases) - 1]
    for row in result.quarantine.to_dicts():
        assert row["raw"] == lines[row["row_index"]]  # the original line, byte for byte
        assert row["detail"], row
        assert row["source"] == "t"
        record = cases[row["row_index"]][0]
        if isinstance(record, dict):
            assert row["example_id"] == record["id"]
    counts: dict[str, int] = {}
    for reason in expected_bad.values():
        counts[reason] = counts.get(reason, 0) + 1
    assert result.quarantine_by_reason() == counts
    assert result.summary()["quarantined"] == len(expected_bad)
    details = {row["row_index"]: row["detail"] for row in result.quarantine.to_dicts()}
    assert details[1].startswith("line 2:")
    assert details[len(cases) - 3].startswith("line 26:")
    assert "2 <image> tokens for 1 images" in details[19]
    assert "1 <image> tokens for 2 images" in details[20]


def test_image_refs_that_escape_the_root_are_refused_unread(files, opened, accounted, tmp_path):
    root = tmp_path / "images"
    files.image("inside.png")
    files.image("outside.png", base=tmp_path)  # a real, decodable image one level up
    outside = tmp_path / "outside.png"
    (root / "sub").mkdir()
    os.symlink(outside, root / "link.png")
    os.symlink(tmp_path, root / "sub" / "up")  # a linked folder that leads out of the root
    refs = [
        "../outside.png",
        str(outside),
        "link.png",
        "sub/up/outside.png",
        "sub/../../outside.png",
        f"file://{outside}",
        "s3://bucket/outside.png",  # a URL is never inside a local root
    ]
    records = [{"id": "inside", "image": "inside.png", "conversations": qa()}]
    records += [{"id": f"escape-{i}", "image": ref, "conversations": qa()}
                for i, ref in enumerate(refs)]
    path, _ = files.jsonl("escape.jsonl", records)
    with opened() as touched:
        result = files.ingest(path)

    accounted(result, range(len(records)))
    assert result.accepted["example_id"].to_list() == ["inside"]
    assert result.quarantine["reason"].to_list() == [R.IMAGE_OUTSIDE_ROOT.value] * len(refs)
    assert os.path.realpath(root / "inside.png") in touched  # the hook does see image reads
    assert os.path.realpath(outside) not in touched


def test_images_of_rows_that_break_a_contract_are_not_read(files, opened):
    files.image("ok.png")
    record = {"id": "r", "image": "ok.png",
              "conversations": convo(("human", "<image>q"), ("human", "q2"))}
    path, _ = files.jsonl("c.jsonl", [record])
    with opened() as touched:
        result = files.ingest(path)
    assert result.quarantine["reason"].to_list() == [R.ROLES_NOT_ALTERNATING.value]
    assert os.path.realpath(path) in touched  # the hook does see reads
    assert os.path.realpath(files.root / "images" / "ok.png") not in touched


def test_preference_rows_are_checked_one_by_one(files, accounted):
    files.image("ok.png")
    records = [
        {"id": "p1", "conversations": convo(("human", "<image>q")), "images": ["ok.png"],
         "chosen": {"from": "gpt", "value": "yes"}, "rejected": {"from": "alien", "value": "no"}},
        {"id": "p2", "conversations": convo(("human", "q")), "chosen": {"from": "gpt"},
         "rejected": {"from": "gpt", "value": "no"}},
        {"id": "p3", "question": "q", "chosen": "a", "rejected": None},
        {"id": "p4", "chosen": "a", "rejected": "b"},
    ]
    path, lines = files.jsonl("pref.jsonl", records)
    result = files.ingest(path)
    accounted(result, range(4))
    assert result.rows_in == 1 * 2 + 3  # p1 maps to two rows; p2..p4 fail as whole records
    assert result.accepted["example_id"].to_list() == ["p1#chosen"]
    rows = result.quarantine.to_dicts()
    assert [(row["row_index"], row["example_id"], row["reason"]) for row in rows] == [
        (0, "p1#rejected", R.UNKNOWN_ROLE.value),
        (1, "p2", R.MISSING_FIELD.value),
        (2, "p3", R.MISSING_FIELD.value),
        (3, "p4", R.MISSING_FIELD.value),
    ]
    assert [row["raw"] for row in rows] == [lines[i] for i in range(4)]


def test_corrupt_embedded_bytes_are_quarantined_and_never_written(files, make_image_bytes,
                                                                 accounted):
    good = make_image_bytes()
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "id": ["good", "bad", "bomb", "none"],
            "image": [{"bytes": good, "path": None}, {"bytes": b"\xff\xd8\xff garbage", "path": None},
                      {"bytes": bomb_png(20_000, 20_000), "path": None},
                      {"bytes": None, "path": None}],
            "conversations": [qa(), qa(), qa(), qa()],
        },
        schema=pa.schema([("id", pa.string()), ("image", struct),
                          ("conversations",
                           pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())])))]),
    )
    path = files.root / "embedded.parquet"
    pq.write_table(table, path)
    result = files.ingest(path)
    accounted(result, range(4))
    assert dict(zip(result.quarantine["example_id"], result.quarantine["reason"], strict=True)) == {
        "bad": R.CORRUPT_IMAGE.value, "bomb": R.IMAGE_TOO_LARGE.value, "none": R.MISSING_IMAGE.value
    }
    # Parquet rows have no line: raw is the row as JSON, bytes described, not dumped.
    raw = json.loads(result.quarantine.filter(result.quarantine["example_id"] == "bad")["raw"][0])
    assert raw["id"] == "bad" and re.fullmatch(r"<\d+ bytes>", raw["image"]["bytes"])
    blobs = [p for p in files.blob_root.rglob("*") if p.is_file()]
    assert len(blobs) == 1 and blobs[0].read_bytes() == good


def test_reading_runs_ahead_of_image_checks_within_the_embedded_bytes_budget(
        files, make_image_bytes, monkeypatch):
    """Batches wait for their image checks while the next ones are read (at most
    BATCHES_IN_FLIGHT), but no more embedded image bytes wait than EMBEDDED_BYTES_IN_FLIGHT."""
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    images = [make_image_bytes(color=(i, 40, 80)) for i in range(6)]
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(6)],
                             "image": [{"bytes": data, "path": None} for data in images],
                             "conversations": [qa()] * 6},
                            schema=pa.schema([("id", pa.string()), ("image", struct),
                                              ("conversations", pa.list_(pa.struct(
                                                  [("from", pa.string()), ("value", pa.string())])))])),
                   files.root / "embedded.parquet")
    waiting: list[int] = []  # batches read and not yet split, after each step

    def counted(step, change):
        def wrapper(*args):
            out = step(*args)
            waiting.append((waiting[-1] if waiting else 0) + change)
            return out
        return wrapper

    monkeypatch.setattr(pipeline, "_contracts", counted(pipeline._contracts, +1))
    monkeypatch.setattr(pipeline, "_split", counted(pipeline._split, -1))
    ahead = files.ingest(files.root / "embedded.parquet", batch_size=1)
    assert max(waiting) == 6  # every batch read before the first one's images are back
    waiting.clear()
    monkeypatch.setattr(pipeline, "EMBEDDED_BYTES_IN_FLIGHT", min(map(len, images)) - 1)
    held = files.ingest(files.root / "embedded.parquet", batch_size=1)
    assert max(waiting) == 1  # one batch's bytes are over the budget: no second one is read
    assert held.accepted.equals(ahead.accepted) and held.accepted.height == 6


def test_counts_add_up_across_batches(files, accounted):
    files.image("ok.png")
    records: list[object] = []
    for i in range(25):
        records.append({"id": f"g{i}", "image": "ok.png", "conversations": qa()})
        records.append("{oops" if i % 3 else {"id": f"b{i}", "image": "gone.png",
                                              "conversations": qa()})
    path, _ = files.jsonl("many.jsonl", records)
    result = files.ingest(path, batch_size=7)
    accounted(result, range(len(records)))
    assert result.accepted.height == 25
    assert result.quarantine_by_reason() == {"malformed_json": 16, "missing_image": 9}
    assert result.quarantine["row_index"].is_sorted()


# --- whole files that cannot be read ---------------------------------------------------------
def test_json_array_cut_in_half_names_file_and_line(files):
    records = [{"id": str(i), "conversations": qa("Hi", "Hello")} for i in range(20)]
    text = json.dumps(records, indent=2)
    half = text[: len(text) // 2]
    path = files.raw("cut.json", half)
    with pytest.raises(IngestError) as error:
        files.ingest(path)
    message = str(error.value)
    assert str(path) in message
    line = int(re.search(r"line (\d+)", message).group(1))
    assert 1 < line <= half.count("\n") + 1


def test_json_array_syntax_error_names_its_line(files):
    path = files.raw("bad.json", '[\n  {"id": "a"},\n  {"id": "b",,}\n]\n')
    with pytest.raises(IngestError, match=r"line 3\b") as error:
        files.ingest(path)
    assert str(path) in str(error.value)


def test_parquet_of_garbage_bytes(files):
    path = files.raw("junk.parquet", os.urandom(256))
    with pytest.raises(IngestError, match="not a readable parquet file") as error:
        files.ingest(path)
    assert str(path) in str(error.value)


def test_missing_file(files):
    path = files.root / "absent.jsonl"
    with pytest.raises(IngestError, match="file not found") as error:
        files.ingest(path)
    assert str(path) in str(error.value)


def test_jsonl_with_no_valid_line(files):
    path = files.raw("all_bad.jsonl", "{nope\n{still nope\n")
    with pytest.raises(IngestError, match=r"no line is valid JSON \(line 1") as error:
        files.ingest(path)
    assert str(path) in str(error.value)


def test_reasons_with_equal_counts_are_listed_by_name_every_time(files):
    """Two reasons quarantined 7 times each came out in either order from one run to the next:
    the summary, part of the manifest, differed for the same input."""
    lines = ['{"id": "x", "conversations": ['] * 3 + ['[1, 2]'] * 3
    result = files.ingest(files.raw("ties.jsonl", "\n".join(lines)))
    for _ in range(20):
        assert list(result.quarantine_by_reason()) == ["malformed_json", "missing_field"]
