"""The bad-input matrix, row level: each bad record lands in quarantine with its precise reason
(or is accepted, where that is the behaviour), and rows in = accepted + quarantined."""

from __future__ import annotations

import io
import os
import struct

import pytest
from PIL import Image

from integrity.ingest.expectations import validate_raw_sft
from integrity.ingest.schema import QuarantineReason

R = QuarantineReason


def test_malformed_json_mid_jsonl_is_quarantined_and_the_rest_kept(ws, accounted):
    good = {"id": "g", "conversations": [{"from": "human", "value": "Hi"},
                                          {"from": "gpt", "value": "Hello"}]}
    broken = '{"id": "cut", "conversations": [{"from": "human", "value": "hi"'
    path = ws.jsonl("mid.jsonl", [good, good, broken, good])
    result = ws.ingest(path)
    accounted(result, 4)
    assert result.accepted["row_index"].to_list() == [0, 1, 3]
    row = result.quarantine.row(0, named=True)
    assert (row["row_index"], row["reason"]) == (2, R.MALFORMED_JSON.value)
    assert row["detail"].startswith("line 3:")
    assert row["raw"] == broken


def test_non_utf8_line_is_quarantined_as_malformed_json(ws, quarantined):
    # Latin-1 "café" inside an otherwise well-formed JSON line.
    line = b'{"id": "latin1", "conversations": [{"from": "human", "value": "caf\xe9"}, ' \
           b'{"from": "gpt", "value": "x"}]}'
    good = b'{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}'
    path = ws.raw("latin1.jsonl", b"\n".join([good, line, good]) + b"\n")
    row = quarantined(ws.ingest(path))
    assert row["reason"] == R.MALFORMED_JSON.value
    assert row["detail"].startswith("line 2:") and "UTF-8" in row["detail"]
    assert "\ufffd" in row["raw"]  # kept, with the bad byte replaced, not dropped


def test_duplicate_ids_are_accepted_by_ingest_and_flagged_by_the_contract(ws, accounted,
                                                                           conversation):
    records = [{"id": "dup", "conversations": conversation("Hi", answer)}
               for answer in ("one", "two")]
    result = ws.ingest(ws.jsonl("dup.jsonl", records))
    accounted(result, 2)
    # Ingest keeps both (they are distinct rows); the raw_sft contract is what refuses them.
    assert result.accepted["example_id"].to_list() == ["dup", "dup"]
    assert result.quarantine.height == 0
    suite = validate_raw_sft(result.accepted)
    assert not suite.success
    assert suite.failed == ["expect_column_values_to_be_unique {'column': 'example_id'}: 2 rows"]


@pytest.mark.parametrize("role", ["bot", "tool", "Moderator", ""])
def test_unknown_role_is_quarantined(ws, quarantined, role):
    record = {"id": "r", "conversations": [{"from": "human", "value": "Hi"},
                                           {"from": role, "value": "Hello"}]}
    row = quarantined(ws.ingest_one(record))
    assert row["reason"] == R.UNKNOWN_ROLE.value
    assert row["detail"] == f"unknown roles: {role}"
    assert row["example_id"] == "r"


@pytest.mark.parametrize("answer", ["", "  \n\t "], ids=["empty", "whitespace"])
def test_empty_answer_is_quarantined(ws, quarantined, answer):
    record = {"id": "e", "conversations": [{"from": "human", "value": "Hi"},
                                           {"from": "gpt", "value": "Hello"},
                                           {"from": "human", "value": "And?"},
                                           {"from": "gpt", "value": answer}]}
    row = quarantined(ws.ingest_one(record))
    assert row["reason"] == R.EMPTY_ANSWER.value
    assert row["detail"] == "1 empty assistant answer(s): nothing to learn"
    assert row["example_id"] == "e"


def test_1mb_answer_is_accepted_intact(ws, accounted, conversation):
    answer = "x" * 1_000_000
    result = ws.ingest(ws.jsonl("answers.jsonl", [{"id": "a",
                                                    "conversations": conversation("Hi", answer)}]))
    accounted(result, 1)
    assert result.quarantine.height == 0
    assert result.accepted["turns"][0][1]["content"] == answer


def test_image_refs_escaping_the_root_are_refused(ws, accounted, conversation, make_png):
    outside = ws.root / "outside.png"
    outside.write_bytes(make_png())
    ws.image("inside.png")
    os.symlink(outside, ws.images / "link.png")
    refs = {"dotdot": "../outside.png", "absolute": str(outside), "symlink": "link.png",
            "deep-dotdot": "a/b/../../../outside.png", "etc-passwd": "/etc/passwd"}
    records = [{"id": "inside", "image": "inside.png", "conversations": conversation()}]
    records += [{"id": name, "image": ref, "conversations": conversation()}
                for name, ref in refs.items()]
    result = ws.ingest(ws.jsonl("escape.jsonl", records))
    accounted(result, len(records))
    assert result.accepted["example_id"].to_list() == ["inside"]
    reasons = dict(zip(result.quarantine["example_id"], result.quarantine["reason"], strict=True))
    assert reasons == dict.fromkeys(refs, R.IMAGE_OUTSIDE_ROOT.value)
    assert all("escapes" in detail for detail in result.quarantine["detail"])


@pytest.mark.parametrize(
    ("size", "detail"),
    [((9_000, 8_000), "9000x8000 exceeds 64000000 pixels"),  # our own budget (MAX_IMAGE_PIXELS)
     ((100_000, 100_000), "decompression bomb")],  # PIL's own guard fires first
    ids=["over-budget", "huge-header"],
)
def test_decompression_bomb_header_is_refused(ws, quarantined, conversation, make_bomb,
                                              size, detail):
    data = make_bomb(*size)
    assert len(data) < 200  # a tiny file that claims a huge image
    ws.image("bomb.png", data)
    row = quarantined(ws.ingest_one({"id": "b", "image": "bomb.png",
                                     "conversations": conversation()}))
    assert row["reason"] == R.IMAGE_TOO_LARGE.value
    assert detail in row["detail"]


@pytest.mark.parametrize("content", [b"", b"hello, not an image\n", b"\x89PNG\r\n\x1a\n" + b"\0" * 9],
                         ids=["zero-byte", "text", "png-magic-only"])
def test_non_images_named_png_are_corrupt(ws, quarantined, conversation, content):
    ws.image("fake.png", content)
    row = quarantined(ws.ingest_one({"id": "f", "image": "fake.png",
                                     "conversations": conversation()}))
    assert row["reason"] == R.CORRUPT_IMAGE.value
    assert row["detail"]


def _tiff_with_five_samples() -> bytes:
    """A well-formed TIFF whose pixels have five samples each: no mode Pillow decodes."""
    buffer = io.BytesIO()
    Image.new("CMYK", (8, 8)).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    for entry in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        at = ifd + 2 + 12 * entry
        if struct.unpack("<H", data[at:at + 2])[0] == 277:  # SamplesPerPixel
            data[at + 8:at + 10] = struct.pack("<H", 5)
    return bytes(data)


def test_unsupported_pixel_layout_is_quarantined_as_such(ws, quarantined, conversation):
    ws.image("five.tif", _tiff_with_five_samples())
    row = quarantined(ws.ingest_one({"id": "u", "image": "five.tif",
                                     "conversations": conversation()}))
    assert row["reason"] == R.UNSUPPORTED_IMAGE.value
    assert row["detail"].startswith("TIFF with a pixel layout Pillow cannot decode")


def _encoded(mode: str, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (24, 16), 7).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "fmt", "name"),
    [("I;16", "PNG", "i16.png"), ("P", "PNG", "palette.png"), ("1", "PNG", "bilevel.png"),
     ("LA", "PNG", "gray-alpha.png"), ("RGBA", "PNG", "rgba.png"), ("CMYK", "JPEG", "cmyk.jpg"),
     ("CMYK", "TIFF", "cmyk.tif"), ("I;16", "TIFF", "i16.tif")],
    ids=lambda value: value if isinstance(value, str) and "." not in value else None,
)
def test_unusual_image_modes_are_accepted(ws, accounted, conversation, mode, fmt, name):
    # Ingest only proves an image decodes; converting to RGB is the encoder's job.
    data = _encoded(mode, fmt)
    assert Image.open(io.BytesIO(data)).mode == mode
    ws.image(name, data)
    result = ws.ingest(ws.jsonl("modes.jsonl", [{"id": "m", "image": name,
                                                 "conversations": conversation()}]))
    accounted(result, 1)
    assert result.quarantine.height == 0
    assert result.accepted["modality"].to_list() == ["image-text"]
