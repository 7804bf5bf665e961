"""The mix stage (integrity/stages/mix.py): the kept rows of every audited source become one
training_mix version naming each audited version; only a mix that passes every blocking check
is published (the store's latest) with its LLaVA and LLaMA-Factory exports attached; a failing
one is kept to inspect, unexported; the same inputs make the same version."""

import json

import polars as pl
import pytest

from integrity.decide.gate import TRAINING_MIX_CHECKS
from integrity.decide.policy import Policy
from integrity.ingest import SourceConfig
from integrity.mix.training_mix import CODE_VERSION
from integrity.names import AUDITED_SFT, MIX_LLAVA_FILE, TRAINING_MIX
from integrity.detect.cross_source import DuplicateIndexError
from integrity.stages import audit_to_store, ingest_to_store, mix_to_store, score_to_store
from integrity.store.versions import StoreError
from tests.stages.world import (
    KEPT,
    archive_source,
    audit_source,
    llava_records,
    write_llava,
)

EXPORTS = {MIX_LLAVA_FILE, "integrity_mix.json", "dataset_info.json"}


def _audited(world, policy: Policy | None = None) -> dict[str, str]:
    """source -> audited version of both sources of the world."""
    if policy is not None:
        world.policy = policy
    return {source.name: audit_source(world, source)[2].version
            for source in (world.llava, world.sharegpt)}


def test_the_mix_takes_only_kept_rows_names_its_audits_and_is_published_with_exports(world):
    audited = _audited(world)
    gate = {f"{AUDITED_SFT}/{source}": {"version": version, "checks_passed": ["a_check"]}
            for source, version in audited.items()}
    mix, manifest, files = mix_to_store(audited, world.store, world.policy, gate=gate)
    assert (manifest.asset, manifest.partition) == (TRAINING_MIX, None)
    assert manifest.upstream == {f"{AUDITED_SFT}/{source}": version
                                 for source, version in audited.items()}
    assert manifest.code_version == CODE_VERSION
    assert manifest.params == {"policy": world.policy.digest(),
                               "mix": world.policy.mix.model_dump(), "eval_sets": []}
    assert manifest.extra["gate"] == gate
    assert manifest.extra["failed_checks"] == []
    assert set(manifest.extra["checks"]) == set(TRAINING_MIX_CHECKS)
    assert world.store.latest(TRAINING_MIX) == manifest.version

    # Every mix row is a kept row of the audited version it names. 11 image rows and 10 text
    # rows were kept: images are trimmed to the target share, every text row is trained on.
    assert world.store.read(TRAINING_MIX, manifest.version).equals(mix)
    assert mix["position"].to_list() == list(range(mix.height))
    for source, version in audited.items():
        of_source = mix.filter(pl.col("source") == source)
        kept = world.store.read(AUDITED_SFT, version)
        assert set(of_source["audited_version"]) == {version}
        assert set(of_source["example_id"]) <= set(kept["example_id"])
        assert set(of_source.filter(pl.col("modality") == "text")["example_id"]) == \
            set(kept.filter(pl.col("modality") == "text")["example_id"])
    assert set(mix.filter(pl.col("source") == "llava")["example_id"]) <= KEPT
    summary = manifest.extra["summary"]
    assert summary["per_modality"] == {"text": 10, "image-text": 10}
    assert summary["rows"] == mix.height and summary["audited_versions"] == audited
    band = world.policy.mix.image_share_tolerance
    assert abs(summary["image_share"] - world.policy.mix.image_share) <= band

    assert set(files) == EXPORTS
    llava = json.loads(world.store.read_attachment(TRAINING_MIX, manifest.version,
                                                   MIX_LLAVA_FILE))
    assert [item["id"] for item in llava] == mix["example_id"].to_list()  # training order
    assert manifest.extra["exports"][MIX_LLAVA_FILE] == {"rows": mix.height, "left_out": {}}
    info = json.loads(world.store.read_attachment(TRAINING_MIX, manifest.version,
                                                  "dataset_info.json"))
    assert info["integrity_mix"]["file_name"] == "integrity_mix.json"
    assert world.store.verify(TRAINING_MIX, manifest.version) == []


def test_the_same_audited_versions_and_policy_reuse_the_mix_version(world):
    audited = _audited(world)
    _, first, _ = mix_to_store(audited, world.store, world.policy)
    _, again, files = mix_to_store(dict(reversed(audited.items())), world.store, world.policy)
    assert again.version == first.version and again.created_at == first.created_at
    assert set(files) == EXPORTS
    assert world.store.versions(TRAINING_MIX) == [first.version]


def test_a_mix_failing_a_blocking_check_is_kept_but_never_published_nor_exported(world):
    _, published, _ = mix_to_store(_audited(world), world.store, world.policy)
    # Every image is now too small: the image rows are dropped and the mix is all text.
    tiny_images = Policy.model_validate({"signals": {"image_defect": {"min_side": 100}}})
    audited = _audited(world, tiny_images)
    mix, failed, files = mix_to_store(audited, world.store, tiny_images)
    assert set(mix["modality"]) == {"text"}
    assert failed.extra["failed_checks"] == ["training_mix_modality_band"]
    assert failed.extra["checks"]["training_mix_modality_band"]["passed"] is False
    assert files == {} and failed.extra["exports"] == {}
    assert world.store.exists(TRAINING_MIX, failed.version)
    assert world.store.read(TRAINING_MIX, failed.version).equals(mix)
    assert world.store.latest(TRAINING_MIX) == published.version  # still the passing one
    with pytest.raises(StoreError, match=f"{MIX_LLAVA_FILE} is missing"):
        world.store.read_attachment(TRAINING_MIX, failed.version, MIX_LLAVA_FILE)


def test_a_mix_sharing_an_image_with_a_declared_eval_set_is_not_published(world):
    eval_file = world.root / "eval.jsonl"
    write_llava(eval_file, [{"id": "e-1", "image": "images/3.png", "conversations": [
        {"from": "human", "value": "<image>\nIs there a square?"},
        {"from": "gpt", "value": "Yes."}]}])
    held_out = SourceConfig(name="held_out", uri=str(eval_file))
    audited = _audited(world)  # scored without the eval set: img-3 was kept
    mix, manifest, files = mix_to_store(audited, world.store, world.policy,
                                        eval_sets=[held_out])
    assert "img-3" in set(mix["example_id"])
    assert manifest.extra["failed_checks"] == ["training_mix_no_eval_overlap"]
    assert manifest.params["eval_sets"] == [str(eval_file)]
    assert files == {} and world.store.latest(TRAINING_MIX) is None


def test_an_unknown_audited_version_is_an_error_naming_it(world):
    audited = _audited(world)
    with pytest.raises(StoreError, match="Unknown version '0123456789abcdef' of asset "
                                         "'audited_sft'"):
        mix_to_store({**audited, "sharegpt": "0123456789abcdef"}, world.store, world.policy)
    assert world.store.versions(TRAINING_MIX) == []


def test_a_row_another_source_holds_first_is_left_out_even_if_audited_before_it_came(world):
    *_, llava = audit_source(world, world.llava)  # audited before the archive was indexed
    assert "img-2" in set(world.store.read(AUDITED_SFT, llava.version)["example_id"])
    archive = archive_source(world)
    audited = {"llava": llava.version,
               "archive": audit_source(world, archive)[2].version,
               "sharegpt": audit_source(world, world.sharegpt)[2].version}
    mix, manifest, _ = mix_to_store(audited, world.store, world.policy)
    assert "img-2" not in set(mix["example_id"])  # "archive" sorts first: its a-2 is kept
    assert manifest.extra["copies_removed"] == {"archive": 0, "llava": 1, "sharegpt": 0}
    assert manifest.extra["checks"]["training_mix_traceable"]["passed"] is True


def test_mixing_a_source_never_indexed_is_an_error_naming_it(world):
    audited = _audited(world)
    write_llava(world.root / "llava.jsonl", llava_records()[:12])  # changed, re-scored ...
    _, raw = ingest_to_store(world.llava, world.store)
    _, scored, _ = score_to_store(world.llava, raw.version, world.store)
    _, fresh, _ = audit_to_store("llava", scored.version, world.store, world.policy,
                                 report=False)  # ... and audited, but never indexed
    with pytest.raises(DuplicateIndexError, match="duplicate_index of llava"):
        mix_to_store({**audited, "llava": fresh.version}, world.store, world.policy)
    assert world.store.versions(TRAINING_MIX) == []
