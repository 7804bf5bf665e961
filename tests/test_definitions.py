"""The whole code location loads, and its asset graph is what the README describes."""

from dagster import AssetKey

from assets.raw import RAW_SFT_BLOCKING_CHECKS
from definitions import defs


def test_code_location_loads_with_the_documented_graph():
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == {"raw_sft",
                                                                              "scored_sft"}
    assert graph.get(AssetKey("scored_sft")).parent_keys == {AssetKey("raw_sft")}
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert checks == {
        ("raw_sft", "raw_sft_contract"), ("raw_sft", "raw_sft_quarantine_rate"),
        ("scored_sft", "scored_sft_coverage"), ("scored_sft", "scored_sft_distribution"),
    }
    assert all(graph.get_check_spec(key).blocking for key in graph.asset_check_keys)
    assert [sensor.name for sensor in defs.sensors] == ["sources_sensor"]


def test_the_gate_requires_exactly_the_blocking_checks_of_raw_sft():
    graph = defs.resolve_asset_graph()
    blocking = {key.name for key in graph.get_check_keys_for_assets({AssetKey("raw_sft")})
                if graph.get_check_spec(key).blocking}
    assert set(RAW_SFT_BLOCKING_CHECKS) == blocking
