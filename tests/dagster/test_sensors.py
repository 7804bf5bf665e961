"""The landing-zone sensor: a shard is picked up once its marker lands, and only once."""

import json
import shutil
import uuid
from pathlib import Path

import boto3
from dagster import build_sensor_context, materialize
from dagster_aws.s3 import S3Resource

from assets.partitions import sources_partitions
from assets.raw import raw_sft
from assets.resources import IntegrityResource
from assets.sensors import landing_sensor

ROW = {"id": "r{}", "image": "images/a.png", "conversations": [
    {"from": "human", "value": "<image>\nWhat color is the square?"},
    {"from": "gpt", "value": "Red."}]}


def _shard(folder: Path, rows: int = 3, marker: bool = True) -> None:
    (folder / "images").mkdir(parents=True)
    shutil.copy(_png(folder), folder / "images")
    (folder / "data.jsonl").write_text("".join(
        json.dumps({**ROW, "id": f"r{i}"}) + "\n" for i in range(rows)))
    if marker:
        (folder / "_SUCCESS").write_text("")


def _png(folder: Path) -> Path:
    from PIL import Image

    path = folder / "a.png"
    Image.new("RGB", (48, 48), (220, 20, 20)).save(path)
    return path


def _tick(instance, integrity, s3=None):
    """One sensor evaluation, with its partition requests applied as the daemon would."""
    context = build_sensor_context(instance=instance, resources={
        "integrity": integrity, "s3": s3 or S3Resource()})
    result = landing_sensor(context)
    for request in getattr(result, "dynamic_partitions_requests", None) or []:
        instance.add_dynamic_partitions(sources_partitions.name, list(request.partition_keys))
    return sorted(request.partition_key for request in getattr(result, "run_requests", []) or [])


def test_a_marked_shard_is_picked_up_once_and_a_half_written_one_waits(tmp_path, instance):
    landing = tmp_path / "landing"
    _shard(landing / "vendor" / "2026-11-24")
    _shard(landing / "vendor" / "2026-11-25", marker=False)  # still uploading
    integrity = IntegrityResource(sources_file=str(tmp_path / "none.yaml"),
                                  store_root=str(tmp_path / "store"), landing_root=str(landing))
    (tmp_path / "none.yaml").write_text("sources: []\n")
    assert _tick(instance, integrity) == ["vendor.2026-11-24"]
    assert _tick(instance, integrity) == []  # a second tick launches nothing new
    (landing / "vendor" / "2026-11-25" / "_SUCCESS").write_text("")
    assert _tick(instance, integrity) == ["vendor.2026-11-25"]
    # The partition resolves to the shard: its ingest reads the shard's file and images.
    result = materialize([raw_sft], partition_key="vendor.2026-11-24", instance=instance,
                         resources={"integrity": integrity})
    [event] = result.asset_materializations_for_node("raw_sft")
    assert event.metadata["dagster/row_count"].value == 3


def test_the_sensor_lists_an_s3_landing_zone_through_s3_resource(s3_server, tmp_path, instance):
    bucket = f"landing-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=s3_server["endpoint_url"])
    client.create_bucket(Bucket=bucket)
    local = tmp_path / "shard"
    _shard(local)
    for path in local.rglob("*"):
        if path.is_file() and path.name != "_SUCCESS":
            client.upload_file(str(path), bucket, f"zone/vendor/s1/{path.relative_to(local)}")
    client.put_object(Bucket=bucket, Key="zone/vendor/s2/data.jsonl", Body=b"{}\n")  # no marker
    (tmp_path / "none.yaml").write_text("sources: []\n")
    integrity = IntegrityResource(sources_file=str(tmp_path / "none.yaml"),
                                  store_root=str(tmp_path / "store"),
                                  landing_root=f"s3://{bucket}/zone")
    s3 = S3Resource(endpoint_url=s3_server["endpoint_url"], region_name="us-east-1")
    assert _tick(instance, integrity, s3) == []  # files there, marker not yet
    client.put_object(Bucket=bucket, Key="zone/vendor/s1/_SUCCESS", Body=b"")
    assert _tick(instance, integrity, s3) == ["vendor.s1"]
    assert _tick(instance, integrity, s3) == []
