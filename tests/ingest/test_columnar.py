"""The columnar JSON-lines path gives exactly the per-record path's rows and quarantine.

Plain lines (most of a real file) are mixed with every line shape the columnar path must send
back or must map the same way: ids of every JSON type, nulls, blank refs, extra keys of every
type, repeated keys, ``":`` inside text, broken and non-object lines, role spellings.
"""

from __future__ import annotations

import json
import random

import pytest
from polars.testing import assert_frame_equal

from tests.ingest.conftest import check_accounting


def _turns(question: str = "<image>\nWhat is it?", answer: str = "A cat.") -> list[dict]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def _llava_hostile() -> list[str]:
    plain = {"id": "h", "image": "a.png", "conversations": _turns()}
    lines = [
        {"id": 7, "image": "a.png", "conversations": _turns()},
        {"id": True, "image": "a.png", "conversations": _turns()},
        {"id": 1.5, "image": "a.png", "conversations": _turns()},
        {"id": None, "image": "a.png", "conversations": _turns()},
        {"image": "a.png", "conversations": _turns()},
        {"id": "n1", "image": None, "conversations": _turns("Hi?", "Hello.")},
        {"id": "n2", "conversations": _turns("Hi?", "Hello.")},
        {"id": "b1", "image": "", "conversations": _turns()},
        {"id": "b2", "image": "  ", "conversations": _turns()},
        {"id": "l1", "image": ["a.png"], "conversations": _turns()},
        {"id": "l2", "images": ["a.png"], "conversations": _turns()},
        {"id": "l3", "images": "a.png", "conversations": _turns()},
        {"id": "e1", **{k: v for k, v in plain.items() if k != "id"}, "caption": "a \"red\" car"},
        {"id": "e2", "image": "a.png", "conversations": _turns(), "caption": "é 😀 \u2028 \x01"},
        {"id": "e3", "image": "a.png", "conversations": _turns(), "n": 3, "flag": False},
        {"id": "e4", "image": "a.png", "conversations": _turns(), "score": 0.5},
        {"id": "e5", "image": "a.png", "conversations": _turns(), "meta": {"a": [1, 2]}},
        {"id": "e6", "image": "a.png", "conversations": _turns(), "tags": ["x", "y"]},
        {"id": "e7", "image": "a.png", "conversations": _turns(), "caption": None},
        {"id": "e8", "image": "a.png", "conversations": _turns(), "system": "Be brief."},
        {"id": "e9", "image": "a.png", "conversations": _turns(), "when": "2024-01-02"},
        {"id": "c1", "image": "a.png", "conversations": []},
        {"id": "c2", "image": "a.png", "conversations": None},
        {"id": "c3", "image": "a.png"},
        {"id": "c4", "image": "a.png", "conversations": [{"from": "human", "value": None},
                                                         {"from": "gpt", "value": "x"}]},
        {"id": "c5", "image": "a.png", "conversations": [{"from": "human"},
                                                         {"from": "gpt", "value": "x"}]},
        {"id": "c6", "image": "a.png", "conversations": [
            {"from": "HUMAN", "value": "<image>\nQ?"}, {"from": "Gpt", "value": "A."}]},
        {"id": "c7", "image": "a.png", "conversations": [
            {"from": "bot", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A."}]},
        {"id": "c8", "image": "a.png", "conversations": [
            {"from": "human", "value": "<image>\nQ?", "weight": 0},
            {"from": "gpt", "value": "A.", "weight": 1}]},
        {"id": "c9", "image": "a.png", "conversations": _turns("<image>\nSay \"x\": now", 'He said "ok": fine')},
        {"id": "c10", "image": "a.png", "conversations": [
            {"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": 5}]},
        {"id": "c11", "image": "a.png", "conversations": [
            {"from": "human", "value": [{"type": "text", "text": "Q?"}]},
            {"from": "gpt", "value": "A."}]},
        {"id": "c12", "image": "a.png", "conversations": _turns("What?", "Nothing.")},
        {"id": "c13", "image": "a.png", "conversations": _turns("<image>\nQ?", "   ")},
        {"id": "c14", "image": "missing.png", "conversations": _turns()},
    ]
    text = [json.dumps(line, ensure_ascii=False) for line in lines]
    return text + [
        '{"id": "d1", "id": "d2", "image": "a.png", "conversations": []}',
        '{"id": "d3", "image": "a.png", "conversations": [{"from": "human", "from": "gpt", '
        '"value": "x"}]}',
        '{"id" : "s1", "image" : "a.png", "conversations" : [{"from" : "human", "value" : '
        '"<image>\\nQ?"}, {"from" : "gpt", "value" : "A."}]}',
        # A space before one colon and an explicit null elsewhere: a count of `":` alone balances
        # them, and the null (kept in metadata by the per-record path) was lost.
        '{"id" : "w1", "image": "a.png", "caption": null, "conversations": [{"from": "human", '
        '"value": "<image>\\nQ?"}, {"from": "gpt", "value": "A."}]}',
        '{"id": "w2", "image": "a.png", "caption":\t"x", "n": null, "conversations": [{"from": '
        '"human", "value": "<image>\\nQ?"}, {"from": "gpt", "value": "A."}]}',
        '{"id": "broken", "image": "a.png", "conversations": [',
        '[1, 2]', '"text"', '5', 'null',
        '{"id": "bad-utf8", "image": "a.png", "conversations": [], "x": "INVALID-UTF8"}',
    ]


def _sharegpt_hostile() -> list[str]:
    def messages(question: str = "<image>What is it?") -> list[dict]:
        return [{"role": "user", "content": question}, {"role": "assistant", "content": "A cat."}]
    lines = [
        {"id": 3, "messages": messages(), "images": ["a.png"]},
        {"messages": messages(), "images": ["a.png"], "system": "Be brief."},
        {"messages": messages(), "images": ["a.png"], "system": ""},
        {"messages": messages(), "images": ["a.png"], "system": None},
        {"messages": messages("Hi?"), "images": []},
        {"messages": messages("Hi?")},
        {"messages": messages(), "images": None},
        {"messages": messages(), "images": [None]},
        {"messages": messages(), "images": [""]},
        {"messages": messages(), "image": "a.png"},
        {"messages": messages(), "images": [{"path": "a.png"}]},
        {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]},
                      {"role": "assistant", "content": "A."}], "images": ["a.png"]},
        {"messages": [{"role": "USER", "content": "<image>Q?"},
                      {"role": "Assistant", "content": "A."}], "images": ["a.png"]},
        {"messages": messages(), "images": ["a.png"], "source": "coco", "rank": 2},
        {"messages": messages(), "images": ["a.png"], "source": "coco"},
    ]
    return [json.dumps(line, ensure_ascii=False) for line in lines] + ['{"messages": ']


@pytest.mark.parametrize("shape", ["llava", "sharegpt"])
def test_the_columnar_path_gives_the_per_record_rows(files, shape):
    files.image("a.png")
    if shape == "llava":
        plain = [json.dumps({"id": f"p{i}", "image": "a.png", "caption": f"cap {i}",
                             "conversations": _turns()}) for i in range(1500)]
        plain += [json.dumps({"id": f"q{i}", "conversations": _turns("Hi?", "Hello.")})
                  for i in range(300)]
        hostile = _llava_hostile()
    else:
        plain = [json.dumps({"messages": [{"role": "user", "content": "<image>Q?"},
                                          {"role": "assistant", "content": f"A {i}."}],
                             "images": ["a.png"]}) for i in range(1500)]
        hostile = _sharegpt_hostile()
    lines = plain[:]
    generator = random.Random(5)
    for line in hostile * 3:  # each hostile line in several places, some inside columnar runs
        lines.insert(generator.randrange(1, len(lines)), line)
    path = files.raw(f"{shape}.jsonl",
                     ("\n".join(lines) + "\n\n").encode().replace(b"INVALID-UTF8", b"\xff\xfe"))

    fast = files.ingest(path, batch_size=1000)
    slow = files.ingest(path, batch_size=1000, columnar=False)

    assert slow.columnar_rows == 0
    assert fast.columnar_rows > 0.8 * len(plain)  # the plain lines did take the columnar path
    assert_frame_equal(fast.accepted, slow.accepted)
    assert_frame_equal(fast.quarantine, slow.quarantine)
    check_accounting(fast, range(len(lines)))
    assert (fast.records_in, fast.rows_in, fast.origin_format) == \
        (slow.records_in, slow.rows_in, slow.origin_format)
    assert fast.quarantine.height >= 3  # some hostile lines are quarantined, three times each


def test_metadata_of_extra_keys_is_orjsons(files):
    files.image("a.png")
    lines = [json.dumps({"id": f"p{i}", "image": "a.png", "conversations": _turns(),
                         "caption": f"a \"red\" car é {i}", "n": i, "ok": i % 2 == 0})
             for i in range(600)]
    path = files.raw("m.jsonl", "\n".join(lines))
    result = files.ingest(path)
    assert result.columnar_rows == 599  # the first line, which tells the format, is parsed alone
    first = result.accepted.row(0, named=True)
    assert first["metadata"] == '{"caption":"a \\"red\\" car é 0","n":0,"ok":true}'
    assert result.accepted["example_id"].to_list() == [f"p{i}" for i in range(600)]


def test_ids_missing_on_the_columnar_path_are_positions(files):
    files.image("a.png")
    lines = [json.dumps({"image": "a.png", "conversations": _turns()}) for _ in range(600)]
    result = files.ingest(files.raw("noid.jsonl", "\n".join(lines)), name="src")
    assert result.columnar_rows == 599
    assert result.accepted["example_id"].to_list() == [f"src:{i}" for i in range(600)]


def test_the_demo_world_reads_the_same_rows_either_way(tmp_path):
    """The demo's own files (broken lines, captions as metadata, text-only rows) give the same
    raw_sft and quarantine on both paths, so no audit verdict can move."""
    from demo.generate import DemoConfig, generate
    from integrity.ingest import SourceConfig, ingest_source

    generate(tmp_path / "demo", DemoConfig(rows=1200, seed=8, broken_rate=0.02))
    source = SourceConfig(name="demo", uri=str(tmp_path / "demo" / "llava.jsonl"),
                          image_root=str(tmp_path / "demo"))
    fast = ingest_source(source, batch_size=500)
    slow = ingest_source(source, batch_size=500, columnar=False)
    assert fast.columnar_rows > 0.9 * fast.accepted.height
    assert fast.quarantine.height > 10
    assert_frame_equal(fast.accepted, slow.accepted)
    assert_frame_equal(fast.quarantine, slow.quarantine)


def test_lines_cut_short_cost_one_failed_parse_not_one_each(files, monkeypatch):
    """A parse that fails costs a parse of the lines before the failure; lines cut short (the
    usual damage: a truncated write or download) are set aside together after the first."""
    from integrity.ingest import columnar

    files.image("a.png")
    generator = random.Random(3)
    lines = [json.dumps({"id": f"p{i}", "image": "a.png", "conversations": _turns(),
                         "caption": f"cap {i}"}) for i in range(2000)]
    for _ in range(50):  # cut at any point of a line, not only in the middle
        line = lines[generator.randrange(len(lines))]
        lines.insert(generator.randrange(1, len(lines)), line[:generator.randrange(1, len(line))])
    path = files.raw("cut.jsonl", "\n".join(lines))
    attempts = []
    parse = columnar._parse
    monkeypatch.setattr(columnar, "_parse", lambda *args: attempts.append(1) or parse(*args))

    fast = files.ingest(path, batch_size=5000)
    assert len(attempts) == 2  # the window, then its lines without the 50 cut short
    slow = files.ingest(path, batch_size=5000, columnar=False)
    assert fast.columnar_rows == 1999  # every whole line but the first, which tells the format
    assert_frame_equal(fast.accepted, slow.accepted)
    assert_frame_equal(fast.quarantine, slow.quarantine)
    assert fast.quarantine["reason"].to_list() == ["malformed_json"] * 50
