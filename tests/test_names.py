"""The one place asset, table and attachment names come from (integrity/names.py): no two alike,
each usable in the store, and Dagster's assets are exactly the store assets it materializes."""

from __future__ import annotations

import polars as pl

from integrity import names
from integrity.store.versions import VersionStore


def _all_names() -> dict[str, str]:
    return {key: value for key, value in vars(names).items() if key.isupper()}


# Attachments end in _FILE (and the mix's LLaMA-Factory export stem in _NAME); the rest are assets.
FILES = {value for key, value in _all_names().items() if key.endswith("_FILE")}
ASSETS = {value for key, value in _all_names().items() if not key.endswith(("_FILE", "_NAME"))}
# Store assets Dagster never materializes (calibration: human labels through the CLI).
STORE_ONLY = {names.CALIBRATION}


def test_no_two_names_are_alike():
    values = list(_all_names().values())
    assert len(values) == len(set(values))
    assert len({value.lower() for value in values}) == len(values)  # case-insensitive disks


def test_every_asset_name_is_a_store_asset_and_every_file_an_attachment(tmp_path):
    store = VersionStore(str(tmp_path / "store"))
    for asset in sorted(ASSETS):
        manifest = store.write(asset, {"data": pl.DataFrame({"x": [1]})}, code_version="t")
        for name in sorted(FILES):
            store.attach(asset, manifest.version, name, f"{asset}/{name}")
            assert store.read_attachment(asset, manifest.version, name) == \
                f"{asset}/{name}".encode()
    assert sorted(store.assets()) == sorted(ASSETS)


def test_the_attachment_names_say_what_their_files_hold():
    assert names.REPORT_FILE.endswith(".html")
    assert names.CALIBRATION_REPORT_FILE.endswith(".html")
    assert names.REVIEW_FILE.endswith(".jsonl")
    assert names.MIX_LLAVA_FILE.endswith(".json")
    assert names.CHECKPOINT_FILE.endswith(".pt")
    assert "." not in names.MIX_SHAREGPT_NAME  # a stem: <name>.json is written beside it


def test_the_dagster_assets_are_exactly_the_store_assets_but_the_store_only_ones():
    """A new asset name must be either a Dagster asset or declared store-only above."""
    from definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == ASSETS - STORE_ONLY
    assert STORE_ONLY <= ASSETS
