"""The Great Expectations suite of raw_sft (integrity/ingest/expectations.py), run for real: a frame
ingest made passes it; each contract broken in a raw_sft frame fails the expectation that says
so, with the count of rows that broke it."""

from __future__ import annotations

import polars as pl
import pytest

from integrity.ingest.expectations import SuiteResult, validate_raw_sft
from integrity.ingest.schema import RAW_SFT_SCHEMA

# One expectation per column of raw_sft (it exists), one per column every row must fill (not
# null: example_id, modality and the four list columns), plus five row contracts.
LIST_COLUMNS = [name for name, dtype in RAW_SFT_SCHEMA.items() if isinstance(dtype, pl.List)]
EXPECTATIONS = len(RAW_SFT_SCHEMA) + 2 + len(LIST_COLUMNS) + 5


def raw_row(example_id: str, row_index: int, *, image: bool = False, **changes) -> dict:
    question = "<image>\nWhat is it?" if image else "What is 2+2?"
    row = {
        "example_id": example_id, "source": "s", "origin_format": "llava",
        "row_index": row_index,
        "images": ["a.png"] if image else [],
        "image_uris": ["/data/a.png"] if image else [],
        "image_sha256": ["ab" * 32] if image else [],
        "turns": [{"role": "user", "content": question},
                  {"role": "assistant", "content": "A square." if image else "4"}],
        "metadata": "{}", "pref_role": None, "pref_group": None,
        "modality": "image-text" if image else "text",
    }
    return {**row, **changes}


def raw_frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=RAW_SFT_SCHEMA)


def good_rows() -> list[dict]:
    return [raw_row("a", 0), raw_row("b", 1, image=True), raw_row("c", 2)]


def test_a_frame_ingest_made_meets_every_expectation(files):
    files.image("cat.png")
    path, _ = files.jsonl("d.jsonl", [
        {"id": "img", "image": "cat.png",
         "conversations": [{"from": "human", "value": "<image>\nWhat animal?"},
                           {"from": "gpt", "value": "A cat."}]},
        {"conversations": [{"from": "system", "value": "Be brief."},
                           {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
    ])
    accepted = files.ingest(path).accepted
    assert accepted.height == 2
    assert validate_raw_sft(accepted) == SuiteResult(success=True, failed=[],
                                                     evaluated=EXPECTATIONS)


def test_the_rows_the_failure_cases_below_start_from_meet_the_contract():
    """So each case fails for the one thing it changes, not for its base rows."""
    assert validate_raw_sft(raw_frame(*good_rows())).success


def test_an_empty_frame_with_the_schema_meets_the_contract():
    assert validate_raw_sft(raw_frame()).success


@pytest.mark.parametrize(
    ("rows", "failed"),
    [
        ([raw_row("a", 0), raw_row("a", 1), raw_row("b", 2)],
         "expect_column_values_to_be_unique {'column': 'example_id'}: 2 rows"),
        ([raw_row(None, 0), raw_row("b", 1)],
         "expect_column_values_to_not_be_null {'column': 'example_id'}: 1 rows"),
        ([raw_row("a", 0, modality="video"), raw_row("b", 1)],
         "expect_column_values_to_be_in_set {'column': 'modality'}: 1 rows"),
        ([raw_row("a", 0, turns=[{"role": "assistant", "content": "A."},
                                 {"role": "user", "content": "Q?"}]),
          raw_row("b", 1, turns=[{"role": "user", "content": "Q?"}]), raw_row("c", 2)],
         "expect_column_values_to_be_in_set {'column': 'roles_alternate'}: 2 rows"),
        ([raw_row("a", 0), raw_row("b", 1, image=True, turns=[
            {"role": "user", "content": "What is it?"}, {"role": "assistant", "content": "A."}])],
         "expect_column_pair_values_to_be_equal {'column_A': 'n_image_tokens', "
         "'column_B': 'n_images'}: 1 rows"),
        ([raw_row("a", 0), raw_row("b", 1, image=True, image_sha256=[])],
         "expect_column_pair_values_to_be_equal {'column_A': 'n_image_hashes', "
         "'column_B': 'n_images'}: 1 rows"),
        ([raw_row("a", 0), raw_row("b", 1, image=True, turns=None)],
         "expect_column_values_to_not_be_null {'column': 'turns'}: 1 rows"),
        ([raw_row("a", 0, turns=None), raw_row("b", 1)],
         "expect_column_values_to_not_be_null {'column': 'turns'}: 1 rows"),
        ([raw_row("a", 0), raw_row("b", 1, image=True, images=None)],
         "expect_column_values_to_not_be_null {'column': 'images'}: 1 rows"),
        ([raw_row("a", 0), raw_row("b", 1, image=True, image_uris=None)],
         "expect_column_values_to_not_be_null {'column': 'image_uris'}: 1 rows"),
        ([raw_row("a", 0), raw_row("b", 1, image=True, image_sha256=None)],
         "expect_column_values_to_not_be_null {'column': 'image_sha256'}: 1 rows"),
        ([raw_row("a", 0, modality=None), raw_row("b", 1)],
         "expect_column_values_to_not_be_null {'column': 'modality'}: 1 rows"),
    ],
    ids=["duplicate-ids", "null-id", "unknown-modality", "roles-not-alternating",
         "image-token-without-image", "image-without-hash", "null-turns", "null-text-turns",
         "null-images", "null-image-uris", "null-image-hashes", "null-modality"],
)
def test_each_broken_row_contract_fails_its_expectation_with_the_rows_that_broke_it(rows, failed):
    result = validate_raw_sft(raw_frame(*rows))
    assert not result.success
    assert result.failed == [failed]
    assert result.evaluated == EXPECTATIONS


def test_a_missing_column_fails_the_expectation_that_it_exists():
    result = validate_raw_sft(raw_frame(*good_rows()).drop("source"))
    assert not result.success
    assert result.failed == ["expect_column_to_exist {'column': 'source'}"]


@pytest.mark.parametrize("column", LIST_COLUMNS)
def test_a_missing_list_column_fails_the_expectation_that_it_exists(column):
    result = validate_raw_sft(raw_frame(*good_rows()).drop(column))
    assert not result.success
    assert "expect_column_to_exist {'column': '%s'}" % column in result.failed
    # Nothing else is blamed: the contracts derived from it are not evaluated without it.
    assert all(f"'{column}'" in line for line in result.failed)
    assert result.evaluated == EXPECTATIONS


def test_every_broken_contract_is_listed_one_line_each():
    rows = good_rows()
    rows[1] = raw_row("a", 1, image=True, image_sha256=[], modality="audio")
    result = validate_raw_sft(raw_frame(*rows).drop("origin_format"))
    assert not result.success
    assert sorted(result.failed) == sorted([
        "expect_column_to_exist {'column': 'origin_format'}",
        "expect_column_values_to_be_unique {'column': 'example_id'}: 2 rows",
        "expect_column_values_to_be_in_set {'column': 'modality'}: 1 rows",
        "expect_column_pair_values_to_be_equal {'column_A': 'n_image_hashes', "
        "'column_B': 'n_images'}: 1 rows",
    ])
    assert result.evaluated == EXPECTATIONS
