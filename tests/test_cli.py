"""The command line end to end on a generated demo world, checked against its ground truth."""

import json
from collections import Counter
from pathlib import Path

import polars as pl

from integrity.cli import main
from demo.cli import main as demo_main
from integrity.store.versions import VersionStore

BROKEN_TO_REASON = {
    "broken_missing_image": "missing_image",
    "broken_corrupt_image": "corrupt_image",
    "broken_bad_json": "malformed_json",
}


def _demo(tmp_path: Path) -> Path:
    out = tmp_path / "demo"
    assert demo_main(["generate", "--out", str(out), "--rows", "300", "--seed", "3",
                 "--broken-rate", "0.05"]) == 0
    sources = {"sources": [
        {"name": "llava", "uri": str(out / "llava.jsonl")},
        {"name": "sharegpt", "uri": str(out / "sharegpt.json")},
        {"name": "pref", "uri": str(out / "preference_dpo.json")},
    ]}
    (tmp_path / "sources.yaml").write_text(json.dumps(sources))
    return out


def test_ingest_quarantines_exactly_the_broken_rows_of_the_ground_truth(tmp_path, capsys):
    out = _demo(tmp_path)
    store = tmp_path / "store"
    capsys.readouterr()
    assert main(["ingest", str(tmp_path / "sources.yaml"), "--store", str(store), "--json"]) == 0
    summaries = {s["source"]: s for s in json.loads(capsys.readouterr().out)}

    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    llava_truth = [t for t in truth if t["file"] == "llava.jsonl"]
    expected = Counter(BROKEN_TO_REASON[f] for t in llava_truth for f in t["flaws"]
                       if f in BROKEN_TO_REASON)
    assert sum(expected.values()) > 0
    assert summaries["llava"]["quarantine_by_reason"] == dict(expected)
    assert summaries["llava"]["rows_in"] == len(llava_truth)

    quarantine = VersionStore(str(store)).read("raw_sft", summaries["llava"]["version"],
                                               "quarantine")
    broken_lines = {t["line"] for t in llava_truth if set(t["flaws"]) & set(BROKEN_TO_REASON)}
    assert set(quarantine["row_index"]) == broken_lines

    # Preference pairs become two rows each, sharing a group.
    pref = summaries["pref"]
    assert pref["accepted"] == 2 * sum(t["file"] == "preference_dpo.json" for t in truth)
    rows = VersionStore(str(store)).read("raw_sft", pref["version"])
    assert rows.group_by("pref_group").agg(pl.col("pref_role").sort()).filter(
        pl.col("pref_role") != ["chosen", "rejected"]).is_empty()

    # Text-only share as generated (30% of the demo rows, none of them broken).
    generated_text = sum(t["modality"] == "text" for t in llava_truth)
    assert summaries["llava"]["modality"]["text"] == generated_text


def test_ingest_twice_gives_the_same_versions_and_summary_reads_them(tmp_path, capsys):
    _demo(tmp_path)
    store, sources = str(tmp_path / "store"), str(tmp_path / "sources.yaml")
    main(["ingest", sources, "--store", store, "--json"])
    capsys.readouterr()
    main(["ingest", sources, "--store", store, "--json"])
    second = {s["source"]: s["version"] for s in json.loads(capsys.readouterr().out)}
    main(["ingest", sources, "--store", store, "--json"])
    third = {s["source"]: s["version"] for s in json.loads(capsys.readouterr().out)}
    assert second == third
    assert len(VersionStore(store).versions("raw_sft")) == 3

    assert main(["summary", sources, "--store", store]) == 0
    text = capsys.readouterr().out
    for name, version in second.items():
        assert name in text and version in text


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["ingest", str(tmp_path / "nope.yaml")]) == 2
    assert "sources file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - name: x\n    uri: a.json\n    format: csv\n")
    assert main(["ingest", str(bad)]) == 2
    assert "format" in capsys.readouterr().err


def test_score_without_a_model_flags_overlap_with_declared_eval_sets(tmp_path, capsys):
    out = _demo(tmp_path)
    sources = json.loads((tmp_path / "sources.yaml").read_text())
    sources["sources"] = sources["sources"][:1]
    sources["eval_sets"] = [{"name": "held_out", "uri": str(out / "sharegpt.json")}]
    (tmp_path / "sources.yaml").write_text(json.dumps(sources))
    store = str(tmp_path / "store")
    assert main(["ingest", str(tmp_path / "sources.yaml"), "--store", store]) == 0
    assert main(["score", str(tmp_path / "sources.yaml"), "--store", store, "--no-model"]) == 0
    assert "llava: " in capsys.readouterr().out.split("rows scored")[0]

    store_ = VersionStore(store)
    scored = store_.read("scored_sft", store_.latest("scored_sft", "llava"))
    eval_images = {json.loads(line)["image"] for line in (out / "ground_truth.jsonl").open()
                   if json.loads(line)["file"] == "sharegpt.json"} - {None}
    raw = store_.read("raw_sft", store_.latest("raw_sft", "llava"))
    expected = set(raw.filter(pl.col("images").list.first().is_in(list(eval_images)))
                   ["example_id"])
    flagged = set(scored.filter(pl.col("dup_eval_overlap"))["example_id"])
    assert expected and expected <= flagged
    assert "grounding_cos" not in scored.columns  # --no-model: no model signals


def test_ingest_score_audit_from_the_command_line(tmp_path, capsys):
    _demo(tmp_path)
    store, sources = str(tmp_path / "store"), str(tmp_path / "sources.yaml")
    assert main(["ingest", sources, "--store", store]) == 0
    assert main(["audit", sources, "--store", store]) == 2  # nothing scored yet
    assert "no scored_sft version" in capsys.readouterr().err
    assert main(["score", sources, "--store", store, "--no-model", "--source", "pref"]) == 0
    capsys.readouterr()
    assert main(["audit", sources, "--store", store, "--source", "pref"]) == 0
    out = capsys.readouterr().out
    assert "| drop | preference_pollution |" in out and "| **keep** | (all) | 0 |" in out
    summary = VersionStore(store)
    audited = summary.manifest("audited_sft", summary.latest("audited_sft", "pref"))
    assert audited.extra["counts"]["drop"] == audited.extra["rows_in"]


def test_human_review_round_trip_overrides_the_next_audit(tmp_path, capsys):
    _demo(tmp_path)
    store, sources = str(tmp_path / "store"), str(tmp_path / "sources.yaml")
    for command in (["ingest", sources], ["score", sources, "--no-model", "--source", "llava"],
                    ["audit", sources, "--source", "llava"]):
        assert main([*command, "--store", store]) == 0
    reviews = tmp_path / "reviews"
    assert main(["review", "export", sources, "--source", "llava", "--out", str(reviews),
                 "--store", store]) == 0
    pending = [json.loads(line) for line in (reviews / "llava.review.jsonl").open()]
    assert pending and all(row["reasons"] == ["contradiction"] for row in pending)
    assert all(row["turns"] and row["verdict"] is None for row in pending)

    decided = tmp_path / "decided.jsonl"
    decided.write_text("".join(json.dumps({**row, "verdict": verdict, "reviewer": "ana"}) + "\n"
                               for row, verdict in zip(pending[:2], ["keep", "drop"],
                                                       strict=True)))
    assert main(["review", "import", str(decided), "--store", store]) == 0
    assert main(["audit", sources, "--source", "llava", "--store", store]) == 0
    summary = VersionStore(store)
    version = summary.latest("audited_sft", "llava")
    verdicts = dict(summary.read("audited_sft", version, "verdicts")
                    .select("example_id", "verdict").iter_rows())
    assert verdicts[pending[0]["example_id"]] == "keep"
    assert verdicts[pending[1]["example_id"]] == "drop"
    assert summary.manifest("audited_sft", version).extra["human_reviews"] == 2

    capsys.readouterr()
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"source": "llava", "example_id": "nope", "verdict": "keep"}))
    assert main(["review", "import", str(unknown), "--store", store]) == 2
    assert "not in llava's latest audit: nope" in capsys.readouterr().err
    unknown.write_text(json.dumps({"source": "llava", "example_id": "x", "verdict": "maybe"}))
    assert main(["review", "import", str(unknown), "--store", store]) == 2
    assert "verdict must be keep or drop" in capsys.readouterr().err


def test_calibrate_sample_label_and_judge_from_the_command_line(tmp_path, capsys):
    out = _demo(tmp_path)
    store, sources = str(tmp_path / "store"), str(tmp_path / "sources.yaml")
    for command in (["ingest", sources], ["score", sources, "--no-model"]):
        assert main([*command, "--store", store]) == 0
    sample, labels = tmp_path / "sample.jsonl", tmp_path / "labels.jsonl"
    capsys.readouterr()
    assert main(["calibrate", "sample", sources, "--n", "80", "--out", str(sample),
                 "--store", store]) == 0
    assert "80 rows to label" in capsys.readouterr().out
    drawn = [json.loads(line) for line in sample.open()]
    assert {row["source"] for row in drawn} == {"llava", "sharegpt", "pref"}
    assert all(row["label"] is None and "turns" in row for row in drawn)

    assert demo_main(["label", str(sample), "--truth", str(out / "ground_truth.jsonl"),
                 "--out", str(labels)]) == 0
    assert main(["calibrate", str(labels), "--store", store]) == 0
    printed = capsys.readouterr().out
    assert "| preference_pollution | drop | 1.00 [" in printed
    assert "threshold reaching precision 0.9" in printed
    calibration = VersionStore(store).latest("calibration")
    report = Path(store) / "calibration" / calibration / "attachments" / "calibration.html"
    assert report.is_file() and "Auditor calibration" in report.read_text()

    # A label that is not a flaw class is refused, naming the line.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**drawn[0], "label": "blurry"}) + "\n")
    assert main(["calibrate", str(bad), "--store", store]) == 2
    assert "bad.jsonl:1: label 'blurry' is not 'clean'" in capsys.readouterr().err


def test_the_gate_exits_1_naming_every_failed_blocking_check(tmp_path, capsys):
    """`integrity audit` exited 0 on a source that was 100% quarantined or would fail every
    blocking check: CI without Dagster had no gate."""
    _demo(tmp_path)
    sources_file = tmp_path / "sources.yaml"
    sources = json.loads(sources_file.read_text())
    (tmp_path / "broken.jsonl").write_text('{"id": "a"}\n{oops\n')
    sources["sources"].append({"name": "broken", "uri": str(tmp_path / "broken.jsonl")})
    sources_file.write_text(json.dumps(sources))
    store, sources_arg = str(tmp_path / "store"), str(sources_file)
    assert main(["ingest", sources_arg, "--store", store]) == 0
    capsys.readouterr()
    assert main(["score", sources_arg, "--store", store, "--no-model", "--json"]) == 0
    scored = {s["source"]: s for s in json.loads(capsys.readouterr().out)}
    assert scored["sharegpt"]["rows_scored"] == scored["sharegpt"]["rows_in"] > 0
    assert main(["check", sources_arg, "--store", store, "--source", "sharegpt"]) == 1
    assert "never audited" in capsys.readouterr().out

    assert main(["audit", sources_arg, "--store", store, "--source", "sharegpt", "--gate",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["audits"][0]["source"] == "sharegpt"
    assert {c["check"] for c in result["checks"]} >= {
        "raw_sft_contract", "raw_sft_quarantine_rate", "scored_sft_coverage",
        "audited_sft_grounding", "audited_sft_no_preference_pollution",
        "audited_sft_no_contradiction", "audited_sft_nothing_lost"}
    assert all(c["passed"] for c in result["checks"])

    assert main(["audit", sources_arg, "--store", store, "--source", "broken", "--gate"]) == 1
    printed = capsys.readouterr().out
    assert "FAIL  broken  raw_sft_quarantine_rate" in printed
    assert "failed: broken/raw_sft_quarantine_rate" in printed

    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("audit:\n  actions:\n    contradiction: keep\n")
    assert main(["audit", sources_arg, "--store", store, "--source", "llava", "--policy",
                 str(lenient)]) == 0
    capsys.readouterr()
    assert main(["check", sources_arg, "--store", store, "--source", "llava", "--policy",
                 str(lenient), "--json"]) == 1
    failed = [c["check"] for c in json.loads(capsys.readouterr().out) if not c["passed"]]
    assert failed == ["audited_sft_no_contradiction"]


def test_scoring_needs_a_named_model_and_never_falls_back_to_the_demo_s(tmp_path, capsys):
    """Any sources file was scored with the demo's shapes CLIP; ViT-B-32 without weights loaded
    the demo weights and died on an AssertionError."""
    _demo(tmp_path)
    store, sources = str(tmp_path / "store"), str(tmp_path / "sources.yaml")
    assert main(["ingest", sources, "--store", store, "--source", "llava"]) == 0
    capsys.readouterr()
    assert main(["score", sources, "--store", store, "--source", "llava"]) == 2
    assert "names no model for source 'llava'" in capsys.readouterr().err
    assert main(["score", sources, "--store", store, "--source", "llava",
                 "--model", "ViT-B-32"]) == 2
    assert "a model and its weights go together" in capsys.readouterr().err
    from demo.reference import REFERENCE_WEIGHTS

    assert main(["score", sources, "--store", store, "--source", "llava", "--model", "ViT-B-32",
                 "--pretrained", str(REFERENCE_WEIGHTS)]) == 2
    assert "do the weights belong to this model?" in capsys.readouterr().err
