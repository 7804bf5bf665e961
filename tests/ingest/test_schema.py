"""The raw_sft and quarantine contracts (integrity/ingest/schema.py): the columns and types, what
every column holds for rows ingest makes (as the module documents it), the stable quarantine
reasons, and that both schemas survive the store unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl

from integrity.ingest.schema import (
    IMAGE_TOKEN,
    MODALITIES,
    PREF_ROLES,
    QUARANTINE_SCHEMA,
    RAW_SFT_SCHEMA,
    ROLES,
    TURN,
    QuarantineReason,
)
from integrity.store.versions import VersionStore


def test_raw_sft_has_the_documented_columns_in_order_with_their_types():
    assert RAW_SFT_SCHEMA == pl.Schema({
        "example_id": pl.String, "source": pl.String, "origin_format": pl.String,
        "row_index": pl.Int64, "images": pl.List(pl.String), "image_uris": pl.List(pl.String),
        "image_sha256": pl.List(pl.String),
        "turns": pl.List(pl.Struct({"role": pl.String, "content": pl.String})),
        "metadata": pl.String, "pref_role": pl.String, "pref_group": pl.String,
        "modality": pl.String,
    })
    assert TURN == RAW_SFT_SCHEMA["turns"].inner
    assert QUARANTINE_SCHEMA.names() == ["source", "origin_format", "row_index", "example_id",
                                         "reason", "detail", "raw"]
    assert QUARANTINE_SCHEMA["row_index"] == pl.Int64


def test_quarantine_reasons_keep_their_stable_values():
    """Reports and policies key on these strings: renaming one breaks them."""
    assert {reason.name: reason.value for reason in QuarantineReason} == {
        "MALFORMED_JSON": "malformed_json", "MISSING_FIELD": "missing_field",
        "UNKNOWN_ROLE": "unknown_role", "ROLES_NOT_ALTERNATING": "roles_not_alternating",
        "IMAGE_TOKEN_MISMATCH": "image_token_mismatch", "EMPTY_ANSWER": "empty_answer",
        "IMAGE_OUTSIDE_ROOT": "image_outside_root", "MISSING_IMAGE": "missing_image",
        "CORRUPT_IMAGE": "corrupt_image", "IMAGE_TOO_LARGE": "image_too_large",
        "UNSUPPORTED_IMAGE": "unsupported_image", "UNSUPPORTED_CONTENT": "unsupported_content",
        "NOT_A_FILE": "not_a_regular_file", "DUPLICATE_KEY": "duplicate_key",
        "TOO_DEEP": "too_deeply_nested", "IMAGE_CHANGED": "image_changed",
    }
    # No two names share a value (an Enum would silently make the second an alias).
    assert len(QuarantineReason.__members__) == len(set(QuarantineReason))
    # A reason is its string: it can be written to a table and compared with one as is.
    assert QuarantineReason.MISSING_IMAGE == "missing_image"
    assert QuarantineReason("duplicate_key") is QuarantineReason.DUPLICATE_KEY


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_rows_ingest_makes_hold_what_each_column_is_documented_to_hold(files):
    files.image("cat.png", color=(1, 2, 3))
    files.image("dog.png", color=(4, 5, 6))
    path, _ = files.jsonl("mixed.jsonl", [
        {"id": "pic", "image": "cat.png", "caption": "a cat",
         "conversations": [{"from": "human", "value": "<image>\nWhat animal?"},
                           {"from": "gpt", "value": "A cat."}]},
        {"conversations": [{"from": "system", "value": "Be brief."},
                           {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {"id": "two", "image": ["cat.png", "dog.png"],
         "conversations": [{"from": "human", "value": "<image><image> Same animal?"},
                           {"from": "gpt", "value": "No."}]},
        '{"id": "broken", ',
    ])
    preference = files.json("dpo.json", [
        {"id": "p", "conversations": [{"from": "human", "value": "2+2?"}],
         "chosen": {"from": "gpt", "value": "4"}, "rejected": {"from": "gpt", "value": "5"}}])
    result = files.ingest(path, name="mix")
    paired = files.ingest(preference, name="mix")
    for made in (result, paired):
        assert made.accepted.schema == RAW_SFT_SCHEMA
        assert made.quarantine.schema == QUARANTINE_SCHEMA
    rows = {row["example_id"]: row
            for row in pl.concat([result.accepted, paired.accepted]).to_dicts()}
    # The source's own id, #chosen / #rejected for preference rows, else <source>:<row_index>.
    assert set(rows) == {"pic", "mix:1", "two", "p#chosen", "p#rejected"}
    for row in rows.values():
        assert row["source"] == "mix"
        assert row["origin_format"] in {"llava", "preference"}
        assert {turn["role"] for turn in row["turns"]} <= set(ROLES)
        assert len(row["images"]) == len(row["image_uris"]) == len(row["image_sha256"])
        assert [_sha(uri) for uri in row["image_uris"]] == row["image_sha256"]
        assert row["modality"] in MODALITIES
        assert row["modality"] == ("image-text" if row["images"] else "text")
        assert sum(turn["content"].count(IMAGE_TOKEN) for turn in row["turns"]) == \
            len(row["images"])
        assert isinstance(json.loads(row["metadata"]), dict)
        assert (row["pref_role"] is None) == (row["pref_group"] is None)
        assert row["pref_role"] in (None, *PREF_ROLES)
    assert rows["pic"]["images"] == ["cat.png"]  # as the source wrote them
    assert rows["two"]["row_index"] == 2  # the record's line in the file
    assert json.loads(rows["pic"]["metadata"]) == {"caption": "a cat"}  # unmapped fields kept
    assert [rows["p#chosen"]["pref_role"], rows["p#rejected"]["pref_role"]] == list(PREF_ROLES)
    assert rows["p#chosen"]["pref_group"] == rows["p#rejected"]["pref_group"]
    [bad] = result.quarantine.to_dicts()
    assert (bad["row_index"], bad["raw"]) == (3, '{"id": "broken", ')
    assert bad["reason"] in {reason.value for reason in QuarantineReason}


def test_both_schemas_come_back_from_the_store_unchanged_even_empty(tmp_path):
    store = VersionStore(str(tmp_path / "store"))
    row = {"example_id": "a", "source": "s", "origin_format": "llava", "row_index": 0,
           "images": ["a.png"], "image_uris": ["/x/a.png"], "image_sha256": ["00"],
           "turns": [{"role": "user", "content": "<image> Q?"},
                     {"role": "assistant", "content": "A."}],
           "metadata": "{}", "pref_role": None, "pref_group": None, "modality": "image-text"}
    tables = {"data": pl.DataFrame([row], schema=RAW_SFT_SCHEMA),
              "quarantine": pl.DataFrame(schema=QUARANTINE_SCHEMA),
              "empty": pl.DataFrame(schema=RAW_SFT_SCHEMA)}
    manifest = store.write("raw_sft", tables, partition="s", code_version="t")
    for name, table in tables.items():
        back = store.read("raw_sft", manifest.version, name)
        assert back.schema == table.schema
        assert back.to_dicts() == table.to_dicts()
