"""Duplicates across sources through a real Dagster instance: one file registered as two shards
mixes each example once, in whichever order the shards are materialized, and the mix check
blocks a mix that holds copies."""

import json

import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from assets.resources import EncoderResource, IntegrityResource
from definitions import defs
from demo.generate import DemoConfig, generate
from integrity.decide import gate
from integrity.decide.policy import DEFAULT_POLICY, load_policy
from integrity.names import AUDITED_SFT, TRAINING_MIX
from integrity.store.versions import VersionStore
from tests.models import DEMO_MODEL_YAML

AUDIT = ["raw_sft", "scored_sft", "duplicate_index", "audited_sft"]
SHARDS = ("shard_a", "shard_b")


def _assets(names: list[str]) -> list:
    """The named assets with every check of theirs, from the code location itself."""
    chosen = [item for item in defs.assets if item.key.to_user_string() in names]
    checks = [check for check in defs.asset_checks
              if next(iter(check.check_keys)).asset_key.to_user_string() in names]
    return chosen + checks


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("demo")
    generate(folder, DemoConfig(rows=240, seed=3))
    return str(folder / "llava.jsonl")


def _world(root, demo_file: str) -> IntegrityResource:
    """The same LLaVA file registered twice, as the landing sensor registers two shards."""
    (root / "sources.yaml").write_text(DEMO_MODEL_YAML + "sources:\n" + "".join(
        f"  - {{name: {shard}, uri: {demo_file}}}\n" for shard in SHARDS))
    return IntegrityResource(sources_file=str(root / "sources.yaml"),
                             store_root=str(root / "store"))


def _audit_then_mix(integrity: IntegrityResource, instance: DagsterInstance, order):
    instance.add_dynamic_partitions("sources", list(SHARDS))
    for shard in order:
        audited = materialize(_assets(AUDIT), partition_key=shard, instance=instance,
                              resources={"integrity": integrity,
                                         "encoder": EncoderResource(workers=0)})
        assert audited.success
    return materialize(_assets(["training_mix"]), instance=instance, raise_on_error=False,
                       resources={"integrity": integrity})


def _examples(mix: pl.DataFrame) -> pl.DataFrame:
    """Distinct mix examples (upsampled repeats are one) with their images and dialog."""
    return mix.unique(["source", "example_id"]).select(
        "source", "example_id", images=pl.col("image_sha256").list.join(","),
        dialog=pl.col("turns").map_elements(lambda turns: json.dumps(turns.to_list()),
                                            return_dtype=pl.String))


@pytest.fixture(scope="module")
def both_orders(tmp_path_factory, demo_file) -> dict:
    """The two shards audited a then b, and b then a, each in its own instance and store."""
    results = {}
    for order in (SHARDS, SHARDS[::-1]):
        root = tmp_path_factory.mktemp("".join(name[-1] for name in order))
        integrity = _world(root, demo_file)
        (root / "dagster_home").mkdir()
        with DagsterInstance.local_temp(str(root / "dagster_home")) as instance:
            mixed = _audit_then_mix(integrity, instance, order)
            store = integrity.store(instance)
            [mix] = mixed.asset_materializations_for_node("training_mix")
            version = mix.metadata["version"].value
            audited = {shard: store.latest(AUDITED_SFT, shard) for shard in SHARDS}
            results[order] = {
                "success": mixed.success,
                "checks": {e.check_name: e for e in mixed.get_asset_check_evaluations()},
                "mix": store.read(TRAINING_MIX, version),
                "manifest": store.manifest(TRAINING_MIX, version),
                "verdicts": {shard: store.read(AUDITED_SFT, audited[shard], "verdicts")
                             for shard in SHARDS},
                "store_root": integrity.store_root,
            }
    return results


@pytest.mark.parametrize("order", [SHARDS, SHARDS[::-1]], ids=["a_then_b", "b_then_a"])
def test_one_file_as_two_shards_mixes_each_example_once(both_orders, order):
    result = both_orders[order]
    assert result["success"]
    check = result["checks"]["training_mix_no_duplicates"]
    assert check.passed, check.description
    examples = _examples(result["mix"])
    repeated = examples.group_by("images", "dialog").agg(pl.col("source").n_unique().alias("n"))
    assert repeated["n"].max() == 1
    # The keep rule: no source_priority in the default policy, so shard_a (first by name) keeps.
    assert set(examples["source"]) == {"shard_a"}


def test_the_later_shard_audit_names_the_row_it_copies(both_orders):
    verdicts = both_orders[SHARDS]["verdicts"]["shard_b"]
    copies = verdicts.filter(pl.col("duplicate_of").is_not_null())
    kept_by_a = both_orders[SHARDS]["verdicts"]["shard_a"].filter(pl.col("verdict") == "keep")
    assert copies.height >= kept_by_a.height > 0
    assert copies.filter(pl.col("verdict") != "drop").is_empty()
    assert copies["reasons"].list.contains("duplicate").all()
    # Each copy names a row of shard_a: its twin (one file, the same ids), or the first of the
    # twins when the file itself repeats an example.
    named = copies["duplicate_of"].str.strip_prefix("shard_a/")
    assert copies["duplicate_of"].str.starts_with("shard_a/").all()
    assert named.is_in(both_orders[SHARDS]["verdicts"]["shard_a"]["example_id"].implode()).all()
    assert (named == copies["example_id"]).mean() > 0.9
    assert verdicts.filter(pl.col("verdict") == "keep").is_empty()


def test_either_order_keeps_the_same_rows(both_orders):
    first, second = (_examples(both_orders[order]["mix"]).sort("source", "example_id")
                     for order in (SHARDS, SHARDS[::-1]))
    assert first.equals(second)
    # b audited first kept its copies (shard_a was not indexed yet): the mix left them out.
    assert both_orders[SHARDS[::-1]]["manifest"].extra["copies_removed"]["shard_b"] > 0
    assert both_orders[SHARDS]["manifest"].extra["copies_removed"]["shard_b"] == 0


def test_the_mix_check_fails_on_copies_and_names_the_sources(both_orders):
    """The kept rows of both shards together, as mixes were built before the index: blocked."""
    result = both_orders[SHARDS]
    copied = pl.concat([result["mix"], result["mix"].with_columns(source=pl.lit("shard_b"))])
    review = gate.MixUnderReview(copied, result["manifest"].upstream,
                                 VersionStore(result["store_root"]), load_policy(DEFAULT_POLICY))
    verdict = gate.training_mix_no_duplicates(review)
    assert not verdict.passed
    assert "shard_a" in verdict.description and "shard_b" in verdict.description
    assert verdict.figures["exact_repeats"] == result["mix"]["example_id"].n_unique()
