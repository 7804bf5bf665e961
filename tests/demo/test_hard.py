"""The hard demo: flaws worded from vocabulary pools, each pool split into two halves."""

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from demo.cli import main as demo_main
from demo import wording as W
from demo.generate import DemoConfig
from demo.hard import HARD_FLAWS, generate_hard


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("hard")
    config = DemoConfig(rows=1200, seed=5, caption_derived_rate=0.08, blind_rate=0.08,
                        preference_rate=0.06, contradiction_rate=0.04,
                        exact_duplicate_rate=0.06, near_duplicate_rate=0.06)
    out = {}
    for split in W.SPLITS:
        generate_hard(root / split, config, split=split)
        records = [json.loads(line) for line in (root / split / "llava.jsonl").open()]
        truth = [json.loads(line) for line in (root / split / "ground_truth.jsonl").open()]
        out[split] = (root / split, records, truth)
    return out


def test_every_pool_splits_into_two_disjoint_halves_that_cover_it():
    pools = [W.JUDGE_WORDINGS, W.HEDGES, W.CAPTION_KEYS, W.CAPTION_SHAPES, W.NEAR_RECIPES,
             W.COPY_EDITS, W.CONSTANT_QUESTIONS, *W.COLOR_SYNONYMS.values(),
             *W.QUESTION_WORDINGS.values(), *W.BLIND_IN_QUESTION.values()]
    for pool in pools:
        tune, heldout = W.half(pool, "tune"), W.half(pool, "heldout")
        assert not set(tune) & set(heldout)
        assert sorted(map(repr, tune + heldout)) == sorted(map(repr, pool))
        assert abs(len(tune) - len(heldout)) <= 1
    with pytest.raises(ValueError, match="split must be one of"):
        W.half(W.HEDGES, "test")


def test_the_halves_are_pinned():
    """The detectors and policy defaults were tuned on the tune halves below; an edit to a pool
    that moves an entry across would put tuned-on wording into the held-out half unnoticed.
    Change this digest only for a new held-out half, and re-measure bench/detection.py."""
    assert W.halves_digest() == "94c3bb27b0e0c6c9"


def test_same_seed_same_bytes(tmp_path, corpora):
    folder = corpora["tune"][0]
    config = DemoConfig(**json.loads((folder / "summary.json").read_text())["config"])
    generate_hard(tmp_path / "again", config, split="tune")
    assert _hashes(tmp_path / "again") == _hashes(folder)


def test_each_flaw_is_present_and_truth_lines_up(corpora):
    for split, (_, records, truth) in corpora.items():
        assert [r["id"] for r in records] == [t["example_id"] for t in truth]
        found = {f for t in truth for f in t["flaws"]}
        assert set(HARD_FLAWS) <= found, (split, set(HARD_FLAWS) - found)


def _judge_texts(records, truth) -> list[str]:
    """The judged answer of every flattened marker record (its first answer)."""
    return [next(turn["value"] for turn in record["conversations"] if turn["from"] == "gpt")
            for record, gt in zip(records, truth, strict=True)
            if "pref_flattened_marker" in gt["flaws"]]


def _fragment(template: str) -> str:
    """The longest literal piece of a judge wording (between its placeholders)."""
    pieces = template.replace("{r}", "{answer}").split("{answer}")
    return max((piece.strip() for piece in pieces), key=len)


def test_a_split_only_ever_words_flaws_from_its_own_half(corpora):
    for split, (_, records, truth) in corpora.items():
        other = "heldout" if split == "tune" else "tune"
        own = {_fragment(w) for w in W.half(W.JUDGE_WORDINGS, split)}
        foreign = {_fragment(w) for w in W.half(W.JUDGE_WORDINGS, other)}
        foreign = {f for f in foreign if not any(f in o for o in own)}
        texts = _judge_texts(records, truth)
        assert texts
        assert all(any(fragment in text for fragment in own) for text in texts)
        assert not [text for text in texts if any(f in text for f in foreign)]
        keys = {key for record in records for key in record} - {
            "id", "image", "conversations", "dataset", "license", "image_meta"}
        top_levels = {key.split(".")[0] for key in W.half(W.CAPTION_KEYS, split)}
        assert keys <= top_levels, keys - top_levels


def test_captions_hide_in_metadata_file_names_and_prompts(corpora):
    _, records, truth = corpora["heldout"]
    placements = {t["detail"]["placement"] for t in truth
                  if "caption_derived" in t["flaws"]}
    assert placements == {"metadata", "filename", "system", "prompt"}
    for record, gt in zip(records, truth, strict=True):
        if "caption_derived" in gt["flaws"] and gt["detail"]["placement"] in ("system",
                                                                              "prompt"):
            assert "blind_answer_in_question" in gt["flaws"]
        if gt["detail"] and gt["detail"].get("placement") == "filename":
            assert Path(record["image"]).name.count("_") > 3


def test_copies_keep_their_image_and_near_copies_are_re_encoded(corpora):
    folder, records, truth = corpora["tune"]
    by_id = {r["id"]: r for r in records}
    for record, gt in zip(records, truth, strict=True):
        detail = gt["detail"] or {}
        if "templated_copy" in gt["flaws"] and "copy_of" in detail:
            original = by_id[detail["copy_of"]]
            assert record["image"] == original["image"]
            assert record["conversations"] != original["conversations"]
        if "near_duplicate_image" in gt["flaws"] and "near_copy_of" in detail:
            with Image.open(folder / record["image"]) as copy, \
                    Image.open(folder / detail["near_copy_of"]) as original:
                assert copy.size[0] <= original.size[0]
            assert (folder / record["image"]).read_bytes() != \
                (folder / detail["near_copy_of"]).read_bytes()


def test_text_rows_hold_the_traps(corpora):
    _, records, _ = corpora["tune"]
    answers = " ".join(turn["value"] for r in records if "image" not in r
                       for turn in r["conversations"])
    assert "```" in answers and "$[" in answers  # code and math spans with brackets
    assert " out of " in answers and "better" in answers
    questions = [turn["value"] for r in records if "image" not in r
                 for turn in r["conversations"][1:] if turn["from"] == "human"]
    assert any(q in W.FOLLOW_UPS for q in questions)


def test_the_cli_generates_the_hard_demo_and_wants_a_split_only_with_it(tmp_path, capsys):
    assert demo_main(["generate", "--hard", "--split", "heldout", "--out",
                 str(tmp_path / "h"), "--rows", "200", "--seed", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["split"] == "heldout" and summary["records"] == 200
    assert demo_main(["generate", "--split", "tune", "--out", str(tmp_path / "e"),
                 "--rows", "50"]) == 2
    assert "--split is for the hard demo" in capsys.readouterr().err
