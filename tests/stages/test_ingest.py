"""The ingest stage (integrity/stages/ingest.py): a source becomes one raw_sft version holding
every record, accepted or quarantined; the same file makes the same version; what cannot be read
is a clear error that commits nothing; and the latest summaries say how far each source got."""

import json

import polars as pl
import pytest

from integrity import ingest
from integrity.decide.policy import Policy
from integrity.ingest import IngestError, SourceConfig
from integrity.names import AUDITED_SFT, RAW_SFT, REPORT_FILE
from integrity.stages import (
    audit_to_store,
    ingest_to_store,
    latest_raw_summaries,
    score_to_store,
)
from tests.stages.world import (
    LLAVA_ACCEPTED,
    LLAVA_RECORDS,
    llava_records,
    write_llava,
)


def test_every_record_lands_in_exactly_one_table_of_the_committed_version(world):
    result, manifest = ingest_to_store(world.llava, world.store)
    assert (manifest.asset, manifest.partition) == (RAW_SFT, "llava")
    assert manifest.code_version == ingest.CODE_VERSION and manifest.upstream == {}
    assert {name: table.rows for name, table in manifest.tables.items()} == {
        "data": LLAVA_ACCEPTED, "quarantine": LLAVA_RECORDS - LLAVA_ACCEPTED}
    data = world.store.read(RAW_SFT, manifest.version)
    quarantine = world.store.read(RAW_SFT, manifest.version, "quarantine")
    assert data.equals(result.accepted) and quarantine.equals(result.quarantine)
    ids = [record["id"] for record in llava_records()]
    assert sorted(data["row_index"].to_list() + quarantine["row_index"].to_list()) == \
        list(range(LLAVA_RECORDS))
    assert set(data["example_id"]) == set(ids) - {"no-dialog"}
    assert quarantine["reason"].to_list() == ["missing_field"]
    assert manifest.extra == result.summary()
    assert manifest.extra["modality"] == {"image-text": 10, "text": 7}
    assert world.store.latest(RAW_SFT, "llava") == manifest.version
    assert world.store.verify(RAW_SFT, manifest.version) == []


def test_each_source_is_its_own_partition_in_its_own_format(world):
    _, llava = ingest_to_store(world.llava, world.store)
    _, sharegpt = ingest_to_store(world.sharegpt, world.store)
    assert llava.version != sharegpt.version
    assert world.store.latest(RAW_SFT, "llava") == llava.version
    assert world.store.latest(RAW_SFT, "sharegpt") == sharegpt.version
    assert sharegpt.params["format"] == "sharegpt"
    rows = world.store.read(RAW_SFT, sharegpt.version)
    assert set(rows["origin_format"]) == {"sharegpt"} and set(rows["source"]) == {"sharegpt"}
    # Relative image refs resolve against the data file's folder, checked and hashed.
    images = rows.filter(pl.col("modality") == "image-text")
    assert images.height == 4
    assert all(uris[0].startswith(str(world.root / "images")) for uris in images["image_uris"])
    assert all(len(digests[0]) == 64 for digests in images["image_sha256"])


def test_the_same_file_again_reuses_its_version_and_a_changed_file_makes_a_new_one(world):
    _, first = ingest_to_store(world.llava, world.store)
    _, again = ingest_to_store(world.llava, world.store)
    assert again.version == first.version and again.created_at == first.created_at
    assert world.store.versions(RAW_SFT) == [first.version]

    write_llava(world.root / "llava.jsonl", llava_records()[:-1])  # the broken record fixed
    result, changed = ingest_to_store(world.llava, world.store)
    assert changed.version != first.version
    assert result.quarantine.is_empty() and changed.extra["quarantined"] == 0
    assert world.store.latest(RAW_SFT, "llava") == changed.version
    assert world.store.versions(RAW_SFT) == [first.version, changed.version]


def test_credentials_in_the_source_locations_never_reach_the_manifest(world):
    write_llava(world.root / "text.jsonl", [{"id": "t", "conversations": [
        {"from": "human", "value": "Hello?"}, {"from": "gpt", "value": "Hi."}]}])
    source = SourceConfig(name="text", uri=str(world.root / "text.jsonl"),
                          image_root="s3://AKIAKEY:TOPSECRET@bucket/images?X-Amz-Signature=sig1")
    _, manifest = ingest_to_store(source, world.store)
    assert manifest.params["image_root"] == "s3://***@bucket/images?X-Amz-Signature=***"
    stored = (world.root / "store" / RAW_SFT / manifest.version / "manifest.json").read_text()
    assert "TOPSECRET" not in stored and "sig1" not in stored and "AKIAKEY" not in stored


@pytest.mark.parametrize(("content", "message"), [
    (None, "llava.jsonl: file not found"),
    ("{not json at all", "llava.jsonl: no line is valid JSON"),
])
def test_a_file_that_cannot_be_read_is_an_error_naming_it_and_commits_nothing(world, content,
                                                                              message):
    path = world.root / "llava.jsonl"
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    with pytest.raises(IngestError, match=message):
        ingest_to_store(world.llava, world.store)
    assert world.store.versions(RAW_SFT) == []
    assert world.store.latest(RAW_SFT, "llava") is None


def test_summaries_skip_sources_never_ingested_and_name_each_latest_version(world):
    assert latest_raw_summaries(world.store, [world.llava, world.sharegpt]) == []
    result, manifest = ingest_to_store(world.llava, world.store)
    [summary] = latest_raw_summaries(world.store, [world.llava, world.sharegpt])
    assert summary == {**result.summary(), "version": manifest.version,
                       "uri": world.store.uri(RAW_SFT, manifest.version)}


def test_summaries_add_the_flags_of_a_scoring_and_the_audit_of_that_latest_raw_version(world):
    _, raw = ingest_to_store(world.llava, world.store)
    _, scored, _ = score_to_store(world.llava, raw.version, world.store)
    [summary] = latest_raw_summaries(world.store, [world.llava], world.policy)
    assert summary["scored_version"] == scored.version
    # Rows flagged per class; classes no signal measured (caption_derived needs a model) are
    # left out rather than reported as zero.
    assert summary["flagged"] == {"blind_answerable": 0, "preference_pollution": 1,
                                  "contradiction": 2, "duplicate": 2, "eval_overlap": 0,
                                  "image_defect": 0}
    assert "audit" not in summary

    _, audited, files = audit_to_store("llava", scored.version, world.store, world.policy)
    [summary] = latest_raw_summaries(world.store, [world.llava], world.policy)
    assert summary["audit"]["version"] == audited.version
    assert summary["audit"]["counts"] == {"keep": 13, "review": 2, "drop": 2}
    assert summary["audit"]["report"] == files[REPORT_FILE] == \
        world.store.attachment_uri(AUDITED_SFT, audited.version, REPORT_FILE)

    # A stricter policy flags more of the same scored rows.
    strict = Policy.model_validate({"signals": {"blind_answerable": {"prior_min": 0.0}}})
    [strict_summary] = latest_raw_summaries(world.store, [world.llava], strict)
    assert strict_summary["flagged"]["blind_answerable"] > 0


def test_summaries_leave_out_a_scoring_of_an_older_raw_version(world):
    _, raw = ingest_to_store(world.llava, world.store)
    score_to_store(world.llava, raw.version, world.store)
    write_llava(world.root / "llava.jsonl", llava_records()[:10])
    _, newer = ingest_to_store(world.llava, world.store)
    [summary] = latest_raw_summaries(world.store, [world.llava], world.policy)
    assert summary["version"] == newer.version and summary["accepted"] == 10
    assert not {"scored_version", "flagged", "audit"} & set(summary)
    assert json.loads(json.dumps(summary)) == summary  # plain JSON, as `summary --json` prints
