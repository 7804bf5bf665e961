"""The whole demo graph on S3 (moto's server on 127.0.0.1): sources, images and the store on
s3://, credentials from the environment only, and never written into metadata, logs or the store.
"""

import uuid
from pathlib import Path

import boto3
import pytest
from dagster import materialize

from assets.resources import EncoderResource, IntegrityResource, TrainerResource
from definitions import defs
from demo.generate import DemoConfig, generate
from integrity.store.lineage import checkpoint_lineage
from integrity.names import AUDITED_SFT, REPORT_FILE, TRAINING_CHECKPOINT
from integrity.store.versions import VersionStore
from tests.models import DEMO_MODEL_YAML

KEY, SECRET = "AKIAINTEGRITYE2E0001", f"e2e-secret-{uuid.uuid4().hex}"


def _assets(names: set[str]) -> list:
    chosen = [item for item in defs.assets if item.key.to_user_string() in names]
    return chosen + [check for check in defs.asset_checks
                     if next(iter(check.check_keys)).asset_key.to_user_string() in names]


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint_url"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_server["endpoint_url"]


def test_the_demo_graph_runs_on_s3_and_never_records_a_credential(s3_env, tmp_path, instance):
    bucket = f"e2e-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    generate(tmp_path / "demo", DemoConfig(rows=200, seed=9))
    for path in (tmp_path / "demo").rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket,
                               f"sources/{path.relative_to(tmp_path / 'demo')}")
    (tmp_path / "sources.yaml").write_text(
        DEMO_MODEL_YAML
        + f"sources:\n  - {{name: llava, uri: 's3://{bucket}/sources/llava.jsonl'}}\n")
    integrity = IntegrityResource(sources_file=str(tmp_path / "sources.yaml"),
                                  store_root=f"s3://{bucket}/store")
    resources = {"integrity": integrity, "encoder": EncoderResource(workers=0),
                 "trainer": TrainerResource(config={"max_steps": 3, "probe_images": 8})}
    instance.add_dynamic_partitions("sources", ["llava"])
    audit = materialize(_assets({"raw_sft", "scored_sft", "duplicate_index", "audited_sft"}), partition_key="llava",
                        instance=instance, resources=resources)
    # A 3-step model has not learned to look yet: its reliance check fails; it is still stored.
    train = materialize(_assets({"training_mix", "training_checkpoint"}), instance=instance,
                        resources=resources, raise_on_error=False)
    assert audit.success and train.asset_materializations_for_node("training_checkpoint")

    store = VersionStore(f"s3://{bucket}/store")
    audited = store.latest(AUDITED_SFT, "llava")
    report = store.fs.cat(store.attachment_uri(AUDITED_SFT, audited, REPORT_FILE)).decode()
    assert 'class="thumb"' in report  # thumbnails were read from s3:// images
    lineage = checkpoint_lineage(store, store.latest(TRAINING_CHECKPOINT))
    assert audited in set(lineage["version"])

    # Nothing anywhere holds a credential: event log (metadata, messages), manifests, reports.
    text = "\n".join(str(entry) for run in (audit, train)
                     for entry in instance.all_logs(run.run_id))
    assert "training_checkpoint" in text and "audited_sft" in text
    objects = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="store/") for item in page.get("Contents", [])]
    stored = "\n".join(client.get_object(Bucket=bucket, Key=key)["Body"].read().decode(
        errors="replace") for key in objects if key.endswith((".json", ".html", ".jsonl")))
    for secret in (KEY, SECRET):
        assert secret not in text and secret not in stored
    assert Path(tmp_path / "sources.yaml").read_text().count("secret") == 0
