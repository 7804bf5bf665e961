"""A small real world for Dagster tests: images on disk, sources in two formats, a store."""

import json
from pathlib import Path

import pytest
from dagster import DagsterInstance
from PIL import Image

from assets.resources import IntegrityResource
from integrity.decide.policy import DEFAULT_POLICY
from tests.models import DEMO_MODEL


def _llava_rows(prefix: str, count: int) -> list[dict]:
    rows = []
    for i in range(count):
        if i % 3 == 2:
            rows.append({"id": f"{prefix}-{i}", "conversations": [
                {"from": "human", "value": f"What is {i} plus 1?"},
                {"from": "gpt", "value": f"{i + 1}."}]})
        else:
            rows.append({"id": f"{prefix}-{i}", "image": f"images/{i % 4}.png",
                         "caption": "a red square", "conversations": [
                             {"from": "human", "value": "<image>\nWhat color is the square?"},
                             {"from": "gpt", "value": "Red."}]})
    return rows


@pytest.fixture
def world(tmp_path: Path) -> dict:
    """Sources: good_llava (jsonl), good_sharegpt (json), dup_ids (ids repeat), broken (half bad)."""
    (tmp_path / "images").mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16), (200, 10 * i, 10)).save(tmp_path / "images" / f"{i}.png")
    llava = _llava_rows("l", 12)
    (tmp_path / "llava.jsonl").write_text("".join(json.dumps(row) + "\n" for row in llava))
    sharegpt = [{"id": f"s-{i}", "images": [f"images/{i % 4}.png"], "messages": [
        {"role": "user", "content": "<image>Is there a square?"},
        {"role": "assistant", "content": "Yes."}]} for i in range(6)]
    (tmp_path / "sharegpt.json").write_text(json.dumps(sharegpt))
    duplicated = _llava_rows("d", 6) + _llava_rows("d", 2)
    (tmp_path / "dup.jsonl").write_text("".join(json.dumps(row) + "\n" for row in duplicated))
    broken = _llava_rows("b", 6) + [{"id": f"x-{i}"} for i in range(4)]
    (tmp_path / "broken.jsonl").write_text("".join(json.dumps(row) + "\n" for row in broken))
    sources = {"model": DEMO_MODEL, "sources": [
        {"name": "good_llava", "uri": "llava.jsonl"},
        {"name": "good_sharegpt", "uri": "sharegpt.json", "format": "sharegpt"},
        {"name": "dup_ids", "uri": "dup.jsonl"},
        {"name": "broken", "uri": "broken.jsonl"},
    ]}
    (tmp_path / "sources.yaml").write_text(json.dumps(sources))
    resource = IntegrityResource(
        sources_file=str(tmp_path / "sources.yaml"),
        store_root=str(tmp_path / "store"),
        policy_file=str(DEFAULT_POLICY),
    )
    return {"root": tmp_path, "resource": resource}


@pytest.fixture
def instance(tmp_path: Path):
    """A real, persistent Dagster instance in a temporary DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with DagsterInstance.local_temp(str(home)) as instance:
        yield instance
