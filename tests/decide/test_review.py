"""Human review (integrity/decide/review.py) over a real VersionStore in tmp_path: the rows an
audit sent to review exported for reviewers, their verdicts imported into the store (later lines
and later imports win), read back, digested, and every bad review file refused naming its line."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from integrity.decide.review import (
    ReviewError,
    export_reviews,
    import_reviews,
    load_reviews,
    review_rows,
    reviews_digest,
)
from integrity.errors import UserError
from integrity.ingest.schema import RAW_SFT_SCHEMA
from integrity.names import AUDITED_SFT, RAW_SFT
from integrity.store.versions import VersionStore


def raw_rows(source: str, ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame([{
        "example_id": example_id, "source": source, "origin_format": "llava", "row_index": n,
        "images": [f"{example_id}.png"], "image_uris": [f"/images/{example_id}.png"],
        "image_sha256": ["00"], "modality": "image-text",
        "turns": [{"role": "user", "content": f"<image> What is {example_id}?"},
                  {"role": "assistant", "content": f"It is {example_id}."}],
        "metadata": json.dumps({"n": n}), "pref_role": None, "pref_group": None,
    } for n, example_id in enumerate(ids)], schema=RAW_SFT_SCHEMA)


def audit(store: VersionStore, source: str, verdicts: dict[str, tuple[str, list[str]]]) -> str:
    """Write a raw_sft version and an audited_sft version of it with ``verdicts`` (example_id ->
    verdict, reasons), as the audit stage lays them out; returns the audited version."""
    raw = raw_rows(source, list(verdicts))
    raw_version = store.write(RAW_SFT, {"data": raw}, partition=source, code_version="t").version
    table = pl.DataFrame(
        [{"example_id": example_id, "verdict": verdict, "reasons": reasons}
         for example_id, (verdict, reasons) in verdicts.items()],
        schema={"example_id": pl.String, "verdict": pl.String, "reasons": pl.List(pl.String)})
    kept = raw.join(table.filter(pl.col("verdict") == "keep"), on="example_id", how="semi")
    return store.write(AUDITED_SFT, {"data": kept, "verdicts": table}, partition=source,
                       upstream={RAW_SFT: raw_version}, code_version="t").version


@pytest.fixture
def store(tmp_path: Path) -> VersionStore:
    store = VersionStore(str(tmp_path / "store"))
    audit(store, "llava", {"a": ("keep", []), "b": ("review", ["contradiction"]),
                           "c": ("drop", ["duplicate"]),
                           "d": ("review", ["contradiction", "blind_answerable"])})
    audit(store, "dpo", {"p": ("review", ["contradiction"]), "q": ("keep", [])})
    return store


def write_lines(path: Path, *lines: object) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines))
    return path


# --- export ----------------------------------------------------------------------------------
def test_review_rows_are_the_review_verdicts_with_their_dialog_images_and_an_empty_verdict():
    raw = raw_rows("s", ["a", "b", "c"])
    verdicts = pl.DataFrame({"example_id": ["c", "a", "b"], "verdict": ["review", "keep", "review"],
                             "reasons": [["contradiction"], [], ["duplicate"]]})
    rows = review_rows(verdicts, raw, "s")
    assert rows.columns == ["example_id", "reasons", "turns", "image_uris", "metadata", "source",
                            "verdict"]
    assert rows.to_dicts() == [  # in the verdicts' order
        {"example_id": "c", "reasons": ["contradiction"], "turns": raw["turns"][2].to_list(),
         "image_uris": ["/images/c.png"], "metadata": '{"n": 2}', "source": "s", "verdict": None},
        {"example_id": "b", "reasons": ["duplicate"], "turns": raw["turns"][1].to_list(),
         "image_uris": ["/images/b.png"], "metadata": '{"n": 1}', "source": "s", "verdict": None},
    ]


def test_export_writes_the_latest_audits_review_rows_as_json_lines(store, tmp_path):
    out = tmp_path / "deep" / "folder" / "llava.review.jsonl"
    assert export_reviews(store, "llava", out) == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(row["example_id"], row["reasons"]) for row in rows] == [
        ("b", ["contradiction"]), ("d", ["contradiction", "blind_answerable"])]
    assert all(row["source"] == "llava" and row["verdict"] is None for row in rows)
    assert rows[0]["turns"] == [{"role": "user", "content": "<image> What is b?"},
                                {"role": "assistant", "content": "It is b."}]


def test_export_follows_the_latest_audit_of_the_source(store, tmp_path):
    audit(store, "llava", {"a": ("review", ["duplicate"]), "b": ("keep", [])})
    out = tmp_path / "llava.jsonl"
    assert export_reviews(store, "llava", out) == 1
    assert json.loads(out.read_text())["example_id"] == "a"


def test_an_audit_with_nothing_to_review_exports_an_empty_file(store, tmp_path):
    audit(store, "clean", {"x": ("keep", [])})
    out = tmp_path / "clean.jsonl"
    assert export_reviews(store, "clean", out) == 0
    assert out.read_text() == ""


def test_export_of_a_source_never_audited_says_to_audit_it(store, tmp_path):
    with pytest.raises(ReviewError, match="sharegpt has not been audited yet: run `integrity "
                                          "audit`"):
        export_reviews(store, "sharegpt", tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


# --- import and load -------------------------------------------------------------------------
def test_imported_verdicts_are_recorded_per_source_and_read_back(store, tmp_path):
    decided = write_lines(
        tmp_path / "decided.jsonl",
        {"source": "llava", "example_id": "b", "verdict": "keep", "reviewer": "ana",
         "note": "the second answer is right"},
        "",
        {"source": "dpo", "example_id": "p", "verdict": "drop"},
        {"source": "llava", "example_id": "d", "verdict": "drop", "reviewer": "bo"},
    )
    assert import_reviews(store, decided) == {"llava": 2, "dpo": 1}
    assert load_reviews(store, "llava") == [
        {"example_id": "b", "verdict": "keep", "reviewer": "ana",
         "note": "the second answer is right"},
        {"example_id": "d", "verdict": "drop", "reviewer": "bo", "note": None}]
    assert load_reviews(store, "dpo") == [
        {"example_id": "p", "verdict": "drop", "reviewer": None, "note": None}]
    assert (Path(store.root) / "reviews" / "llava.jsonl").is_file()  # in the store, per source


def test_a_source_without_reviews_has_none(store):
    assert load_reviews(store, "llava") == []


def test_a_later_line_for_the_same_example_wins(store, tmp_path):
    decided = write_lines(tmp_path / "d.jsonl",
                          {"source": "llava", "example_id": "b", "verdict": "keep"},
                          {"source": "llava", "example_id": "b", "verdict": "drop",
                           "reviewer": "second thoughts"})
    assert import_reviews(store, decided) == {"llava": 1}
    assert load_reviews(store, "llava") == [
        {"example_id": "b", "verdict": "drop", "reviewer": "second thoughts", "note": None}]


def test_a_later_import_adds_to_and_overrides_the_recorded_verdicts(store, tmp_path):
    import_reviews(store, write_lines(tmp_path / "1.jsonl",
                                      {"source": "llava", "example_id": "b", "verdict": "keep"},
                                      {"source": "llava", "example_id": "d", "verdict": "keep"}))
    import_reviews(store, write_lines(tmp_path / "2.jsonl",
                                      {"source": "llava", "example_id": "d", "verdict": "drop"},
                                      {"source": "llava", "example_id": "a", "verdict": "keep"}))
    recorded = {row["example_id"]: row["verdict"] for row in load_reviews(store, "llava")}
    assert recorded == {"b": "keep", "d": "drop", "a": "keep"}


def test_exported_rows_with_their_verdict_filled_in_import_as_they_are(store, tmp_path):
    out = tmp_path / "llava.review.jsonl"
    export_reviews(store, "llava", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    decided = write_lines(tmp_path / "decided.jsonl",
                          *({**row, "verdict": "keep", "reviewer": "ana"} for row in rows))
    assert import_reviews(store, decided) == {"llava": 2}
    assert {row["example_id"] for row in load_reviews(store, "llava")} == {"b", "d"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"source": "llava", "example_id": "b", "verdict": "keep"', r"d\.jsonl:2: not JSON \("),
        ('["llava", "b", "keep"]', r"d\.jsonl:2: not a JSON object with source, example_id and "
                                   r"verdict \(got list\)"),
        ({"source": "llava", "example_id": "b", "verdict": "maybe"},
         r"d\.jsonl:2: verdict must be keep or drop, got 'maybe'"),
        ({"source": "llava", "example_id": "b"},
         r"d\.jsonl:2: verdict must be keep or drop, got None"),
        ({"example_id": "b", "verdict": "keep"}, r"d\.jsonl:2: needs 'source' and 'example_id'"),
        ({"source": "llava", "example_id": "", "verdict": "keep"},
         r"d\.jsonl:2: needs 'source' and 'example_id'"),
        ({"source": "llava", "example_id": 5, "verdict": "keep"},
         r"d\.jsonl:2: example_id must be a string, got 5$"),
        ({"source": ["llava"], "example_id": "b", "verdict": "keep"},
         r"d\.jsonl:2: source must be a string, got \['llava'\]$"),
    ],
    ids=["not-json", "not-an-object", "bad-verdict", "no-verdict", "no-source", "empty-id",
         "id-not-a-string", "source-not-a-string"],
)
def test_a_bad_line_is_refused_naming_the_file_and_line_and_recording_nothing(
        store, tmp_path, line, message):
    good = {"source": "llava", "example_id": "d", "verdict": "drop"}
    decided = write_lines(tmp_path / "d.jsonl", good, line)
    with pytest.raises(ReviewError, match=message) as error:
        import_reviews(store, decided)
    assert str(error.value).startswith(str(decided))
    assert isinstance(error.value, UserError)  # one line, exit 2
    assert load_reviews(store, "llava") == []


def test_a_review_of_a_source_never_audited_is_refused(store, tmp_path):
    decided = write_lines(tmp_path / "d.jsonl",
                          {"source": "sharegpt", "example_id": "b", "verdict": "keep"})
    with pytest.raises(ReviewError,
                       match=r"d\.jsonl: source 'sharegpt' has no audit to review$"):
        import_reviews(store, decided)
    assert load_reviews(store, "sharegpt") == []


def test_a_review_naming_an_id_its_audit_lacks_records_none_of_that_sources_verdicts(
        store, tmp_path):
    decided = write_lines(tmp_path / "d.jsonl",
                          {"source": "llava", "example_id": "d", "verdict": "drop"},
                          {"source": "llava", "example_id": "zz", "verdict": "keep"})
    with pytest.raises(ReviewError, match=r"d\.jsonl: 1 example ids are not in llava's latest "
                                          r"audit: zz$"):
        import_reviews(store, decided)
    assert load_reviews(store, "llava") == []


def test_a_refused_import_records_nothing_for_any_source(store, tmp_path):
    """Every source is checked before any is written: a failed import is not half applied."""
    import_reviews(store, write_lines(tmp_path / "before.jsonl",
                                      {"source": "llava", "example_id": "b", "verdict": "keep"}))
    decided = write_lines(tmp_path / "d.jsonl",
                          {"source": "llava", "example_id": "d", "verdict": "drop"},
                          {"source": "llava", "example_id": "b", "verdict": "drop"},
                          {"source": "dpo", "example_id": "zz", "verdict": "keep"})
    with pytest.raises(ReviewError, match=r"d\.jsonl: 1 example ids are not in dpo's latest "
                                          r"audit: zz$"):
        import_reviews(store, decided)
    assert load_reviews(store, "llava") == [
        {"example_id": "b", "verdict": "keep", "reviewer": None, "note": None}]
    assert load_reviews(store, "dpo") == []


def test_unknown_ids_are_counted_and_the_first_five_named(store, tmp_path):
    decided = write_lines(tmp_path / "d.jsonl",
                          *({"source": "llava", "example_id": f"x{i}", "verdict": "keep"}
                            for i in range(7)))
    with pytest.raises(ReviewError,
                       match=r"7 example ids are not in llava's latest audit: x0, x1, x2, x3, x4$"):
        import_reviews(store, decided)


def test_ids_are_checked_against_the_latest_audit_only(store, tmp_path):
    audit(store, "llava", {"new": ("review", ["duplicate"])})
    old = write_lines(tmp_path / "old.jsonl", {"source": "llava", "example_id": "b",
                                               "verdict": "keep"})
    with pytest.raises(ReviewError, match="not in llava's latest audit: b"):
        import_reviews(store, old)
    new = write_lines(tmp_path / "new.jsonl", {"source": "llava", "example_id": "new",
                                               "verdict": "drop"})
    assert import_reviews(store, new) == {"llava": 1}


# --- digest ----------------------------------------------------------------------------------
def test_the_digest_depends_on_the_verdicts_not_on_their_order():
    reviews = [{"example_id": "a", "verdict": "keep", "reviewer": None, "note": None},
               {"example_id": "b", "verdict": "drop", "reviewer": "ana", "note": None}]
    digest = reviews_digest(reviews)
    assert len(digest) == 12 and int(digest, 16) >= 0
    assert reviews_digest(list(reversed(reviews))) == digest
    assert reviews_digest([reviews[0], {**reviews[1], "verdict": "keep"}]) != digest
    assert reviews_digest(reviews[:1]) != digest
    assert reviews_digest([]) != digest
