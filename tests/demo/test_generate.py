"""The demo world generator: determinism, counts, and that every injected flaw is really there."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo import COLORS, POSITIONS, DemoConfig, DemoConfigError, draw_shapes, generate
from demo.generate import (
    BLIND_IN_QUESTION_TEMPLATES,
    CONSTANT_PRIOR_QA,
    FLAWS,
    LLAVA_FLAWS,
    NEAR_PERTURBATIONS,
    PREFERENCE_MARKER_TEMPLATES,
    QUESTION_TEMPLATES,
    SHIFT_IOU,
    SHIFT_RADIUS,
    _ink,
    _shifted_copy,
    plan_counts,
)
from demo.shapes import COUNT_WORDS, REGIONS, caption, describe, short_answer

SMALL = DemoConfig(rows=1000, seed=3, images=150, image_size=64)
FILES = ("llava.jsonl", "sharegpt.json", "preference_dpo.json")
QTYPE_OF = {q: qtype for qtype, qs in QUESTION_TEMPLATES.items() for q in qs}


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict, list[dict], list[str]]:
    out = tmp_path_factory.mktemp("demo")
    summary = generate(out, SMALL)
    gt = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    llava_lines = (out / "llava.jsonl").read_text().splitlines()
    return out, summary, gt, llava_lines


def _by_flaw(gt: list[dict], flaw: str) -> list[dict]:
    return [g for g in gt if flaw in g["flaws"]]


def _first_qa(record: dict) -> tuple[str, str]:
    conv = record["conversations"]
    return conv[0]["value"].replace("<image>\n", ""), conv[1]["value"]


def _record(lines: list[str], g: dict) -> dict:
    return json.loads(lines[g["line"]])


def _groups(gt: list[dict], flaw: str) -> list[list[dict]]:
    groups = defaultdict(list)
    for g in _by_flaw(gt, flaw):
        groups[g["group"]].append(g)
    return list(groups.values())


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).astype(int)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path, corpus):
    out = corpus[0]
    again = tmp_path / "again"
    generate(again, SMALL)
    assert _hashes(again) == _hashes(out)

    other = tmp_path / "other"
    generate(other, DemoConfig(**{**SMALL.__dict__, "seed": 4}))
    theirs, ours = _hashes(other), _hashes(out)
    for name in (*FILES, "ground_truth.jsonl", "images/img_000000.png", "images/near_000000.jpg"):
        assert theirs[name] != ours[name], name


def test_rerun_into_same_dir_removes_stale_images(tmp_path):
    generate(tmp_path, DemoConfig(rows=50, images=12, image_size=32))
    generate(tmp_path, DemoConfig(rows=50, images=5, image_size=32, broken_rate=0.0))
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [
        f"img_{i:06d}.png" for i in range(5)
    ]


def test_rerun_into_same_dir_removes_stale_near_copies(tmp_path):
    config = DemoConfig(rows=200, images=40, image_size=32, near_duplicate_rate=0.1)
    assert generate(tmp_path, config)["images"]["near_copies"] == 7
    assert len(list((tmp_path / "images").glob("near_*"))) == 7
    generate(tmp_path, replace(config, near_duplicate_rate=0.0))
    assert not list((tmp_path / "images").glob("near_*"))


# ------------------------------------------------------------------------------ counts


def test_line_counts_match_ground_truth(corpus):
    out, summary, gt, llava_lines = corpus
    per_file = defaultdict(int)
    for g in gt:
        per_file[g["file"]] += 1
    assert per_file["llava.jsonl"] == len(llava_lines) == SMALL.rows
    assert per_file["sharegpt.json"] == len(json.loads((out / "sharegpt.json").read_text()))
    assert per_file["preference_dpo.json"] == len(
        json.loads((out / "preference_dpo.json").read_text()))
    assert per_file["sharegpt.json"] == SMALL.rows // 10
    assert per_file["preference_dpo.json"] == SMALL.rows // 20
    assert summary["ground_truth_records"] == len(gt)
    # ground truth is in file order, lines 0..n-1 per file, ids unique
    for name in FILES:
        assert [g["line"] for g in gt if g["file"] == name] == list(range(per_file[name]))
    assert len({g["example_id"] for g in gt}) == len(gt)
    assert json.loads((out / "summary.json").read_text()) == summary


def test_flaw_counts_follow_the_rates(corpus):
    _, summary, gt, _ = corpus
    planned = plan_counts(SMALL.resolved())
    n, n_image = SMALL.rows, planned["image"]
    for flaw in LLAVA_FLAWS:
        assert len(_by_flaw(gt, flaw)) == planned[flaw] == summary["flaws"][flaw], flaw
    assert all(len(g["flaws"]) <= 1 for g in gt)
    expected = {
        "caption_derived": n_image * SMALL.caption_derived_rate,
        "blind_answer_in_question": n_image * SMALL.blind_rate / 2,
        "blind_constant_prior": n_image * SMALL.blind_rate / 2,
        "pref_flattened_marker": n * SMALL.preference_rate / 2,
        "pref_flattened_plain": n * SMALL.preference_rate / 2,
        "contradictory_duplicate": n * SMALL.contradiction_rate,
        "exact_duplicate": n_image * SMALL.exact_duplicate_rate,
        "near_duplicate_image": n_image * SMALL.near_duplicate_rate,
        "broken_missing_image": n * SMALL.broken_rate / 3,
        "broken_corrupt_image": n * SMALL.broken_rate / 3,
        "broken_bad_json": n * SMALL.broken_rate / 3,
    }
    for flaw, value in expected.items():
        assert abs(len(_by_flaw(gt, flaw)) - value) <= 2, flaw
    assert sum(len(_by_flaw(gt, f)) for f in ("pref_flattened_marker", "pref_flattened_plain")
               ) == round(n * SMALL.preference_rate)
    assert summary["flaws"]["preference_pair"] == SMALL.rows // 20
    assert set(summary["flaws"]) == set(FLAWS)


@pytest.mark.parametrize(("exact", "near"), [(0.1, 0.0), (0.0, 0.07), (0.03, 0.05)])
def test_duplicate_counts_are_exact_per_rate(tmp_path, exact, near):
    config = DemoConfig(rows=400, seed=1, images=80, image_size=32, exact_duplicate_rate=exact,
                        near_duplicate_rate=near)
    summary = generate(tmp_path, config)
    gt = [json.loads(line) for line in (tmp_path / "ground_truth.jsonl").read_text().splitlines()]
    n_image = plan_counts(config)["image"]
    for flaw, rate in (("exact_duplicate", exact), ("near_duplicate_image", near)):
        expected = 2 * round(n_image * rate / 2)  # both records of every pair
        assert len(_by_flaw(gt, flaw)) == summary["flaws"][flaw] == expected, flaw
        assert len(_groups(gt, flaw)) == expected // 2
    assert summary["images"]["near_copies"] == len(list((tmp_path / "images").glob("near_*")))
    assert summary["images"]["near_copies"] == plan_counts(config)["near_duplicate_image"] // 2


def test_text_only_share(corpus):
    _, summary, gt, _ = corpus
    for name in FILES:
        rows = [g for g in gt if g["file"] == name]
        share = sum(g["modality"] == "text" for g in rows) / len(rows)
        assert share == pytest.approx(SMALL.text_only_share, abs=0.02), name
        assert summary["files"][name]["records"] == len(rows)


# ------------------------------------------------------------------------------ formats


def test_llava_format_and_clean_answers_match_truth(corpus):
    _, _, gt, lines = corpus
    checked = 0
    for g in gt:
        if g["file"] != "llava.jsonl" or "broken_bad_json" in g["flaws"]:
            continue
        record = json.loads(lines[g["line"]])
        assert record["id"] == g["example_id"]
        conv = record["conversations"]
        assert 2 <= len(conv) <= 6 and len(conv) % 2 == 0
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
        tokens = [t["value"].count("<image>") for t in conv]
        if g["modality"] == "text":
            assert "image" not in record and "caption" not in record and sum(tokens) == 0
            assert len(conv) <= 4
            continue
        assert record["image"] == g["image"]
        assert tokens[0] == 1 and sum(tokens) == 1
        assert conv[0]["value"].startswith("<image>\n")
        if g["flaws"] or g["truth"] is None:
            continue
        truth = g["truth"]
        assert record["caption"] == caption(truth)
        for q, a in zip(conv[::2], conv[1::2], strict=True):
            qtype, answer = QTYPE_OF[q["value"].replace("<image>\n", "")], a["value"]
            if qtype == "describe":
                assert answer == describe(truth)
            else:
                assert answer == short_answer(qtype, truth[qtype])
                assert re.fullmatch(r"[A-Z][a-z]+\.", answer)
            checked += 1
    assert checked > 500


def test_sharegpt_and_preference_formats(corpus):
    out, _, gt, _ = corpus
    truth_of = {(g["file"], g["line"]): g for g in gt}
    sharegpt = json.loads((out / "sharegpt.json").read_text())
    for i, row in enumerate(sharegpt):
        g = truth_of[("sharegpt.json", i)]
        assert row["id"] == g["example_id"] and g["flaws"] == []
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2)
        tokens = sum(m["content"].count("<image>") for m in row["messages"])
        if g["modality"] == "text":
            assert not row.get("images") and tokens == 0
        else:
            assert row["images"] == [g["image"]] and tokens == 1
            assert row["messages"][0]["content"].startswith("<image>")
            assert (out / g["image"]).is_file()
    prefs = json.loads((out / "preference_dpo.json").read_text())
    for i, row in enumerate(prefs):
        g = truth_of[("preference_dpo.json", i)]
        assert g["flaws"] == ["preference_pair"] and g["group"] == row["id"]
        assert row["chosen"]["from"] == row["rejected"]["from"] == "gpt"
        assert row["chosen"]["value"] != row["rejected"]["value"]
        assert [t["from"] for t in row["conversations"]] == ["human"]
        if g["modality"] == "image-text":
            assert row["images"] == [g["image"]]
            assert row["conversations"][0]["value"].startswith("<image>\n")
        else:
            assert "images" not in row


# ------------------------------------------------------------------------------ flaws


def test_caption_derived_answer_follows_wrong_caption(corpus):
    _, _, gt, lines = corpus
    rows = _by_flaw(gt, "caption_derived")
    assert rows
    for g in rows:
        record = _record(lines, g)
        attribute, value = g["detail"]["attribute"], g["detail"]["caption_value"]
        assert value != g["truth"][attribute]
        assert record["caption"] == caption({**g["truth"], attribute: value})
        assert _first_qa(record)[1] == short_answer(attribute, value)


def test_blind_rows(corpus):
    _, _, gt, lines = corpus
    in_question = _by_flaw(gt, "blind_answer_in_question")
    assert in_question
    for g in in_question:
        question, answer = _first_qa(_record(lines, g))
        word = answer.rstrip(".").lower()
        assert word in question.lower()
        attribute = g["detail"]["attribute"]
        assert answer == short_answer(attribute, g["truth"][attribute])  # correct, yet blind
        assert question.endswith(BLIND_IN_QUESTION_TEMPLATES[attribute].rsplit(". ", 1)[1])
    constant = _by_flaw(gt, "blind_constant_prior")
    assert constant
    for g in constant:
        assert _first_qa(_record(lines, g)) in CONSTANT_PRIOR_QA


def test_preference_marker_rows(corpus):
    _, _, gt, lines = corpus
    rows = _by_flaw(gt, "pref_flattened_marker")
    assert rows
    prefixes = [t.split("{")[0] for t in PREFERENCE_MARKER_TEMPLATES]
    for g in rows:
        answer = _first_qa(_record(lines, g))[1]
        assert any(answer.startswith(p) for p in prefixes), answer


@pytest.mark.parametrize("flaw", ["pref_flattened_plain", "contradictory_duplicate"])
def test_pairs_share_image_and_question_but_not_answer(corpus, flaw):
    _, _, gt, lines = corpus
    groups = defaultdict(list)
    for g in _by_flaw(gt, flaw):
        groups[g["group"]].append(g)
    assert groups
    for members in groups.values():
        assert len(members) == 2
        a, b = (_record(lines, g) for g in members)
        assert a["id"] != b["id"] and a["image"] == b["image"]
        assert _first_qa(a)[0] == _first_qa(b)[0]
        assert _first_qa(a)[1] != _first_qa(b)[1]
        if flaw == "pref_flattened_plain":
            assert sorted(g["pref_role"] for g in members) == ["chosen", "rejected"]
        else:
            assert sorted(g["detail"]["correct"] for g in members) == [False, True]


def test_only_named_pairs_contradict(corpus):
    """No (image, question) key outside a named group has two different answers."""
    _, _, gt, lines = corpus
    answers = defaultdict(set)
    for g in gt:
        if g["file"] != "llava.jsonl" or g["modality"] != "image-text" or \
                "broken_bad_json" in g["flaws"]:
            continue
        conv = _record(lines, g)["conversations"]
        for q, a in zip(conv[::2], conv[1::2], strict=True):
            answers[(g["image"], q["value"].replace("<image>\n", ""))].add((a["value"], g["group"]))
    for key, values in answers.items():
        if len({a for a, _ in values}) > 1:
            assert len({grp for _, grp in values}) == 1 and None not in {grp for _, grp in values}, key


def test_exact_duplicates_repeat_an_earlier_clean_record_under_a_new_id(corpus):
    _, _, gt, lines = corpus
    groups = _groups(gt, "exact_duplicate")
    assert groups
    for members in groups:
        assert len(members) == 2 and all(g["flaws"] == ["exact_duplicate"] for g in members)
        original, copy = sorted(members, key=lambda g: g["line"])
        assert original["group"] == copy["group"] and original["group"].startswith("dup-")
        assert original["detail"] is None
        assert copy["detail"] == {"copy_of": original["example_id"]}
        assert copy["image"] == original["image"] and copy["truth"] == original["truth"]
        a, b = _record(lines, original), _record(lines, copy)
        assert (a["id"], b["id"]) == (original["example_id"], copy["example_id"])
        assert {**a, "id": None} == {**b, "id": None}
        # Byte-identical lines but for the id; the original is an ordinary clean record.
        assert lines[copy["line"]].replace(b["id"], a["id"]) == lines[original["line"]]
        assert a["caption"] == caption(original["truth"])
        conv = a["conversations"]
        for q, ans in zip(conv[::2], conv[1::2], strict=True):
            qtype = QTYPE_OF[q["value"].replace("<image>\n", "")]
            truth = original["truth"]
            assert ans["value"] == (describe(truth) if qtype == "describe"
                                    else short_answer(qtype, truth[qtype]))


def test_near_duplicates_are_new_files_with_nearly_the_same_pixels(corpus):
    out, _, gt, lines = corpus
    groups = _groups(gt, "near_duplicate_image")
    assert groups
    uses = defaultdict(int)
    for g in gt:
        uses[g["image"]] += 1
    palette = {name: np.array(rgb) for name, rgb in COLORS.items()}
    perturbations = set()
    for members in groups:
        assert len(members) == 2
        assert all(g["flaws"] == ["near_duplicate_image"] for g in members)
        original, copy = sorted(members, key=lambda g: g["line"])
        assert original["group"] == copy["group"] and original["group"].startswith("neardup-")
        assert original["detail"] is None and copy["detail"]["near_copy_of"] == original["image"]
        perturbations.add(copy["detail"]["perturbation"].split()[0])
        assert original["image"].startswith("images/img_")
        assert re.fullmatch(r"images/near_\d{6}\.(jpg|png)", copy["image"])
        # The original's image belongs to that one record (in all three files).
        assert uses[original["image"]] == 1 and uses[copy["image"]] == 1
        src, near = out / original["image"], out / copy["image"]
        assert _sha(src) != _sha(near)
        with Image.open(near) as img:
            img.load()
            assert img.format == ("JPEG" if near.suffix == ".jpg" else "PNG")
            assert img.size == (SMALL.image_size, SMALL.image_size)
        a, b = _pixels(src), _pixels(near)
        assert 0 < np.abs(a - b).mean() < 8
        # The pixels still show the truth: its color and no other, on a white background.
        truth = copy["truth"]
        assert truth == original["truth"]
        flat = b.reshape(-1, 3)
        for name, rgb in palette.items():
            near_color = int((np.abs(flat - rgb).sum(axis=1) < 40).sum())
            assert (near_color > 0) == (name == truth["color"]), (copy["image"], name)
        assert (np.abs(flat - 255).sum(axis=1) < 20).mean() > 0.5
        # Same conversation and caption: only the image file differs.
        ra, rb = _record(lines, original), _record(lines, copy)
        assert {**ra, "id": None, "image": None} == {**rb, "id": None, "image": None}
        assert rb["image"] == copy["image"] and ra["caption"] == caption(truth)
    assert perturbations == set(NEAR_PERTURBATIONS)


def test_no_unintended_exact_duplicates(corpus):
    """Same image bytes and conversation (without <image> tokens) in two records of any of the
    three files happens only inside an exact_duplicate group."""
    out, _, gt, lines = corpus
    sharegpt = json.loads((out / "sharegpt.json").read_text())
    prefs = json.loads((out / "preference_dpo.json").read_text())
    sha = {ref: _sha(out / ref) for ref in {g["image"] for g in gt if g["image"]}
           if (out / ref).is_file()}

    def key(ref: str | None, turns: list[tuple[str, str]]) -> tuple:
        return sha.get(ref, ref), tuple((q.replace("<image>", "").strip(), a) for q, a in turns)

    seen = defaultdict(list)
    for g in gt:
        if "broken_bad_json" in g["flaws"]:
            continue
        if g["file"] == "llava.jsonl":
            conv = _record(lines, g)["conversations"]
            turns = [(q["value"], a["value"]) for q, a in zip(conv[::2], conv[1::2], strict=True)]
            seen[key(g["image"], turns)].append(g)
        elif g["file"] == "sharegpt.json":
            msgs = sharegpt[g["line"]]["messages"]
            turns = [(q["content"], a["content"]) for q, a in zip(msgs[::2], msgs[1::2],
                                                                   strict=True)]
            seen[key(g["image"], turns)].append(g)
        else:
            row = prefs[g["line"]]
            for role in ("chosen", "rejected"):
                seen[key(g["image"], [(row["conversations"][0]["value"], row[role]["value"])])
                     ].append(g)
    repeated = [members for members in seen.values() if len(members) > 1]
    assert len(repeated) == len(_groups(gt, "exact_duplicate"))
    for members in repeated:
        assert len(members) == 2 and {g["group"] for g in members} != {None}
        assert all(g["flaws"] == ["exact_duplicate"] for g in members)
        assert len({g["group"] for g in members}) == 1
    # No two pool images are the same image.
    pool = sorted((out / "images").glob("img_*.png"))
    assert len({_sha(p) for p in pool}) == len(pool)


def test_broken_rows(corpus):
    out, _, gt, lines = corpus
    bad = {g["line"] for g in _by_flaw(gt, "broken_bad_json")}
    assert bad
    for i, line in enumerate(lines):
        if i in bad:
            with pytest.raises(json.JSONDecodeError):
                json.loads(line)
            assert f'"id": "shapes-{i:06d}"' in line
        else:
            json.loads(line)
    missing = _by_flaw(gt, "broken_missing_image")
    assert missing
    for g in missing:
        assert _record(lines, g)["image"] == g["image"] and not (out / g["image"]).exists()
    corrupt = _by_flaw(gt, "broken_corrupt_image")
    assert corrupt
    for g in corrupt:
        path = out / _record(lines, g)["image"]
        assert path.is_file() and path.name.startswith("corrupt_")
        with pytest.raises(Exception):  # noqa: B017 - either open or load must fail
            with Image.open(path) as img:
                img.load()


# ------------------------------------------------------------------------------ pixels


def test_images_show_exactly_the_truth_color(corpus):
    out, _, gt, _ = corpus
    seen = {}
    for g in gt:
        if g["truth"] is not None and g["image"] not in seen:
            seen[g["image"]] = g["truth"]
    palette = {name: np.array(rgb) for name, rgb in COLORS.items()}
    for ref, truth in list(seen.items())[:12]:
        pixels = np.asarray(Image.open(out / ref).convert("RGB")).reshape(-1, 3).astype(int)
        assert Image.open(out / ref).size == (SMALL.image_size, SMALL.image_size)
        for name, rgb in palette.items():
            near = int((np.abs(pixels - rgb).sum(axis=1) < 40).sum())
            assert (near > 0) == (name == truth["color"]), (ref, name)
        white = (pixels == 255).all(axis=1)
        assert white.mean() > 0.5


@pytest.mark.parametrize("position", POSITIONS)
def test_drawn_shapes_sit_in_their_region(position):
    size = 128
    x0, y0, x1, y1 = (v * size for v in REGIONS[position])
    for count in COUNT_WORDS:
        img = draw_shapes("blue", "triangle", count, position, "large", size)
        ys, xs = np.nonzero((np.asarray(img) != 255).any(axis=2))
        assert x0 - 1 <= xs.min() and xs.max() <= x1 + 1
        assert y0 - 1 <= ys.min() and ys.max() <= y1 + 1


def test_draw_shapes_rejects_unknown_vocabulary():
    with pytest.raises(ValueError, match="color"):
        draw_shapes("pink", "circle", 1, "left", "small", 64)


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"blind_rate": 1.5}, "blind_rate"),
        ({"caption_derived_rate": -0.1}, "caption_derived_rate"),
        ({"text_only_share": float("nan")}, "text_only_share"),
        ({"rows": -1}, "rows"),
        ({"images": 0}, "images"),
        ({"image_size": 8}, "image_size"),
        ({"text_only_share": 0.8, "preference_rate": 0.3}, "preference_rate"),
        ({"exact_duplicate_rate": 1.2}, "exact_duplicate_rate"),
        ({"near_duplicate_rate": -0.1}, "near_duplicate_rate"),
        ({"text_only_share": 0.85, "near_duplicate_rate": 0.2}, "near_duplicate_rate"),
        ({"rows": 2000, "images": 14}, "images"),
    ],
)
def test_invalid_config_names_the_field(tmp_path, kwargs, field):
    with pytest.raises(ValueError, match=field) as info:
        generate(tmp_path, DemoConfig(**kwargs))
    assert isinstance(info.value, DemoConfigError)


def _moved(image: Image.Image, dy: int, dx: int) -> Image.Image:
    """``image`` moved by (dy, dx) px on a white background."""
    canvas = Image.new("RGB", image.size, "white")
    canvas.paste(image, (dx, dy))
    return canvas


def _shifted_copy_by_definition(a: np.ndarray, b: np.ndarray) -> bool:
    """The pool's no-repeat rule spelled out on bool masks: some shift within the radius makes
    the ink of both, cropped to the window they share, overlap more than SHIFT_IOU."""
    size = a.shape[0]
    for dy in range(-SHIFT_RADIUS, SHIFT_RADIUS + 1):
        for dx in range(-SHIFT_RADIUS, SHIFT_RADIUS + 1):
            crop_a = a[max(0, dy):size + min(0, dy), max(0, dx):size + min(0, dx)]
            crop_b = b[max(0, -dy):size + min(0, -dy), max(0, -dx):size + min(0, -dx)]
            union = (crop_a | crop_b).sum()
            if union and (crop_a & crop_b).sum() / union > SHIFT_IOU:
                return True
    return False


def test_shifted_copy_test_finds_moved_pictures_and_agrees_with_its_definition():
    picture = draw_shapes("red", "circle", 2, "center", "large", 64)
    assert _shifted_copy(_ink(_moved(picture, 3, -4)), [_ink(picture)])
    assert not _shifted_copy(_ink(_moved(picture, 0, 9)), [_ink(picture)])
    assert not _shifted_copy(_ink(picture), [])

    def mask(image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("L")) < 250

    rng = random.Random(1)
    others = [draw_shapes("blue", "square", 1, "center", "large", 64, rng=rng) for _ in range(6)]
    outcomes = []
    for candidate in [*others[:3], _moved(others[3], -2, 1), _moved(others[4], 5, 0)]:
        expected = [_shifted_copy_by_definition(mask(candidate), mask(other)) for other in others]
        assert _shifted_copy(_ink(candidate), [_ink(o) for o in others]) == any(expected)
        for other, hit in zip(others, expected, strict=True):
            assert _shifted_copy(_ink(candidate), [_ink(other)]) == hit
        outcomes += expected
    assert True in outcomes and False in outcomes  # both answers were really compared


def test_a_small_pool_never_writes_a_record_without_a_dialog(tmp_path):
    """bench/ingest's corpus (200k rows on 2,000 images) had 112k records with empty dialogs:
    once an image's facts were all stated, a retry returned nothing and the record was written
    with no conversation (the ground truth called it clean)."""
    generate(tmp_path, DemoConfig(rows=600, images=6, seed=1, broken_rate=0.0, image_size=16,
                                  sharegpt_rows=0, preference_pairs=0))
    records = [json.loads(line) for line in (tmp_path / "llava.jsonl").read_text().splitlines()]
    assert len(records) == 600
    assert [record["id"] for record in records if not record["conversations"]] == []
