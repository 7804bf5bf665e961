"""The bad-input matrix, file level: a file that cannot be read fails with one clear error that
names the file (and the line, or the bad key)."""

from __future__ import annotations

import json
import re

import pytest

from integrity.ingest import IngestError, SourcesFileError, load_sources
from integrity.decide.policy import PolicyError, load_policy


def _records(n: int) -> list[dict]:
    return [{"id": str(i), "conversations": [{"from": "human", "value": "Hi"},
                                             {"from": "gpt", "value": "Hello"}]}
            for i in range(n)]


def test_truncated_json_array_names_the_file_and_line(ws):
    text = json.dumps(_records(10), indent=2)
    path = ws.raw("cut.json", text[: len(text) * 2 // 3])
    with pytest.raises(IngestError) as error:
        ws.ingest(path)
    message = str(error.value)
    assert message.startswith(f"{path}: not valid JSON at line ")
    assert int(re.search(r"line (\d+)", message).group(1)) > 1


def test_non_utf8_json_array_names_the_file(ws):
    data = json.dumps(_records(3), indent=2).encode().replace(b'"Hello"', b'"caf\xe9"', 1)
    path = ws.raw("latin1.json", data)
    with pytest.raises(IngestError, match=r"not valid JSON at line \d+: .*UTF-8") as error:
        ws.ingest(path)
    assert str(error.value).startswith(str(path))


def test_jsonl_of_only_non_utf8_lines_names_the_file(ws):
    path = ws.raw("all_latin1.jsonl", b'{"a": "caf\xe9"}\n{"b": "\xff"}\n')
    with pytest.raises(IngestError, match=r"no line is valid JSON \(line 1") as error:
        ws.ingest(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("body", "key"),
    [("sources:\n  - name: a\n    uri: a.json\n    colour: red\n", "sources.0.colour"),
     ("sources:\n  - {name: a, uri: a.json}\nimage_roots: [x]\n", "image_roots"),
     ("sources: []\neval_sets:\n  - {name: e, uri: e.json, split: test}\n", "eval_sets.0.split")],
    ids=["source-key", "top-level-key", "eval-set-key"],
)
def test_sources_file_with_an_unknown_key_names_it(ws, body, key):
    path = ws.raw("sources.yaml", body)
    with pytest.raises(SourcesFileError) as error:
        load_sources(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert f"{key}: Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("body", "key"),
    [("ingest:\n  max_quarantine_rate: high\n", "ingest.max_quarantine_rate"),
     ("signals:\n  duplicate:\n    exact: [1, 2]\n", "signals.duplicate.exact"),
     ("audit:\n  actions:\n    duplicate: 3\n", "audit.actions.duplicate"),
     ("mix:\n  curriculum: fast\n", "mix.curriculum"),
     ("ingest: 0.05\n", "ingest")],
    ids=["str-for-float", "list-for-bool", "int-for-action", "str-for-list", "scalar-for-section"],
)
def test_policy_file_with_a_wrong_type_names_the_key(ws, body, key):
    path = ws.raw("policy.yaml", body)
    with pytest.raises(PolicyError) as error:
        load_policy(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert f"{key}: " in message
