"""Readers for the public formats beyond LLaVA and ShareGPT, on files shaped like the real ones:
Data-Juicer (dialogs, captions, embedded ``image_bytes``), LLaMA-Factory v1 (content parts, dpo),
Data-Juicer preference annotation, MMMU-style eval sets, and sources split into shards."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from integrity.ingest import IngestError, SourceConfig, load_sources
from integrity.ingest.schema import RAW_SFT_SCHEMA


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def contents(row: dict) -> list[tuple[str, str]]:
    return [(turn["role"], turn["content"]) for turn in row["turns"]]


def by_id(result) -> dict[str, dict]:
    return {row["example_id"]: row for row in result.accepted.to_dicts()}


# --- Data-Juicer -------------------------------------------------------------------------------
# As tools/multimodal/source_format_to_data_juicer_format/llava_to_dj.py writes them (one chunk,
# and split into chunks), a caption row, a text-only dialog, and rows that must be quarantined.
DJ_ROWS = [
    {"id": "000000033471", "images": ["coco/bus.jpg"],
     "text": "[[human]]: <image>\nWhat are the colors of the bus in the image?\n"
             "[[gpt]]: The bus in the image is white and red.\n"
             "[[human]]: What feature can be seen on the back of the bus?\n"
             "[[gpt]]: The back of the bus features an advertisement. <|__dj__eoc|>"},
    {"id": "chunked", "images": ["coco/bus.jpg"],
     "text": "[[human]]: <__dj__image>\nHow many wheels? <|__dj__eoc|>\n"
             "[[gpt]]: Four. <|__dj__eoc|>",
     "__dj__stats__": {"image_text_similarity": [0.31]}},
    {"id": "caption", "images": ["coco/bus.jpg"],
     "text": "<__dj__image>\nA white and red bus parked on a city street <|__dj__eoc|>"},
    {"id": "text-only", "images": [],
     "text": "[[human]]: Name a prime.\n[[gpt]]: Seven. <|__dj__eoc|>"},
    {"id": "robot", "images": [], "text": "[[human]]: Hi\n[[robot]]: Hello <|__dj__eoc|>"},
    {"id": "no-text", "images": ["coco/bus.jpg"]},
    {"id": "two-tokens", "images": ["coco/bus.jpg"],
     "text": "<__dj__image><__dj__image> A bus <|__dj__eoc|>"},
]


def test_data_juicer_dialogs_captions_and_text_rows(files, accounted):
    bus = files.image("coco/bus.jpg", "JPEG")
    path, _ = files.jsonl("dj.jsonl", DJ_ROWS)
    result = files.ingest(path)
    assert result.origin_format == "data_juicer"
    accounted(result, range(len(DJ_ROWS)))
    rows = by_id(result)
    assert contents(rows["000000033471"]) == [
        ("user", "<image>\nWhat are the colors of the bus in the image?"),
        ("assistant", "The bus in the image is white and red."),
        ("user", "What feature can be seen on the back of the bus?"),
        ("assistant", "The back of the bus features an advertisement.")]
    assert rows["000000033471"]["image_sha256"] == [sha(bus)]
    assert contents(rows["chunked"]) == [("user", "<image>\nHow many wheels?"),
                                         ("assistant", "Four.")]
    assert json.loads(rows["chunked"]["metadata"]) == {
        "__dj__stats__": {"image_text_similarity": [0.31]}}
    # A caption row has no question: the image is the prompt, the caption the answer.
    assert contents(rows["caption"]) == [
        ("user", "<image>"), ("assistant", "A white and red bus parked on a city street")]
    assert rows["text-only"]["modality"] == "text"
    quarantined = dict(zip(result.quarantine["example_id"], result.quarantine["reason"],
                           strict=True))
    assert quarantined == {"robot": "unknown_role", "no-text": "missing_field",
                           "two-tokens": "image_token_mismatch"}


def test_data_juicer_image_bytes_are_images_never_metadata(files, make_image_bytes, accounted):
    """Data-Juicer keeps the pixels in ``image_bytes`` beside the original paths (which need not
    exist here): the bytes become embedded images, the paths stay as metadata."""
    photo, other = make_image_bytes("PNG", (10, 200, 10)), make_image_bytes("JPEG", (200, 10, 9))
    table = pa.table({
        "id": ["a", "b"],
        "text": ["<__dj__image>\nA green field <|__dj__eoc|>",
                 "[[human]]: <__dj__image>\n<__dj__image>\nSame place?\n[[gpt]]: No."],
        "images": [["/data/raw/green.png"], ["/data/raw/green.png", "/data/raw/red.jpg"]],
        "image_bytes": [[photo], [photo, other]],
    })
    pq.write_table(table, files.root / "dj.parquet")
    result = files.ingest(files.root / "dj.parquet")
    assert result.origin_format == "data_juicer"
    accounted(result, range(2))
    rows = by_id(result)
    assert rows["a"]["images"] == ["embedded:0"]
    assert rows["b"]["image_sha256"] == [sha(photo), sha(other)]
    assert Path(rows["b"]["image_uris"][1]).read_bytes() == other
    metadata = json.loads(rows["b"]["metadata"])
    assert metadata == {"images": ["/data/raw/green.png", "/data/raw/red.jpg"]}
    assert len(rows["b"]["metadata"]) < 200  # was a bytes repr, 3.5x the image's size


def test_binary_columns_never_land_in_metadata_as_bytes(files, make_image_bytes):
    """A column no mapper knows that holds bytes is described, not dumped."""
    blob = make_image_bytes()
    table = pa.table({"id": ["x"], "conversations": [[{"from": "human", "value": "Hi"},
                                                       {"from": "gpt", "value": "Hello"}]],
                      "thumbnail": [blob]})
    pq.write_table(table, files.root / "x.parquet")
    [metadata] = files.ingest(files.root / "x.parquet").accepted["metadata"].to_list()
    assert json.loads(metadata) == {"thumbnail": f"<{len(blob)} bytes>"}


# --- LLaMA-Factory v1 --------------------------------------------------------------------------
def part(kind: str, value: str) -> dict:
    return {"type": kind, "value": value}


V1_ROWS = [
    {"messages": [
        {"role": "system", "content": [part("text", "You are a careful assistant.")]},
        {"role": "user", "content": [part("image_url", "pets/dog.png"),
                                     part("text", "What animal is this?")], "loss_weight": 0.0},
        {"role": "assistant", "content": [part("reasoning", "Four legs, floppy ears."),
                                          part("text", "A dog.")], "loss_weight": 1.0}]},
    {"messages": [{"role": "user", "content": [part("text", "Name a prime.")]},
                  {"role": "assistant", "content": [part("text", "Seven.")]}],
     "extra_info": "{\"kto_tag\": true}"},
    {"messages": [{"role": "user", "content": [part("video_url", "clips/a.mp4"),
                                               part("text", "What happens?")]},
                  {"role": "assistant", "content": [part("text", "A dog runs.")]}]},
    {"messages": [{"role": "user", "content": [part("image_url", "pets/missing.png"),
                                               part("text", "And this?")]},
                  {"role": "assistant", "content": [part("text", "A cat.")]}]},
]


def test_llamafactory_v1_messages_with_content_parts(files, accounted):
    dog = files.image("pets/dog.png")
    path, _ = files.jsonl("v1.jsonl", V1_ROWS)
    result = files.ingest(path)
    assert result.origin_format == "sharegpt"
    accounted(result, range(len(V1_ROWS)))
    first, text_row = result.accepted.to_dicts()
    assert contents(first) == [("system", "You are a careful assistant."),
                               ("user", "<image>\nWhat animal is this?"),
                               ("assistant", "Four legs, floppy ears.\nA dog.")]
    assert first["images"] == ["pets/dog.png"] and first["image_sha256"] == [sha(dog)]
    assert first["example_id"] == "t:0"  # no id: named by position
    assert text_row["modality"] == "text"
    assert json.loads(text_row["metadata"]) == {"extra_info": "{\"kto_tag\": true}"}
    assert result.quarantine["reason"].to_list() == ["unsupported_content", "missing_image"]


def test_llamafactory_v1_data_url_images(files, make_image_bytes):
    import base64

    photo = make_image_bytes()
    url = "data:image/png;base64," + base64.b64encode(photo).decode()
    rows = [{"messages": [{"role": "user", "content": [{"type": "image_url",
                                                         "image_url": {"url": url}},
                                                        {"type": "text", "text": "Color?"}]},
                          {"role": "assistant", "content": "Red."}]}]
    path, _ = files.jsonl("openai.jsonl", rows)
    [row] = files.ingest(path).accepted.to_dicts()
    assert row["images"] == ["embedded:0"] and row["image_sha256"] == [sha(photo)]


def test_llamafactory_v1_dpo_whole_dialogs(files, accounted):
    dog = files.image("pets/dog.png")
    prompt = [{"role": "user", "content": [part("image_url", "pets/dog.png"),
                                           part("text", "What animal?")]}]
    record = {"chosen_messages": prompt + [{"role": "assistant", "content": [part("text", "A dog.")]}],
              "rejected_messages": prompt + [{"role": "assistant",
                                              "content": [part("text", "A cat.")]}]}
    path, _ = files.jsonl("v1_dpo.jsonl", [record, record, {"chosen_messages": prompt}])
    result = files.ingest(path)
    assert result.origin_format == "preference"
    accounted(result, range(3))
    rows = result.accepted.to_dicts()
    assert [row["example_id"] for row in rows] == ["t:0#chosen", "t:0#rejected",
                                                   "t:1#chosen", "t:1#rejected"]
    assert [row["pref_role"] for row in rows] == ["chosen", "rejected"] * 2
    assert rows[0]["turns"][-1]["content"] == "A dog." and rows[1]["turns"][-1]["content"] == "A cat."
    assert rows[0]["image_sha256"] == [sha(dog)]
    assert result.quarantine["detail"].to_list() == ["'rejected_messages' is missing"]


# --- Data-Juicer preference annotation ---------------------------------------------------------
def test_data_juicer_preference_annotation_pairs(files, accounted):
    """human_preference_annotation_mapper rows: a prompt and two answers; once annotated,
    ``chosen`` / ``rejected`` repeat the winner and the loser."""
    dog = files.image("pets/dog.png")
    records = [
        {"id": "p1", "prompt": "What animal is in the photo?", "images": ["pets/dog.png"],
         "answer1": "A cat.", "answer2": "A dog.", "chosen": "A dog.", "rejected": "A cat."},
        {"id": "p2", "prompt": "Which is larger, 3 or 5?", "answer1": "5", "answer2": "3"},
    ]
    path, _ = files.jsonl("dj_pref.jsonl", records)
    result = files.ingest(path)
    assert result.origin_format == "preference"
    accounted(result, range(2))
    rows = by_id(result)
    assert list(rows) == ["p1#answer1", "p1#answer2", "p2#answer1", "p2#answer2"]
    assert rows["p1#answer2"]["pref_role"] == "chosen"
    assert rows["p1#answer1"]["pref_role"] == "rejected"
    assert contents(rows["p1#answer2"]) == [("user", "<image>\nWhat animal is in the photo?"),
                                            ("assistant", "A dog.")]
    assert rows["p1#answer2"]["image_sha256"] == [sha(dog)]
    assert json.loads(rows["p1#answer1"]["metadata"]) == {}
    assert {rows[key]["pref_role"] for key in ("p2#answer1", "p2#answer2")} == {"unranked"}
    assert rows["p2#answer1"]["pref_group"] == rows["p2#answer2"]["pref_group"] == "p2"


# --- MMMU-style eval sets ----------------------------------------------------------------------
def test_mmmu_parquet_questions_options_and_numbered_images(files, make_image_bytes, accounted):
    chart, table_image = make_image_bytes(color=(1, 2, 3)), make_image_bytes(color=(3, 2, 1))
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "id": ["validation_Accounting_1", "validation_Art_2", "validation_Math_3"],
        "question": ["<image 1> What is the total of the column?",
                     "Compare <image 1> and <image 2>. Which is older?",
                     "What is 2 + 2?"],
        "options": ["['$10', '$20', '$30']", "['The first', 'The second']", "[]"],
        "explanation": ["", "", ""],
        "image_1": pa.array([{"bytes": chart, "path": "1.png"}, {"bytes": chart, "path": "1.png"},
                             None], type=image),
        "image_2": pa.array([None, {"bytes": table_image, "path": "2.png"}, None], type=image),
        "img_type": ["['Tables']", "['Paintings']", "[]"],
        "answer": ["B", "A", "4"],
        "question_type": ["multiple-choice", "multiple-choice", "open"],
    })
    pq.write_table(table, files.root / "validation-00000-of-00001.parquet")
    result = files.ingest(files.root / "validation-00000-of-00001.parquet")
    assert result.origin_format == "mmmu"
    accounted(result, range(3))
    rows = by_id(result)
    assert contents(rows["validation_Accounting_1"]) == [
        ("user", "<image>\n<image 1> What is the total of the column?\nA. $10\nB. $20\nC. $30"),
        ("assistant", "B")]
    assert rows["validation_Art_2"]["image_sha256"] == [sha(chart), sha(table_image)]
    assert contents(rows["validation_Math_3"]) == [("user", "What is 2 + 2?"), ("assistant", "4")]
    assert json.loads(rows["validation_Math_3"]["metadata"]) == {
        "explanation": "", "img_type": "[]", "question_type": "open"}


def test_an_eval_set_that_yields_no_rows_is_an_error(files, tmp_path):
    from integrity.detect.eval_overlap import eval_overlap_keys
    from integrity.store.versions import VersionStore

    path, _ = files.jsonl("eval.jsonl", [{"question": "What?", "options": "['a']"},
                                         {"unrelated": 1}])
    eval_set = SourceConfig(name="broken_eval", uri=str(path), image_root=str(files.root))
    with pytest.raises(IngestError, match=r"eval set broken_eval .* no row.*missing_field: 2"):
        eval_overlap_keys([eval_set], VersionStore(str(tmp_path / "store")))


# --- shards ------------------------------------------------------------------------------------
def write_shards(files) -> Path:
    folder = files.root / "hf" / "data"
    folder.mkdir(parents=True)
    same = {"conversations": [{"from": "human", "value": "Name a prime."},
                              {"from": "gpt", "value": "Seven."}]}
    for shard in range(2):
        rows = [same, {**same, "conversations": [same["conversations"][0],
                                                 {"from": "gpt", "value": f"Shard {shard}."}]}]
        pq.write_table(pa.Table.from_pylist(rows),
                       folder / f"train-{shard:05d}-of-00002.parquet")
    (folder / "README.md").write_text("not data")
    return folder


@pytest.mark.parametrize("pattern", ["train-*.parquet", ""])
def test_a_glob_or_folder_of_shards_is_one_source(files, accounted, pattern):
    folder = write_shards(files)
    result = files.ingest(f"{folder}/{pattern}" if pattern else folder, image_root=None)
    assert result.origin_format == "hf_parquet"
    accounted(result, range(4))
    assert result.summary()["files"] == 2
    assert result.accepted["example_id"].to_list() == [
        "t:train-00000-of-00002.parquet:0", "t:train-00000-of-00002.parquet:1",
        "t:train-00001-of-00002.parquet:0", "t:train-00001-of-00002.parquet:1"]
    assert result.accepted.schema == RAW_SFT_SCHEMA


def test_a_sources_file_names_shards_by_glob(files, tmp_path):
    write_shards(files)
    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  - name: hf\n    uri: hf/data/train-*.parquet\n")
    [source] = load_sources(sources)
    assert source.uri == str(tmp_path / "hf" / "data" / "train-*.parquet")
    assert source.effective_image_root == str(tmp_path / "hf" / "data")
    from integrity.ingest import ingest_source

    assert ingest_source(source).accepted.height == 4


def test_a_glob_that_matches_nothing_names_the_pattern(files):
    with pytest.raises(IngestError, match=r"train-\*\.parquet: no .json, .jsonl or .parquet"):
        files.ingest(files.root / "train-*.parquet")


def test_repeats_across_shards_stay_apart_and_are_counted_as_copies(files):
    """The same record in two shards: two rows with two ids, which the duplicate detector pairs."""
    from integrity.detect import score_pairs
    from integrity.decide.policy import Policy, flag_rows

    rows = files.ingest(write_shards(files), image_root=None).accepted
    assert rows["example_id"].n_unique() == 4
    copies = flag_rows(score_pairs(rows), Policy()).filter(pl.col("duplicate"))
    assert sorted(copies["example_id"]) == ["t:train-00000-of-00002.parquet:0",
                                            "t:train-00001-of-00002.parquet:0"]
