"""Each reader on small real files: LLaVA, ShareGPT, HF parquet, preference formats."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from integrity.ingest.schema import QUARANTINE_SCHEMA, RAW_SFT_SCHEMA

LLAVA_ROW = {
    "id": "000000033471",
    "image": "coco/train2017/000000033471.jpg",
    "conversations": [
        {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
        {"from": "gpt", "value": "The bus in the image is white and red."},
        {"from": "human", "value": "What feature can be seen on the back of the bus?"},
        {"from": "gpt", "value": "The back of the bus features an advertisement."},
    ],
}
TEXT_ROW = {
    "id": "text-0001",
    "conversations": [
        {"from": "human", "value": "Write a haiku about autumn."},
        {"from": "gpt", "value": "Leaves fall, soft and red."},
    ],
}
MULTI_ROW = {
    "id": "multi-0001",
    "image": ["multi/left.png", "multi/right.png"],
    "conversations": [
        {"from": "human", "value": "<image>\n<image>\nWhich picture is brighter?"},
        {"from": "gpt", "value": "The second one."},
    ],
}
CAPTION_ROW = {
    "id": "cap-0001",
    "image": "coco/train2017/000000033471.jpg",
    "caption": "a white and red bus parked on a street",
    "source_dataset": "coco",
    "conversations": [
        {"from": "human", "value": "<image>\nDescribe the image."},
        {"from": "gpt", "value": "A white and red bus."},
    ],
}

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
FROM_VALUE = pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))
ROLE_CONTENT = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def roles(row: dict) -> list[str]:
    return [turn["role"] for turn in row["turns"]]


def llava_images(files) -> dict[str, bytes]:
    return {
        "coco/train2017/000000033471.jpg": files.image("coco/train2017/000000033471.jpg", "JPEG"),
        "multi/left.png": files.image("multi/left.png", color=(10, 10, 10)),
        "multi/right.png": files.image("multi/right.png", color=(240, 240, 240)),
    }


def check_llava_rows(result, files, images: dict[str, bytes], row_indices: list[int]) -> None:
    assert result.origin_format == "llava"  # format: auto
    assert result.quarantine.height == 0, result.quarantine.to_dicts()
    assert result.accepted.schema == RAW_SFT_SCHEMA
    rows = {row["example_id"]: row for row in result.accepted.to_dicts()}
    assert list(rows) == ["000000033471", "text-0001", "multi-0001", "cap-0001"]
    assert [row["row_index"] for row in rows.values()] == row_indices
    assert {row["source"] for row in rows.values()} == {"t"}
    assert {row["origin_format"] for row in rows.values()} == {"llava"}

    bus = rows["000000033471"]
    assert roles(bus) == ["user", "assistant", "user", "assistant"]
    assert [turn["content"] for turn in bus["turns"]] == [
        turn["value"] for turn in LLAVA_ROW["conversations"]
    ]
    assert bus["images"] == ["coco/train2017/000000033471.jpg"]
    expected_uri = files.root / "images" / "coco/train2017/000000033471.jpg"
    assert bus["image_uris"] == [str(expected_uri)]
    assert Path(bus["image_uris"][0]).is_absolute()
    assert bus["image_sha256"] == [sha(expected_uri.read_bytes())]
    assert bus["modality"] == "image-text"
    assert json.loads(bus["metadata"]) == {}
    assert bus["pref_role"] is None and bus["pref_group"] is None

    text = rows["text-0001"]
    assert text["modality"] == "text"
    assert text["images"] == text["image_uris"] == text["image_sha256"] == []
    assert roles(text) == ["user", "assistant"]

    multi = rows["multi-0001"]
    assert multi["images"] == ["multi/left.png", "multi/right.png"]
    assert multi["image_uris"] == [str(files.root / "images" / ref) for ref in multi["images"]]
    assert multi["image_sha256"] == [sha(images[ref]) for ref in multi["images"]]
    assert multi["image_sha256"][0] != multi["image_sha256"][1]

    caption = rows["cap-0001"]
    assert json.loads(caption["metadata"]) == {
        "caption": "a white and red bus parked on a street",
        "source_dataset": "coco",
    }
    assert caption["image_sha256"] == bus["image_sha256"]

    summary = result.summary()
    assert summary["modality"] == {"image-text": 3, "text": 1}
    assert summary["text_only_share"] == pytest.approx(0.25)
    assert summary["records_in"] == summary["rows_in"] == summary["accepted"] == 4


def test_llava_json_array(files):
    images = llava_images(files)
    path = files.json("llava.json", [LLAVA_ROW, TEXT_ROW, MULTI_ROW, CAPTION_ROW])
    result = files.ingest(path)
    check_llava_rows(result, files, images, [0, 1, 2, 3])


def test_llava_jsonl_row_index_is_the_line(files):
    images = llava_images(files)
    # A blank line is skipped but still counts: row_index finds the line in the file again.
    path, _ = files.jsonl("llava.jsonl", [LLAVA_ROW, TEXT_ROW, "", MULTI_ROW, CAPTION_ROW])
    result = files.ingest(path)
    check_llava_rows(result, files, images, [0, 1, 3, 4])


def test_llava_images_key_and_default_image_root(files):
    # LLaMA-Factory writes `images` (a list); with no image_root, refs resolve next to the file.
    data = files.image("pics/cat.png", base=files.root / "data")
    record = {"conversations": [{"from": "human", "value": "<image>What animal?"},
                                {"from": "gpt", "value": "A cat."}], "images": ["pics/cat.png"]}
    path, _ = files.jsonl("data/set.jsonl", [record])
    result = files.ingest(path, image_root=None)
    row = result.accepted.row(0, named=True)
    assert row["image_uris"] == [str(files.root / "data" / "pics" / "cat.png")]
    assert row["image_sha256"] == [sha(data)]


def test_sharegpt_messages_with_system(files):
    data = files.image("shots/1.png")
    records = [
        {
            "id": "sg-1",
            "system": "You are a careful visual assistant.",
            "messages": [
                {"role": "user", "content": "<image>What is shown?"},
                {"role": "assistant", "content": "A red square."},
                {"role": "user", "content": "Is it large?"},
                {"role": "assistant", "content": "No, it is small."},
            ],
            "images": ["shots/1.png"],
            "rating": 5,
        },
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    ]
    path, _ = files.jsonl("sharegpt.jsonl", records)
    result = files.ingest(path)
    assert result.origin_format == "sharegpt"
    assert result.quarantine.height == 0
    first, second = result.accepted.to_dicts()
    assert first["example_id"] == "sg-1"
    assert first["turns"][0] == {"role": "system",
                                 "content": "You are a careful visual assistant."}
    assert roles(first) == ["system", "user", "assistant", "user", "assistant"]
    assert first["image_sha256"] == [sha(data)]
    assert first["modality"] == "image-text"
    assert json.loads(first["metadata"]) == {"rating": 5}
    assert second["modality"] == "text"
    assert roles(second) == ["user", "assistant"]
    assert second["example_id"] == "t:1"  # no id: its position


def check_blob(files, row: dict, position: int, data: bytes, ext: str = "png") -> None:
    digest = sha(data)
    assert row["images"][position] == f"embedded:{position}"
    assert row["image_sha256"][position] == digest
    blob = Path(row["image_uris"][position])
    assert blob == files.blob_root / digest[:2] / f"{digest}.{ext}"
    assert blob.read_bytes() == data


def test_hf_parquet_conversations_with_embedded_images(files, make_image_bytes):
    red, blue = make_image_bytes(color=(255, 0, 0)), make_image_bytes(color=(0, 0, 255))
    table = pa.table(
        {
            "id": ["hf-1", "hf-2"],
            "images": [[{"bytes": red, "path": "red.png"}, {"bytes": blue, "path": "blue.png"}],
                       []],
            "conversations": [
                [{"from": "human", "value": "<image><image>Which is red?"},
                 {"from": "gpt", "value": "The first."}],
                [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi."}],
            ],
            "source": ["synthetic", "synthetic"],
        },
        schema=pa.schema([("id", pa.string()), ("images", pa.list_(IMAGE_STRUCT)),
                          ("conversations", FROM_VALUE), ("source", pa.string())]),
    )
    path = files.root / "hf.parquet"
    pq.write_table(table, path)
    result = files.ingest(path)
    assert result.origin_format == "hf_parquet"
    assert result.quarantine.height == 0, result.quarantine.to_dicts()
    first, second = result.accepted.to_dicts()
    assert roles(first) == ["user", "assistant"]
    check_blob(files, first, 0, red)
    check_blob(files, first, 1, blue)
    assert json.loads(first["metadata"]) == {"source": "synthetic"}
    assert second["modality"] == "text" and second["images"] == []
    assert sorted(p.name for p in files.blob_root.rglob("*") if p.is_file()) == sorted(
        [f"{sha(red)}.png", f"{sha(blue)}.png"]
    )


def test_hf_parquet_messages_with_embedded_jpeg(files, make_image_bytes):
    photo = make_image_bytes("JPEG")
    table = pa.table(
        {
            "messages": [[{"role": "user", "content": "<image>Describe."},
                          {"role": "assistant", "content": "A red block."}]],
            "images": [[{"bytes": photo, "path": None}]],
        },
        schema=pa.schema([("messages", ROLE_CONTENT), ("images", pa.list_(IMAGE_STRUCT))]),
    )
    path = files.root / "hf_messages.parquet"
    pq.write_table(table, path)
    result = files.ingest(path)
    assert result.origin_format == "hf_parquet"
    row = result.accepted.row(0, named=True)
    assert roles(row) == ["user", "assistant"]
    check_blob(files, row, 0, photo, ext="jpeg")
    assert row["example_id"] == "t:0"  # no id: its position


def test_hf_parquet_openai_content_parts(files, make_image_bytes):
    """HF llava-instruct-mix-vsft style: content is a list of {type: image|text} parts."""
    photo = make_image_bytes("PNG")
    rows = [
        {"messages": [{"role": "user", "content": [{"type": "image", "text": None},
                                                   {"type": "text", "text": "What color?"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "Red."}]}],
         "images": [{"bytes": photo, "path": None}]},
        {"messages": [{"role": "user", "content": [{"type": "video", "text": None}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "No."}]}],
         "images": []},
    ]
    path = files.root / "vsft.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    result = files.ingest(path)
    row = result.accepted.row(0, named=True)
    assert [turn["content"] for turn in row["turns"]] == ["<image>\nWhat color?", "Red."]
    check_blob(files, row, 0, photo, ext="png")
    [reason] = result.quarantine["reason"].to_list()
    assert reason == "unsupported_content"


def test_hf_parquet_single_image_struct_bytes_or_path(files, make_image_bytes):
    embedded = make_image_bytes(color=(0, 200, 0))
    on_disk = files.image("disk/green.png", color=(0, 90, 0))
    table = pa.table(
        {
            "id": [7, 8],
            "image": [{"bytes": embedded, "path": "ignored.png"}, {"bytes": None, "path": "disk/green.png"}],
            "conversations": [
                [{"from": "human", "value": "<image>\nColor?"}, {"from": "gpt", "value": "Green."}],
                [{"from": "human", "value": "<image>\nColor?"}, {"from": "gpt", "value": "Dark green."}],
            ],
        },
        schema=pa.schema([("id", pa.int64()), ("image", IMAGE_STRUCT), ("conversations", FROM_VALUE)]),
    )
    path = files.root / "single.parquet"
    pq.write_table(table, path)
    result = files.ingest(path)
    first, second = result.accepted.to_dicts()
    assert first["example_id"] == "7"  # ids become strings
    check_blob(files, first, 0, embedded)
    assert second["images"] == ["disk/green.png"]
    assert second["image_uris"] == [str(files.root / "images" / "disk" / "green.png")]
    assert second["image_sha256"] == [sha(on_disk)]


def check_pair(rows: list[dict], group: str) -> tuple[dict, dict]:
    pair = [row for row in rows if row["pref_group"] == group]
    assert [row["pref_role"] for row in pair] == ["chosen", "rejected"]
    assert [row["example_id"] for row in pair] == [f"{group}#chosen", f"{group}#rejected"]
    assert pair[0]["row_index"] == pair[1]["row_index"]
    assert pair[0]["turns"][:-1] == pair[1]["turns"][:-1]  # same prompt
    return pair[0], pair[1]


def test_llamafactory_dpo_json(files):
    dog = files.image("pets/dog.png")
    records = [
        {
            "id": "dpo-1",
            "conversations": [{"from": "human", "value": "<image>What animal is this?"}],
            "chosen": {"from": "gpt", "value": "A dog."},
            "rejected": {"from": "gpt", "value": "A cat."},
            "images": ["pets/dog.png"],
            "annotator": "gpt-4v",
        },
        {  # no id: the pair shares a group named by the record's position
            "conversations": [{"from": "human", "value": "Name a prime."}],
            "chosen": {"from": "gpt", "value": "7"},
            "rejected": {"from": "gpt", "value": "8"},
        },
    ]
    path = files.json("dpo.json", records)
    result = files.ingest(path)
    assert result.origin_format == "preference"
    assert (result.records_in, result.rows_in, result.accepted.height) == (2, 4, 4)
    rows = result.accepted.to_dicts()
    chosen, rejected = check_pair(rows, "dpo-1")
    assert chosen["turns"] == [{"role": "user", "content": "<image>What animal is this?"},
                               {"role": "assistant", "content": "A dog."}]
    assert rejected["turns"][-1] == {"role": "assistant", "content": "A cat."}
    assert chosen["image_sha256"] == rejected["image_sha256"] == [sha(dog)]
    assert json.loads(chosen["metadata"]) == {"annotator": "gpt-4v"}
    group = rows[2]["pref_group"]
    assert group == "t:1"
    check_pair(rows, group)
    assert rows[2]["modality"] == "text"


def test_rlaif_v_parquet(files, make_image_bytes):
    images = [make_image_bytes(color=(30, 60, 90)), make_image_bytes("JPEG", color=(90, 60, 30))]
    table = pa.table(
        {
            "ds_name": ["RLAIF-V", "RLAIF-V"],
            "image": [{"bytes": image, "path": f"{i}.img"} for i, image in enumerate(images)],
            "question": ["What is in the picture?", "Describe the colors."],
            "chosen": ["A blue rectangle.", "Mostly brown."],
            "rejected": ["A dog on a beach.", "Bright green and pink."],
            "origin_dataset": ["OK-VQA", "VQAv2"],
            "idx": [101, 102],
        },
        schema=pa.schema([("ds_name", pa.string()), ("image", IMAGE_STRUCT),
                          ("question", pa.string()), ("chosen", pa.string()),
                          ("rejected", pa.string()), ("origin_dataset", pa.string()),
                          ("idx", pa.int64())]),
    )
    path = files.root / "rlaif.parquet"
    pq.write_table(table, path)
    result = files.ingest(path)
    assert result.origin_format == "preference"
    assert result.quarantine.height == 0, result.quarantine.to_dicts()
    assert (result.records_in, result.rows_in) == (2, 4)
    rows = result.accepted.to_dicts()
    chosen, rejected = check_pair(rows, "101")
    assert chosen["turns"] == [{"role": "user", "content": "<image>\nWhat is in the picture?"},
                               {"role": "assistant", "content": "A blue rectangle."}]
    assert rejected["turns"][-1]["content"] == "A dog on a beach."
    check_blob(files, chosen, 0, images[0])
    check_blob(files, rejected, 0, images[0])
    assert json.loads(chosen["metadata"]) == {"ds_name": "RLAIF-V", "origin_dataset": "OK-VQA"}
    second, _ = check_pair(rows, "102")
    check_blob(files, second, 0, images[1], ext="jpeg")
    # Content-addressed: two images, four rows, two blobs.
    assert len([p for p in files.blob_root.rglob("*") if p.is_file()]) == 2


def test_trl_prompt_chosen_rejected_text_only(files):
    records = [{"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "id": "trl-1"}]
    path, _ = files.jsonl("trl.jsonl", records)
    result = files.ingest(path)
    assert result.origin_format == "preference"
    chosen, rejected = check_pair(result.accepted.to_dicts(), "trl-1")
    assert chosen["turns"] == [{"role": "user", "content": "What is 2+2?"},
                               {"role": "assistant", "content": "4"}]
    assert "<image>" not in chosen["turns"][0]["content"]
    assert chosen["modality"] == rejected["modality"] == "text"


def test_explicit_format_beats_detection(files):
    record = {
        "id": "x1",
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
        "chosen": "Hello",
        "rejected": "Go away",
    }
    path, _ = files.jsonl("mixed.jsonl", [record])
    auto = files.ingest(path)
    assert auto.origin_format == "preference" and auto.rows_in == 2
    forced = files.ingest(path, format="llava")
    assert forced.origin_format == "llava"
    assert forced.rows_in == 1
    row = forced.accepted.row(0, named=True)
    assert row["example_id"] == "x1" and row["pref_role"] is None
    assert json.loads(row["metadata"]) == {"chosen": "Hello", "rejected": "Go away"}


# --- determinism -----------------------------------------------------------------------------
def test_same_file_twice_gives_equal_frames_and_stable_ids(files):
    llava_images(files)
    no_id = {key: value for key, value in LLAVA_ROW.items() if key != "id"}
    other = {**TEXT_ROW}
    del other["id"]
    path, lines = files.jsonl("d.jsonl", [no_id, other, MULTI_ROW, "{broken"])
    first, second = files.ingest(path), files.ingest(path)
    assert_frame_equal(first.accepted, second.accepted)
    assert_frame_equal(first.quarantine, second.quarantine)
    assert first.quarantine.schema == QUARANTINE_SCHEMA
    ids = first.accepted["example_id"].to_list()
    # A row without an id gets <source>:<its position in the file>.
    assert ids[:2] == ["t:0", "t:1"]
    assert ids[2] == "multi-0001"
    # The same records under another source name get other ids (ids are unique across sources).
    renamed = files.ingest(path, name="u")
    assert renamed.accepted["example_id"].to_list()[:2] == [i.replace("t:", "u:") for i in ids[:2]]


def test_repeated_records_without_an_id_stay_apart_and_the_audit_adds_up(files):
    """Ids from content collapsed repeated records (LLaMA-Factory's dpo_en_demo.json has five
    such repeats) and the audit died: "3 raw rows but 2 audited + quarantined"."""
    from integrity.decide.audit import audit_rows
    from integrity.detect import score_pairs
    from integrity.decide.policy import Policy, flag_rows

    record = {"conversations": [{"from": "human", "value": "Name a prime."}],
              "chosen": {"from": "gpt", "value": "7"}, "rejected": {"from": "gpt", "value": "8"}}
    other = {**record, "conversations": [{"from": "human", "value": "Name an even number."}]}
    result = files.ingest(files.json("dpo.json", [record, record, record, other]))
    ids = result.accepted["example_id"].to_list()
    assert len(ids) == len(set(ids)) == 8
    assert ids[:2] == ["t:0#chosen", "t:0#rejected"]
    pairs = score_pairs(result.accepted)
    audit = audit_rows(pairs, Policy(), rows_in=result.rows_in, quarantined=0)
    assert sum(audit.counts().values()) == 8  # every row has a verdict
    repeats = flag_rows(pairs, Policy()).filter(pl.col("duplicate"))["example_id"].to_list()
    assert sorted(repeats) == sorted(ids[:6])  # found and counted as duplicates


@pytest.mark.parametrize(
    ("name", "content"),
    [("e.jsonl", ""), ("blank.jsonl", "\n\n  \n"), ("e.json", "[]"),
     ("only_bad.jsonl", '{"id": "x"}\n{oops\n7\n')],
)
def test_files_without_good_rows_give_empty_frames_with_the_schema(files, name, content):
    result = files.ingest(files.raw(name, content))
    assert result.accepted.height == 0
    assert result.accepted.schema == RAW_SFT_SCHEMA
    assert result.quarantine.schema == QUARANTINE_SCHEMA
    assert result.quarantine.height == result.rows_in == result.records_in
    assert result.summary()["text_only_share"] == 0.0


def test_empty_parquet(files):
    path = files.root / "empty.parquet"
    pq.write_table(pa.table({"conversations": pa.array([], FROM_VALUE)}), path)
    result = files.ingest(path)
    assert (result.records_in, result.accepted.height) == (0, 0)
    assert result.accepted.schema == RAW_SFT_SCHEMA
