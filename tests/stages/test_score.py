"""The score stage (integrity/stages/score.py): a raw_sft version becomes one scored_sft version
(rows and QA pairs) naming it, without a model or with the demo's reference CLIP, whose
embeddings are cached in the store; the same input makes the same version; declared eval sets
flag what overlaps them; and bad input is a clear error that commits nothing."""

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from demo.model import demo_encoder_config
from integrity import detect
from integrity.ingest import IngestError, SourceConfig
from integrity.names import RAW_SFT, SCORED_SFT
from integrity.stages import ingest_to_store, make_encoder, score_to_store
from integrity.store.versions import StoreError
from tests.stages.world import LLAVA_ACCEPTED, write_llava

REPO = Path(__file__).resolve().parents[2]
MODEL_SIGNALS = {"grounding_cos", "grounding_margin", "leak_score", "answer_support_prob"}


def _raw(world) -> str:
    return ingest_to_store(world.llava, world.store)[1].version


def test_scoring_without_a_model_scores_every_row_and_names_its_raw_version(world):
    raw_version = _raw(world)
    rows, manifest, facts = score_to_store(world.llava, raw_version, world.store)
    raw = world.store.read(RAW_SFT, raw_version)
    assert rows["example_id"].to_list() == raw["example_id"].to_list()
    assert world.store.read(SCORED_SFT, manifest.version).equals(rows)
    pairs = world.store.read(SCORED_SFT, manifest.version, "pairs")
    assert pairs.height == LLAVA_ACCEPTED and set(pairs["example_id"]) == set(raw["example_id"])
    assert (manifest.partition, manifest.upstream) == ("llava", {RAW_SFT: raw_version})
    assert manifest.code_version == detect.CODE_VERSION
    assert manifest.params == {"model_id": None, "eval_sets": []}
    assert world.store.latest(SCORED_SFT, "llava") == manifest.version
    assert not MODEL_SIGNALS & set(rows.columns)
    assert (facts["rows_in"], facts["rows_scored"], facts["pairs_scored"]) == (
        LLAVA_ACCEPTED, LLAVA_ACCEPTED, LLAVA_ACCEPTED)
    assert facts["model"] is None and facts["model_fit_auc"] is None
    assert facts["images_encoded"] == 0 and facts["cache_hit_rate"] is None
    # The recorded signal summary describes the scored rows: one exact copy in 17 rows.
    assert facts["signals"]["dup_exact_size"]["max"] == 2
    assert manifest.extra == facts


def test_scoring_the_same_raw_version_again_reuses_the_version_and_its_first_facts(world):
    raw_version = _raw(world)
    _, first, _ = score_to_store(world.llava, raw_version, world.store)
    rows, again, facts = score_to_store(world.llava, raw_version, world.store)
    assert again.version == first.version and again.created_at == first.created_at
    assert again.extra == first.extra  # the run that made the version, not this one
    assert facts["rows_scored"] == rows.height == LLAVA_ACCEPTED  # this run's own facts
    assert world.store.versions(SCORED_SFT) == [first.version]


def test_declared_eval_sets_flag_the_rows_that_share_an_image_or_a_question(world):
    eval_file = world.root / "eval.jsonl"
    write_llava(eval_file, [
        {"id": "e-image", "image": "images/2.png", "conversations": [
            {"from": "human", "value": "<image>\nIs there a square?"},
            {"from": "gpt", "value": "Yes."}]},
        {"id": "e-question", "conversations": [
            {"from": "human", "value": "what is 0 PLUS 3?"}, {"from": "gpt", "value": "3."}]}])
    held_out = SourceConfig(name="held_out", uri=str(eval_file))
    raw_version = _raw(world)
    _, plain, _ = score_to_store(world.llava, raw_version, world.store)
    rows, manifest, _ = score_to_store(world.llava, raw_version, world.store,
                                       eval_sets=[held_out])
    overlapping = set(rows.filter(pl.col("dup_eval_overlap").fill_null(False))["example_id"])
    assert overlapping == {"img-2", "txt-0"}  # by image, and by the question as normalised
    assert manifest.params["eval_sets"] == [str(eval_file)]
    assert manifest.version != plain.version
    assert world.store.latest(SCORED_SFT, "llava") == manifest.version


def test_an_eval_set_with_no_readable_row_is_an_error_that_commits_nothing(world):
    eval_file = world.root / "eval.jsonl"
    write_llava(eval_file, [{"id": "no-dialog"}])
    raw_version = _raw(world)
    with pytest.raises(IngestError, match="eval set held_out .* yields no row to compare against"):
        score_to_store(world.llava, raw_version, world.store,
                       eval_sets=[SourceConfig(name="held_out", uri=str(eval_file))])
    assert world.store.versions(SCORED_SFT) == []


def test_an_unknown_raw_version_is_an_error_naming_it(world):
    with pytest.raises(StoreError, match="Unknown version '0123456789abcdef' of asset 'raw_sft'"):
        score_to_store(world.llava, "0123456789abcdef", world.store)
    assert world.store.versions(SCORED_SFT) == []


def test_scoring_with_the_demo_model_adds_its_signals_and_records_the_model(world):
    raw_version = _raw(world)
    _, plain, _ = score_to_store(world.llava, raw_version, world.store)
    encoder = make_encoder(demo_encoder_config(workers=0), world.store)
    rows, manifest, facts = score_to_store(world.llava, raw_version, world.store,
                                           encoder=encoder)
    assert MODEL_SIGNALS <= set(rows.columns)
    images = rows.filter(pl.col("example_id").str.starts_with("img-"))
    assert images["grounding_margin"].null_count() == 0
    assert rows.filter(pl.col("example_id").str.starts_with("txt-"))[
        "grounding_margin"].null_count() == 6  # a text row has no image to ground in
    assert facts["model_id"] == encoder.model_id == manifest.params["model_id"]
    assert facts["model"] == {"name": "shapes-clip", "pretrained": encoder.config.pretrained,
                              "device": encoder.device_used, "precision": "fp32"}
    assert facts["model_fit_auc"] is not None and facts["model_fit_pairs"] > 0
    assert 0 < facts["images_encoded"] <= 8  # 8 distinct images; a repeat is encoded once
    assert facts["cache_hit_rate"] is not None
    assert manifest.version != plain.version
    assert world.store.latest(SCORED_SFT, "llava") == manifest.version


def test_a_second_encoder_on_the_same_store_reads_every_embedding_from_its_cache(world):
    raw_version = _raw(world)
    first = make_encoder(demo_encoder_config(workers=0), world.store)
    _, scored, _ = score_to_store(world.llava, raw_version, world.store, encoder=first)
    assert (Path(world.store.root) / "embeddings").is_dir()
    second = make_encoder(demo_encoder_config(workers=0), world.store)
    _, again, facts = score_to_store(world.llava, raw_version, world.store, encoder=second)
    assert again.version == scored.version  # same embeddings, same scores
    assert facts["cache_hit_rate"] == 1.0
    assert facts["images_encoded"] == facts["texts_encoded"] == 0


def test_a_re_score_on_a_warm_store_never_imports_torch(world):
    """A warm re-score imported torch and open_clip and loaded the model only to read its
    embedding size and temperature: 0.75 GB of the 1M-row run's peak and ~3 s of start-up.
    Run in a fresh process, since this one has torch loaded already."""
    raw_version = _raw(world)
    cold = make_encoder(demo_encoder_config(workers=0), world.store)
    _, scored, _ = score_to_store(world.llava, raw_version, world.store, encoder=cold)
    code = (
        "import json, sys\n"
        "from demo.model import demo_encoder_config\n"
        "from integrity.ingest import SourceConfig\n"
        "from integrity.stages import make_encoder, score_to_store\n"
        "from integrity.store.versions import VersionStore\n"
        "store = VersionStore(sys.argv[1])\n"
        "source = SourceConfig.model_validate_json(sys.argv[2])\n"
        "encoder = make_encoder(demo_encoder_config(workers=0), store)\n"
        "_, manifest, facts = score_to_store(source, sys.argv[3], store, encoder=encoder)\n"
        "print(json.dumps({'version': manifest.version, 'device': facts['model']['device'],\n"
        "                  'loaded': sorted({'torch', 'open_clip'} & set(sys.modules)),\n"
        "                  'logit_scale': encoder.logit_scale, 'dim': encoder.dim}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, world.store.root, world.llava.model_dump_json(),
         raw_version], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    warm = json.loads(result.stdout.splitlines()[-1])
    assert warm == {"version": scored.version, "device": None, "loaded": [],
                    "logit_scale": cold.logit_scale, "dim": cold.dim}


def test_scoring_records_where_its_time_went_step_by_step(world):
    """At 1M rows re-scoring took 79% of the non-model stages and nothing said which detector:
    the facts name every step (QA pairs, each detector that ran, the copy keys), slowest first."""
    from integrity.detect.registry import detectors

    _, _, facts = score_to_store(world.llava, _raw(world), world.store)
    steps = facts["step_seconds"]
    ran = [detector for detector in detectors() if not detector.needs_encoder]
    background = {f"{d.name} (background)" for d in ran if d.prefetch is not None}
    assert background == {"duplicates (background)"}  # the near-copy searches
    assert set(steps) == {"qa_pairs", "copy_keys", *(d.name for d in ran), *background}
    assert all(seconds >= 0 for seconds in steps.values())
    assert list(steps.values()) == sorted(steps.values(), reverse=True)
    # The background's seconds overlap the detectors'; the rest add up to the wall time.
    foreground = sum(seconds for step, seconds in steps.items() if step not in background)
    assert foreground <= facts["seconds"] + 0.01
