"""The whole code location loads, and its asset graph is what the README describes."""

from dagster import AssetKey

from assets.audited import AUDITED_SFT_BLOCKING_CHECKS
from assets.checkpoint import TRAINING_CHECKPOINT_BLOCKING_CHECKS
from assets.mix import TRAINING_MIX_BLOCKING_CHECKS
from assets.raw import RAW_SFT_BLOCKING_CHECKS
from assets.rl_probe import TRAINING_RL_PROBE_BLOCKING_CHECKS
from assets.scored import SCORED_SFT_BLOCKING_CHECKS
from definitions import defs


def test_code_location_loads_with_the_documented_graph():
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == {
        "raw_sft", "scored_sft", "duplicate_index", "audited_sft", "training_mix",
        "training_checkpoint", "training_rl_probe", "rl_ready_checkpoint"}
    assert graph.get(AssetKey("scored_sft")).parent_keys == {AssetKey("raw_sft")}
    assert graph.get(AssetKey("duplicate_index")).parent_keys == {AssetKey("scored_sft")}
    assert graph.get(AssetKey("audited_sft")).parent_keys == {AssetKey("scored_sft"),
                                                              AssetKey("duplicate_index")}
    assert graph.get(AssetKey("training_mix")).parent_keys == {AssetKey("audited_sft"),
                                                               AssetKey("duplicate_index")}
    assert graph.get(AssetKey("training_checkpoint")).parent_keys == {AssetKey("training_mix")}
    assert graph.get(AssetKey("training_rl_probe")).parent_keys == {
        AssetKey("training_checkpoint")}
    assert graph.get(AssetKey("rl_ready_checkpoint")).parent_keys == {
        AssetKey("training_rl_probe")}
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert checks == {
        ("raw_sft", "raw_sft_contract"), ("raw_sft", "raw_sft_quarantine_rate"),
        ("raw_sft", "raw_sft_has_rows"),
        ("scored_sft", "scored_sft_coverage"), ("scored_sft", "scored_sft_distribution"),
        ("scored_sft", "scored_sft_model_fit"),
        ("audited_sft", "audited_sft_grounding"),
        ("audited_sft", "audited_sft_no_preference_pollution"),
        ("audited_sft", "audited_sft_no_contradiction"), ("audited_sft", "audited_sft_nothing_lost"),
        ("audited_sft", "audited_sft_over_audit"), ("audited_sft", "audited_sft_diversity"),
        ("audited_sft", "audited_sft_calibrated_precision"),
        *(("training_mix", name) for name in TRAINING_MIX_BLOCKING_CHECKS),
        *(("training_checkpoint", name) for name in TRAINING_CHECKPOINT_BLOCKING_CHECKS),
        *(("training_rl_probe", name) for name in TRAINING_RL_PROBE_BLOCKING_CHECKS),
    }
    warn_only = {key.name for key in graph.asset_check_keys
                 if not graph.get_check_spec(key).blocking}
    assert warn_only == {"raw_sft_has_rows", "audited_sft_over_audit", "audited_sft_diversity",
                         "audited_sft_calibrated_precision"}
    assert [sensor.name for sensor in defs.sensors] == [
        "sources_sensor", "landing_sensor", "audit_automation"]


def test_each_gate_requires_exactly_the_blocking_checks_of_its_upstream():
    graph = defs.resolve_asset_graph()
    for upstream, required in (("raw_sft", RAW_SFT_BLOCKING_CHECKS),
                               ("scored_sft", SCORED_SFT_BLOCKING_CHECKS),
                               ("audited_sft", AUDITED_SFT_BLOCKING_CHECKS),
                               ("training_mix", TRAINING_MIX_BLOCKING_CHECKS),
                               ("training_checkpoint", TRAINING_CHECKPOINT_BLOCKING_CHECKS),
                               ("training_rl_probe", TRAINING_RL_PROBE_BLOCKING_CHECKS)):
        blocking = {key.name for key in graph.get_check_keys_for_assets({AssetKey(upstream)})
                    if graph.get_check_spec(key).blocking}
        assert set(required) == blocking


def test_every_job_and_ui_materialization_runs_its_steps_in_one_process():
    """`make ui` runs once took minutes each: Dagster's default executor started a process per
    step, each importing torch, open_clip, polars and GX."""
    from dagster import in_process_executor

    jobs = [job.name for job in defs.resolve_all_job_defs()]
    assert "__ASSET_JOB" in jobs  # what the UI's "Materialize" launches
    for name in jobs:
        assert defs.resolve_job_def(name).executor_def is in_process_executor, name


def test_settings_from_the_environment_reach_resources_as_env_vars(monkeypatch, tmp_path):
    """Resources once read the environment when definitions.py was imported, so the UI showed
    resolved values (a store URI with its credential) and a changed variable needed a reload."""
    from dagster import EnvVar

    from assets.resources import (
        IntegrityResource,
        RLProbeResource,
        TrainerResource,
        from_environment,
    )

    monkeypatch.setenv("INTEGRITY_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("INTEGRITY_TRAINER_COMMAND", "python train.py --fast")
    monkeypatch.delenv("INTEGRITY_SOURCES", raising=False)
    settings = from_environment("integrity")
    assert settings == {"store_root": EnvVar("INTEGRITY_STORE")}  # unset ones keep defaults
    resource = IntegrityResource(**settings).process_config_and_initialize()
    assert resource.store_root == str(tmp_path / "store")
    assert resource.sources_file.endswith("data/demo/sources.yaml")
    trainer = TrainerResource(**from_environment("trainer")).process_config_and_initialize()
    assert trainer.command_words() == ["python", "train.py", "--fast"]
    assert TrainerResource().command_words()[1:] == ["-m", "assets.trainers.demo_vqa"]
    monkeypatch.setenv("INTEGRITY_RL_COMMAND", "python grpo.py")
    monkeypatch.setenv("INTEGRITY_RL_PROBE_SET", str(tmp_path / "probe.json"))
    rl = RLProbeResource(**from_environment("rl_probe")).process_config_and_initialize()
    assert rl.command_words() == ["python", "grpo.py"]
    assert rl.probe_set == str(tmp_path / "probe.json")
    assert RLProbeResource().command_words()[1:] == ["-m", "assets.trainers.demo_rl"]


def test_every_asset_of_the_code_location_reads_latest_from_its_materializations():
    from assets.versions import MATERIALIZED_ASSETS

    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == MATERIALIZED_ASSETS
