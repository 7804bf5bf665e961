"""The cases of the hand-run fault matrix that failed (issue 14): nothing may hang (conftest's
deadline), every record is accounted for, and each failure names its cause."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from integrity.cli import main
from integrity.ingest import IngestError
from tests.models import DEMO_MODEL_YAML


def nested(depth: int) -> str:
    """JSON text of an object ``depth`` levels deep (Python's json cannot write it)."""
    return '{"a": ' * depth + '"x"' + "}" * depth


# --- containers ---------------------------------------------------------------------------------
def test_a_json_array_with_a_bom_is_read_as_json(ws, conversation, accounted):
    records = [{"id": f"r{i}", "conversations": conversation("Hi", "Hello")} for i in range(3)]
    path = ws.raw("bom.json", b"\xef\xbb\xbf" + json.dumps(records, indent=2).encode())
    result = ws.ingest(path)
    accounted(result, 3)
    assert result.accepted["example_id"].to_list() == ["r0", "r1", "r2"]


def test_a_pretty_printed_top_level_object_is_one_record(ws, conversation, accounted):
    """It was read as JSON lines: 46 junk records quarantined for 3 real ones."""
    record = {"id": "only", "conversations": conversation("Hi", "Hello")}
    result = ws.ingest(ws.raw("pretty.json", json.dumps(record, indent=2)))
    accounted(result, 1)
    assert result.accepted["example_id"].to_list() == ["only"]


@pytest.mark.parametrize("depth", [255, 600, 1000])
def test_a_deeply_nested_record_is_quarantined_not_fatal(ws, conversation, depth):
    from tests.robustness.conftest import only_quarantined

    deep = (f'{{"conversations": {json.dumps(conversation("Hi", "Hello"))}, '
            f'"meta": {nested(depth)}}}')
    row = only_quarantined(ws.ingest_one(deep))
    assert row["reason"] == "too_deeply_nested"
    assert row["raw"].startswith('{"conversations"')  # the line as written


def test_deep_records_in_a_json_array_and_nested_image_lists(ws, conversation, accounted):
    good = {"conversations": conversation("Hi", "Hello")}
    deep_meta = f'{{"conversations": {json.dumps(good["conversations"])}, "meta": {nested(300)}}}'
    path = ws.raw("deep.json", f"[{json.dumps(good)}, {deep_meta}, {json.dumps(good)}]")
    result = ws.ingest(path)
    accounted(result, 3)
    assert result.quarantine["reason"].to_list() == ["too_deeply_nested"]
    assert "..." in result.quarantine["raw"][0]  # shown cut at the depth JSON can hold
    # Nested image lists as deep as a JSON line may hold (orjson parses 1024 levels).
    deep_images = (f'{{"image": {"[" * 1000}"a.png"{"]" * 1000}, '
                   f'"conversations": {json.dumps(conversation())}}}')
    result = ws.ingest(ws.jsonl("images.jsonl", [good, deep_images, good]))
    accounted(result, 3)
    assert result.quarantine["reason"].to_list() == ["too_deeply_nested"]


# --- duplicate keys -----------------------------------------------------------------------------
def test_a_repeated_key_quarantines_the_record(ws, conversation, accounted):
    conversations = json.dumps(conversation("Hi", "Hello"))
    lines = [
        f'{{"id": "a", "conversations": {conversations}}}',
        f'{{"id": "b", "id": "c", "conversations": {conversations}}}',  # which id?
        '{"id": "d", "conversations": [{"from": "human", "value": "Hi"}, '
        '{"from": "gpt", "value": "Yes", "value": "No"}]}',  # which answer?
        f'{{"id" : "e", "conversations" : {conversations}}}',  # spaced colons: still read
        f'{{"id": "f", "note": "a \\": inside", "conversations": {conversations}}}',
    ]
    result = ws.ingest(ws.raw("dup.jsonl", "\n".join(lines) + "\n"))
    accounted(result, 5)
    assert result.accepted["example_id"].to_list() == ["a", "e", "f"]
    assert result.quarantine["reason"].to_list() == ["duplicate_key"] * 2
    assert [detail.split(":")[0] for detail in result.quarantine["detail"]] == [
        "repeated key(s) 'id'", "repeated key(s) 'value'"]
    array = ws.raw("dup.json", "[" + ",".join(lines) + "]")
    result = ws.ingest(array)
    accounted(result, 5)
    assert result.quarantine["reason"].to_list() == ["duplicate_key"] * 2


# --- empty sources ------------------------------------------------------------------------------
@pytest.mark.parametrize("content", ["", "\n  \n\t\n"])
def test_an_empty_source_warns_and_fails_its_warn_check(tmp_path, capsys, content):
    from integrity.decide import gate
    from integrity.decide.policy import Policy
    from integrity.store.versions import VersionStore

    (tmp_path / "empty.jsonl").write_text(content)
    (tmp_path / "sources.yaml").write_text("sources:\n  - {name: empty, uri: empty.jsonl}\n")
    store = str(tmp_path / "store")
    assert main(["ingest", str(tmp_path / "sources.yaml"), "--store", store]) == 0
    assert "integrity: warning: source empty holds no records" in capsys.readouterr().err
    versions = VersionStore(store)
    verdict = gate.raw_sft_has_rows(versions, versions.latest("raw_sft", "empty"), Policy())
    assert not verdict.passed and "holds no records" in verdict.description


# --- special files ------------------------------------------------------------------------------
def test_a_fifo_as_an_image_is_refused_without_waiting(ws, conversation):
    from tests.robustness.conftest import only_quarantined

    os.mkfifo(ws.images / "pipe.png")
    row = only_quarantined(ws.ingest_one({"image": "pipe.png", "conversations": conversation()}))
    assert row["reason"] == "not_a_regular_file"


def test_a_fifo_as_the_data_file_is_an_error_without_waiting(ws):
    os.mkfifo(ws.root / "data.jsonl")
    with pytest.raises(IngestError, match="data.jsonl: not a regular file"):
        ws.ingest(ws.root / "data.jsonl")


# --- images changed after ingest ----------------------------------------------------------------
def corpus(tmp_path: Path, conversation) -> Path:
    from tests.robustness.conftest import png_bytes

    images = tmp_path / "images"
    images.mkdir()
    records = []
    for index, color in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        (images / f"{index}.png").write_bytes(png_bytes(size=(32, 32), color=color))
        records.append({"id": f"r{index}", "image": f"{index}.png",
                        "conversations": conversation("<image>\nWhat color?", "Red.")})
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    sources = tmp_path / "sources.yaml"
    sources.write_text(DEMO_MODEL_YAML + "sources:\n  - {name: s, uri: data.jsonl, "
                       "image_root: images}\n")
    assert main(["ingest", str(sources), "--store", str(tmp_path / "store")]) == 0
    return sources


@pytest.mark.parametrize("swap", ["text", "huge_png"])
@pytest.mark.parametrize("model", [False, True])
def test_an_image_swapped_after_ingest_is_refused_at_scoring(tmp_path, capsys, conversation,
                                                             swap, model):
    """Scoring crashed with UnidentifiedImageError (text), decoded 13000x13000 pixels past the
    budget (huge PNG), or with --no-model scored the new pixels silently."""
    from tests.robustness.conftest import png_claiming

    sources = corpus(tmp_path, conversation)
    capsys.readouterr()
    image = tmp_path / "images" / "1.png"
    image.write_bytes(b"DB_PASSWORD=hunter2\n" if swap == "text" else png_claiming(13000, 13000))
    args = ["score", str(sources), "--store", str(tmp_path / "store")]
    assert main(args + ([] if model else ["--no-model"])) == 2
    error = capsys.readouterr().err
    assert "integrity: error:" in error
    assert "1.png changed since it was ingested" in error and "re-ingest the source" in error


# --- policy and sources files -------------------------------------------------------------------
@pytest.mark.parametrize(("body", "expected"), [
    ("scoring: {model_signals: [nope]}", r"scoring.model_signals: .*unknown signal\(s\) \['nope'\]"),
    ("scoring: {model_signals: []}", r"scoring.model_signals: List should have at least 1 item"),
    ("mix: {source_weights: {a: .nan}}", r"mix.source_weights: .*weights must be finite"),
    ("mix: {source_weights: {a: .inf}}", r"mix.source_weights: .*weights must be finite"),
    ("mix: {source_weights: {a: 1.0e9}}", r"from 0 to 100: \{'a': 1000000000.0\}"),
    ("ingest:\n  max_quarantine_rate: 0.05\n  max_quarantine_rate: 0.5\n",
     r"key 'max_quarantine_rate' repeated at line 3 \(first at line 2\)"),
])
def test_a_policy_that_would_disarm_a_check_is_refused(tmp_path, capsys, body, expected):
    """[nope] or [] turned the blocking scored_sft_distribution check into a pass; NaN weights
    broke the mix with a traceback and 1e9 asked for 8 GB; a repeated key kept the last."""
    from integrity.decide.policy import PolicyError, load_policy

    policy = tmp_path / "policy.yaml"
    policy.write_text(body)
    with pytest.raises(PolicyError, match=expected):
        load_policy(policy)
    (tmp_path / "sources.yaml").write_text("sources: []\n")
    assert main(["check", str(tmp_path / "sources.yaml"), "--policy", str(policy)]) == 2
    assert capsys.readouterr().err.startswith("integrity: error: ")


def test_a_sources_file_that_repeats_a_key_is_refused(tmp_path):
    from integrity.ingest import SourcesFileError, load_sources

    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  - name: a\n    uri: a.jsonl\n    uri: b.jsonl\n")
    with pytest.raises(SourcesFileError, match="key 'uri' repeated at line 4"):
        load_sources(sources)


# --- credentials in URIs ------------------------------------------------------------------------
@pytest.fixture
def web_folder(tmp_path):
    """A plain HTTP server on 127.0.0.1 serving ``tmp_path/web`` (it ignores credentials)."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "web"
    folder.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # the server's own log is not the tool's output
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, server.server_address[1]
    server.shutdown()


def test_credentials_in_a_uri_are_never_recorded_or_printed(tmp_path, web_folder, capsys,
                                                           conversation):
    folder, port = web_folder
    (folder / "data.jsonl").write_text(json.dumps({"id": "a", "conversations":
                                                   conversation("Hi", "Hello")}) + "\n")
    base = f"http://reader:s3cr3t@127.0.0.1:{port}"
    sources = tmp_path / "sources.yaml"
    sources.write_text(f"sources:\n  - {{name: web, uri: '{base}/data.jsonl'}}\n"
                       f"  - {{name: gone, uri: '{base}/missing.jsonl?token=t0ken'}}\n")
    store = tmp_path / "store"
    assert main(["ingest", str(sources), "--store", str(store), "--source", "web"]) == 0
    assert main(["ingest", str(sources), "--store", str(store), "--source", "gone"]) == 2
    printed = capsys.readouterr()
    assert "integrity: error:" in printed.err and "***@127.0.0.1" in printed.err
    stored = "".join(path.read_text(errors="replace") for path in store.rglob("*")
                     if path.is_file() and path.suffix in (".json", ".parquet"))
    assert f"***@127.0.0.1:{port}/data.jsonl" in stored  # the manifest names the source...
    for secret in ("s3cr3t", "t0ken"):
        assert secret not in printed.out + printed.err + stored  # ...never its credentials


# --- one error policy ---------------------------------------------------------------------------
def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch,
                                                               conversation):
    import errno

    import integrity.store.versions as store_module

    (tmp_path / "data.jsonl").write_text(json.dumps({"conversations": conversation("a", "b")}))
    (tmp_path / "sources.yaml").write_text("sources:\n  - {name: s, uri: data.jsonl}\n")

    def full(source, target):
        raise OSError(errno.ENOSPC, "No space left on device", target)

    monkeypatch.setattr(store_module.os, "replace", full)
    store = tmp_path / "store"
    assert main(["ingest", str(tmp_path / "sources.yaml"), "--store", str(store)]) == 2
    assert "integrity: error: no space left on the device" in capsys.readouterr().err
    assert not list(store.rglob("*.tmp"))


def test_missing_s3_credentials_are_one_line(tmp_path, capsys, monkeypatch, conversation,
                                           request):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import s3fs  # a filesystem cached by another test (moto's server) would still hold its keys

    s3fs.S3FileSystem.clear_instance_cache()
    request.addfinalizer(s3fs.S3FileSystem.clear_instance_cache)  # nor may ours, keyless, stay
    (tmp_path / "data.jsonl").write_text(json.dumps({"conversations": conversation("a", "b")}))
    (tmp_path / "sources.yaml").write_text("sources:\n  - {name: s, uri: data.jsonl}\n")
    assert main(["ingest", str(tmp_path / "sources.yaml"),
                 "--store", "s3://no-credentials-here/store"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("integrity: error: S3: Unable to locate credentials")


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """ValueError was reported as the user's mistake: now only UserError is."""
    import integrity.cli as cli

    def broken(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(cli, "ingest_to_store", broken)
    (tmp_path / "data.jsonl").write_text("")
    (tmp_path / "sources.yaml").write_text("sources:\n  - {name: s, uri: data.jsonl}\n")
    with pytest.raises(ValueError, match="an internal invariant broke"):
        main(["ingest", str(tmp_path / "sources.yaml"), "--store", str(tmp_path / "store")])


def test_encoder_errors_and_bad_review_lines_are_one_line(tmp_path, capsys):
    from demo.model import REFERENCE_CONFIG

    (tmp_path / "data.jsonl").write_text('{"conversations": [{"from": "human", "value": "a"}, '
                                         '{"from": "gpt", "value": "b"}]}\n')
    (tmp_path / "sources.yaml").write_text(
        f"model: {{name: shapes-clip, pretrained: {tmp_path / 'data.jsonl'}, "
        f"config: {REFERENCE_CONFIG}}}\nsources:\n  - {{name: s, uri: data.jsonl}}\n")
    store = str(tmp_path / "store")
    assert main(["ingest", str(tmp_path / "sources.yaml"), "--store", store]) == 0
    assert main(["score", str(tmp_path / "sources.yaml"), "--store", store]) == 2
    assert "integrity: error: cannot load open_clip model 'shapes-clip'" in capsys.readouterr().err
    (tmp_path / "reviews.jsonl").write_text("[1, 2]\n")
    assert main(["review", "import", str(tmp_path / "reviews.jsonl"), "--store", store]) == 2
    assert "reviews.jsonl:1: not a JSON object" in capsys.readouterr().err
