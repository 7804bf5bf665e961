"""The hard demo: the same flaws as the easy demo, worded the way real data words them.

``generate_hard(out_dir, DemoConfig(...), split="tune"|"heldout")`` writes ``llava.jsonl``,
``ground_truth.jsonl`` and ``summary.json`` (same shapes as ``generate.py``'s) over the same
kind of image pool. Every wording is drawn from the ``split`` half of a pool in ``wording.py``:

- captions use synonyms and sentence shapes, and hide under varied metadata keys (nested, in
  lists), in descriptive image file names, or (flawed rows only) in the system turn or the
  prompt; 70% of clean image rows carry a correct caption, every caption-derived row a wrong one;
- questions and short answers take many shapes; 20% of questions ask for a prose description
  (LLaVA's detail answers), and caption-derived prose is written from the wrong caption;
- blind questions state their answer in other words; constant-answer questions (the background
  is always white) come in a few wordings, each asked about three times;
- flattened preference rows carry judge wordings and ratings; rejected answers hedge in many
  ways; contradicting labels take different answer shapes;
- duplicates are exact copies, templated copies (the dialog lightly edited, same image file) and
  near copies re-encoded by a recipe (JPEG 60-95 with 4:2:0 chroma, WebP, resizing to 0.8-1.0,
  a few pixels cropped);
- text rows include traps for careless detectors: code with ``[A]`` and ``A > B``, quiz scores
  and fractions, "which is better" questions, and long dialogs that all say "continue".

No record is broken (quarantine is the easy demo's concern). Ground-truth flaw names are the
easy demo's plus ``templated_copy``; a caption-derived row whose caption sits in its prompt or
system turn also carries ``blind_answer_in_question`` (the text it trains on gives the answer).
"""

from __future__ import annotations

import io
import json
import random
import re
from collections import Counter
from dataclasses import fields, replace
from pathlib import Path

from PIL import Image

from demo import wording as W
from demo.generate import (
    GROUND_TRUTH_FILE,
    LLAVA_FILE,
    SUMMARY_FILE,
    DemoConfig,
    _gt,
    _image_ref,
    draw_pool,
    plan_counts,
)
from demo.shapes import COLORS, COUNT_WORDS, COUNTS, POSITION_PHRASES, POSITIONS, SHAPES
from integrity.ingest.images import load_rgb

HARD_FLAWS: tuple[str, ...] = (
    "caption_derived", "blind_answer_in_question", "blind_constant_prior",
    "pref_flattened_marker", "pref_flattened_plain", "contradictory_duplicate",
    "exact_duplicate", "templated_copy", "near_duplicate_image",
)
ATTRIBUTES: tuple[str, ...] = ("color", "shape", "count", "position")
VALUES: dict[str, tuple] = {"color": tuple(COLORS), "shape": SHAPES, "count": COUNTS,
                            "position": POSITIONS}
CAPTIONED_SHARE = 0.7    # clean image rows that carry a (correct) caption somewhere
FILENAME_SHARE = 0.2     # ... of those, in the image's file name rather than metadata
DESCRIBE_SHARE = 0.2     # questions that ask for a prose description
CAPTION_DERIVED_PROSE = 0.4
CONSTANT_REPEATS = 3     # each constant-answer wording is asked about this often
# Two distinct pool images of one truth overlap by at most this much under any shift of up to
# DISTINCT_SHIFT_PX: real photos are never a few pixels apart unless one is a copy, and here
# only the near-copy recipes make copies.
DISTINCT_SHIFT_PX = 8
DISTINCT_IOU = 0.5
# Where a caption-derived row keeps its (wrong) caption.
DERIVED_PLACEMENTS = (("metadata", 0.6), ("filename", 0.15), ("system", 0.1), ("prompt", 0.15))


class _Words:
    """The ``split`` half of every pool, and the phrasings built from them."""

    def __init__(self, split: W.Split, rng: random.Random) -> None:
        self.rng = rng
        self.split = split
        h = lambda pool: W.half(pool, split)  # noqa: E731
        self.colors = {k: ("", *h(v)) for k, v in W.COLOR_SYNONYMS.items()}  # "" = own word
        self.shapes = {k: ((k, k + "s"), *h(v)) for k, v in W.SHAPE_SYNONYMS.items()}
        self.counts = {k: (COUNT_WORDS[k], *h(v)) for k, v in W.COUNT_SYNONYMS.items()}
        self.positions = {k: (POSITION_PHRASES[k], *h(v)) for k, v in W.POSITION_SYNONYMS.items()}
        self.sizes = {k: (k, *h(v)) for k, v in W.SIZE_SYNONYMS.items()}
        self.caption_shapes, self.caption_keys = h(W.CAPTION_SHAPES), h(W.CAPTION_KEYS)
        self.questions = {k: h(v) for k, v in W.QUESTION_WORDINGS.items()}
        self.describe = h(W.DESCRIBE_WORDINGS)
        self.answers = {k: h(v) for k, v in W.ANSWER_SHAPES.items()}
        self.prose_shapes = h(W.PROSE_SHAPES)
        self.blind = {k: h(v) for k, v in W.BLIND_IN_QUESTION.items()}
        self.constant = h(W.CONSTANT_QUESTIONS)
        self.judges, self.hedges = h(W.JUDGE_WORDINGS), h(W.HEDGES)
        self.recipes, self.edits = h(W.NEAR_RECIPES), h(W.COPY_EDITS)

    def caption(self, attrs: dict) -> str:
        """A caption of ``attrs`` in a random sentence shape, each value maybe a synonym."""
        rng = self.rng
        color = rng.choice(self.colors[attrs["color"]]) or attrs["color"]
        plural = attrs["count"] != 1
        shape = rng.choice(self.shapes[attrs["shape"]])[1 if plural else 0]
        count = rng.choice(self.counts[attrs["count"]])
        return rng.choice(self.caption_shapes).format(
            count=count, size=rng.choice(self.sizes[attrs["size"]]), color=color, shapes=shape,
            position=rng.choice(self.positions[attrs["position"]]))

    def question(self, attribute: str) -> str:
        return self.rng.choice(self.describe if attribute == "describe"
                               else self.questions[attribute])

    def short_answer(self, attribute: str, value) -> str:
        word = COUNT_WORDS[value] if attribute == "count" else str(value)
        phrase = POSITION_PHRASES.get(word, word)
        shape = self.rng.choice(self.answers[attribute])
        return _fill(shape, value=word, plural=word + "s", phrase=phrase)

    def prose(self, attrs: dict) -> str:
        plural = attrs["count"] != 1
        return _fill(self.rng.choice(self.prose_shapes), count=COUNT_WORDS[attrs["count"]],
                     size=attrs["size"], color=attrs["color"],
                     shapes=attrs["shape"] + ("s" if plural else ""),
                     phrase=POSITION_PHRASES[attrs["position"]], be="are" if plural else "is")

    def answer(self, attribute: str, attrs: dict) -> str:
        return self.prose(attrs) if attribute == "describe" \
            else self.short_answer(attribute, attrs[attribute])

    def blind_question(self, attribute: str, truth: dict) -> str:
        rng, value = self.rng, truth[attribute]
        said = ""
        if attribute == "color":
            said = rng.choice(self.colors[value]) or value
        elif attribute == "count":
            said = rng.choice((COUNT_WORDS[value], str(value)))
        return rng.choice(self.blind[attribute]).format(
            said=said, said_plural=rng.choice(self.shapes[truth["shape"]])[1],
            said_phrase=rng.choice(self.positions[truth["position"]]))

    def hedge(self, wrong_word: str) -> str:
        return _fill(self.rng.choice(self.hedges), value=wrong_word)

    def judged(self, answer: str) -> str:
        return self.rng.choice(self.judges).format(answer=answer, r=self.rng.randint(3, 5))


def _fill(template: str, **values: str) -> str:
    """``template`` with ``{name}`` -> value and ``{Name}`` -> Value (first letter capital)."""
    capitals = {key[0].upper() + key[1:]: value[:1].upper() + value[1:]
                for key, value in values.items()}
    return template.format(**values, **capitals)


def _wrong(attribute: str, value, rng: random.Random):
    return rng.choice([v for v in VALUES[attribute] if v != value])


def _set_path(record: dict, path: str, value: str) -> None:
    """Put ``value`` at a dotted ``path`` of ``record`` (digits index lists)."""
    parts = path.split(".")
    node: dict | list = record
    for part, following in zip(parts, [*parts[1:], None], strict=True):
        key: int | str = int(part) if part.isdigit() else part
        if following is None:
            if isinstance(node, list):
                node.append(value)
            else:
                node[key] = value
            return
        child = [] if following.isdigit() else {}
        if isinstance(node, list):
            node.append(child)
        else:
            node = node.setdefault(key, child)
            continue
        node = child


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:80]


class _HardWorld:
    """The image pool, which (image, attribute) facts rows already state, and the records."""

    def __init__(self, pool: list[dict], words: _Words, images_dir: Path) -> None:
        self.pool, self.words, self.rng = pool, words, words.rng
        self.images_dir = images_dir
        self.queue: list[int] = []
        self.reserved: set[int] = set()
        self.stated: dict[str, set[str]] = {}  # image ref -> attributes some row asks about
        self.conversations: set[str] = set()
        self.copies = 0
        self.traps: Counter = Counter()

    def next_image(self) -> tuple[str, dict]:
        if not self.queue:
            self.queue = [i for i in range(len(self.pool)) if i not in self.reserved]
            self.rng.shuffle(self.queue)
        index = self.queue.pop()
        return _image_ref(index), self.pool[index]

    def free_attributes(self, ref: str) -> list[str]:
        """Attributes no row asks about on ``ref`` yet (describe states them all)."""
        stated = self.stated.get(ref, set())
        if "describe" in stated:
            return []
        free = [a for a in ATTRIBUTES if a not in stated]
        return free + (["describe"] if not stated else [])

    def image_with(self, attributes: int = 1) -> tuple[str, dict, list[str]]:
        for _ in range(200):
            ref, truth = self.next_image()
            free = self.free_attributes(ref)
            if len(free) >= attributes:
                return ref, truth, free
        raise RuntimeError("the image pool is too small for this many rows: raise images")

    def state(self, ref: str, attributes: list[str]) -> None:
        self.stated.setdefault(ref, set()).update(attributes)

    def captioned_ref(self, ref: str, caption: str) -> str:
        """A copy of the image at ``ref`` named after ``caption`` (same bytes, new name)."""
        self.copies += 1
        name = f"{_slug(caption)}_{self.copies:06d}.png"
        (self.images_dir / name).write_bytes((self.images_dir / Path(ref).name).read_bytes())
        return f"images/{name}"

    def fresh(self, record: dict) -> bool:
        key = json.dumps(record.get("conversations"), sort_keys=True) + str(record.get("image"))
        if key in self.conversations:
            return False
        self.conversations.add(key)
        return True


def _record(rid: str, image: str | None, qas: list[tuple[str, str]], *,
            system: str | None = None, prompt_prefix: str = "") -> dict:
    conversations = [{"from": "system", "value": system}] if system else []
    for i, (question, answer) in enumerate(qas):
        if i == 0 and image is not None:
            question = f"{prompt_prefix}<image>\n{question}"
        conversations += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    record: dict = {"id": rid}
    if image is not None:
        record["image"] = image
    record["conversations"] = conversations
    return record


def _with_metadata(record: dict, rng: random.Random, *, caption: str | None = None,
                   key: str | None = None) -> dict:
    """Benign metadata most real records carry, and the caption under ``key`` when given."""
    if rng.random() < 0.6:
        record["dataset"] = rng.choice(("shapes-hard", "synthetic-v2", "crawl-2026-11"))
        record["license"] = rng.choice(("CC-BY-4.0", "CC0-1.0", "MIT"))
    if rng.random() < 0.3:
        record["image_meta"] = {"width": 128, "height": 128,
                                "url": f"https://example.org/{rng.randrange(10**6)}.png"}
    if caption is not None:
        _set_path(record, key, caption)
    return record


def _clean_image_record(world: _HardWorld, rid: str) -> tuple[dict, dict, list]:
    """A clean record: 1-3 questions about facts no other row states of its image."""
    rng, words = world.rng, world.words
    k = rng.randint(1, 3)
    ref, truth, free = world.image_with()
    attributes = []
    if "describe" in free and rng.random() < DESCRIBE_SHARE:
        attributes = ["describe"]
    else:
        attributes = rng.sample([a for a in free if a != "describe"],
                                min(k, len([a for a in free if a != "describe"])))
    world.state(ref, attributes)
    qas = [(words.question(a), words.answer(a, truth)) for a in attributes]
    caption = key = None
    image = ref
    if rng.random() < CAPTIONED_SHARE:
        caption = words.caption(truth)
        if rng.random() < FILENAME_SHARE:
            image = world.captioned_ref(ref, caption)
            caption = None
        else:
            key = rng.choice(words.caption_keys)
    record = _with_metadata(_record(rid, image, qas), rng, caption=caption, key=key)
    return record, truth, attributes


def _story(rng: random.Random) -> str:
    return " ".join(f"{rng.choice(W.STORY_SUBJECTS)} {rng.choice(W.STORY_VERBS)} "
                    f"{rng.choice(W.STORY_OBJECTS)} {rng.choice(W.STORY_TIMES)}."
                    for _ in range(rng.randint(2, 3)))


def _filled(template: str, slots: dict) -> str:
    return template.format(**slots)


TRAP_USES = 1  # each trap template is used once: two fillings of one would be templated copies


def _text_record(world: _HardWorld, rid: str) -> dict:
    """A clean text-only record: arithmetic, a story told over several turns that say
    "continue", or a trap (code with brackets and comparisons, quiz scores, "which is better")."""
    rng = world.rng
    for _ in range(50):
        kind = rng.random()
        traps = [t for t in (*W.CODE_ANSWERS, *W.LOOKALIKE_QA) if world.traps[t] < TRAP_USES]
        if kind < 0.1 and traps:
            trap = rng.choice(traps)
            world.traps[trap] += 1
            x, x2 = rng.sample(W.VARIABLES, 2)
            slots = {"X": rng.choice("ABCDXYZ"), "Y": rng.choice("PQRUVW"), "x": x, "x2": x2,
                     "n": rng.randint(2, 9), "m": rng.randint(10, 99),
                     "name": rng.choice(W.NAMES)}
            qas = [(_filled(trap[0], slots), _filled(trap[1], slots))]
        elif kind < 0.85:
            a, b = sorted((rng.randint(2, 99), rng.randint(2, 99)), reverse=True)
            op, value = rng.choice((("plus", a + b), ("times", a * b), ("minus", a - b)))
            qas = [(f"What is {a} {op} {b}?", f"{value}.")]
        else:
            qas = [(rng.choice(W.STORY_OPENINGS), _story(rng))]
            for _ in range(rng.randint(1, 3)):
                qas.append((rng.choice(W.FOLLOW_UPS), _story(rng)))
        record = _with_metadata(_record(rid, None, qas), rng)
        if world.fresh(record):
            return record
    return record


def _edited(record: dict, edits: list[str], rid: str) -> dict:
    """``record`` under a new id with its dialog lightly edited (templated copy)."""
    conversations = []
    for turn in record["conversations"]:
        value = turn["value"]
        human = turn["from"] == "human"
        for edit in edits:
            kind, _, argument = edit.partition(":")
            if kind == "prefix" and human:
                value = value.replace("<image>\n", "<image>\n" + argument, 1) \
                    if "<image>\n" in value else argument + value
            elif kind == "suffix" and human:
                value = value + argument
            elif kind == "lower" and human:
                value = value.replace("<image>", "\0").lower().replace("\0", "<image>")
            elif kind == "strip_punctuation":
                value = re.sub(r"[?.!,]", "", value)
            elif kind == "answer_lower" and not human:
                value = value.lower()
            elif kind == "swap" and human:
                old, new = argument.split(">")
                value = value.replace("<image>", "\0").replace(old, new).replace("\0", "<image>")
        conversations.append({**turn, "value": value})
    return {**record, "id": rid, "conversations": conversations}


def _near_copy(source: Path, dest_dir: Path, k: int, recipe: tuple) -> tuple[str, str]:
    """Write a re-encoded copy of ``source`` by ``recipe``; return (ref, what was done)."""
    fmt, quality, scale, crop = recipe
    img = load_rgb(str(source))
    side = img.width
    if crop:
        img = img.crop((crop, crop, side - crop, side - crop)).resize((side, side),
                                                                       Image.BICUBIC)
    if scale != 1.0:
        img = img.resize((round(side * scale), round(side * scale)), Image.BICUBIC)
    buffer = io.BytesIO()
    ext = {"JPEG": "jpg", "WEBP": "webp", "PNG": "png"}[fmt]
    options = {"quality": quality, "subsampling": 2} if fmt == "JPEG" else \
        ({"quality": quality} if fmt == "WEBP" else {})
    img.save(buffer, format=fmt, **options)
    name = f"near_{k:06d}.{ext}"
    (dest_dir / name).write_bytes(buffer.getvalue())
    return f"images/{name}", f"{fmt} q{quality} x{scale} crop {crop}px"


def generate_hard(out_dir: str | Path, config: DemoConfig, *, split: W.Split) -> dict:
    """Write the hard corpus for ``split`` to ``out_dir``; return ``summary.json``'s dict."""
    if split not in W.SPLITS:
        raise ValueError(f"split must be one of {W.SPLITS}, got {split!r}")
    cfg = replace(config, broken_rate=0.0).resolved()
    counts = plan_counts(cfg)
    out = Path(out_dir)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    for stale in images_dir.glob("*"):
        stale.unlink()
    pool = draw_pool(cfg, images_dir, shift_radius=DISTINCT_SHIFT_PX, shift_iou=DISTINCT_IOU)
    rng = random.Random(f"shapes-hard/{cfg.seed}/{split}/rows")
    words = _Words(split, rng)
    world = _HardWorld(pool, words, images_dir)

    copies = counts["exact_duplicate"] // 2
    kinds = {"caption_derived": counts["caption_derived"],
             "blind_answer_in_question": counts["blind_answer_in_question"],
             "blind_constant_prior": counts["blind_constant_prior"],
             "pref_flattened_marker": counts["pref_flattened_marker"]}
    slots: list[tuple[str, dict]] = [("text", {})] * counts["text"]
    for kind, n in kinds.items():
        slots += [(kind, {"k": k}) for k in range(n)]
    for kind, prefix in (("pref_flattened_plain", "prefplain"),
                         ("contradictory_duplicate", "contra")):
        for g in range(counts[kind] // 2):
            slots += [(kind, {"group": f"{prefix}-{g:04d}", "member": m}) for m in (0, 1)]
    for g in range(copies):  # half exact copies, half templated copies
        kind = "exact_duplicate" if g % 2 == 0 else "templated_copy"
        slots += [(kind, {"group": f"dup-{g:04d}", "k": g})] * 2
    for g in range(counts["near_duplicate_image"] // 2):
        slots += [("near_duplicate_image", {"group": f"neardup-{g:04d}", "k": g})] * 2
    slots += [("clean", {})] * (cfg.rows - len(slots))
    rng.shuffle(slots)
    near_originals = [i for i in range(len(pool))]
    rng.shuffle(near_originals)
    world.reserved = set(near_originals[: counts["near_duplicate_image"] // 2])
    reserved = sorted(world.reserved)

    n_constant = counts["blind_constant_prior"]
    constant_plan = [(wordings[j], answer) for wordings, answer in words.constant
                     for j in range(len(wordings))]
    rng.shuffle(constant_plan)
    constant_plan = constant_plan[: max(1, -(-n_constant // CONSTANT_REPEATS))]

    lines, gts = [], []
    groups: dict[str, tuple] = {}
    for line, (kind, payload) in enumerate(slots):
        rid = f"hard-{line:06d}"
        group = payload.get("group")
        if kind == "text":
            record, gt = _text_record(world, rid), _gt(LLAVA_FILE, line, rid, None, None, [])
        elif kind == "clean":
            record, truth, _ = _clean_image_record(world, rid)
            gt = _gt(LLAVA_FILE, line, rid, record["image"], truth, [])
        elif kind in ("exact_duplicate", "templated_copy", "near_duplicate_image"):
            if group in groups:
                original, truth = groups[group]
                detail = {"copy_of": original["id"]}
                if kind == "exact_duplicate":
                    record = {**original, "id": rid}
                elif kind == "templated_copy":
                    for _ in range(20):  # edits that change nothing would make an exact copy
                        edits = rng.sample(words.edits, rng.randint(1, 2))
                        record = _edited(original, edits, rid)
                        if record["conversations"] != original["conversations"]:
                            break
                    detail["edits"] = edits
                else:
                    ref, what = _near_copy(images_dir / Path(original["image"]).name, images_dir,
                                           payload["k"], rng.choice(words.recipes))
                    record = {**original, "id": rid, "image": ref}
                    detail = {"near_copy_of": original["image"], "perturbation": what}
            else:
                if kind == "near_duplicate_image":  # an image no other record uses
                    index = reserved[payload["k"]]
                    world.queue, saved = [index], world.queue
                    record, truth, _ = _clean_image_record(world, rid)
                    world.queue = saved
                    record["image"] = _image_ref(index)  # never a renamed copy
                else:
                    record, truth, _ = _clean_image_record(world, rid)
                groups[group] = (record, truth)
                detail = None
            gt = _gt(LLAVA_FILE, line, rid, record["image"], truth, [kind], group=group,
                     detail=detail)
        elif kind in ("pref_flattened_plain", "contradictory_duplicate"):
            if group not in groups:
                ref, truth, free = world.image_with()
                attribute = rng.choice([a for a in free if a != "describe"] or ATTRIBUTES)
                world.state(ref, [attribute])
                groups[group] = (ref, truth, attribute, words.question(attribute))
            ref, truth, attribute, question = groups[group]
            value = truth[attribute]
            role = None
            if kind == "pref_flattened_plain":
                role = ("chosen", "rejected")[payload["member"]]
                wrong = _wrong(attribute, value, rng)
                word = COUNT_WORDS[wrong] if attribute == "count" else \
                    POSITION_PHRASES.get(wrong, str(wrong))
                answer = words.short_answer(attribute, value) if role == "chosen" \
                    else words.hedge(word)
                detail = {"attribute": attribute}
            else:
                correct = payload["member"] == 0
                answer = words.short_answer(attribute, value if correct
                                            else _wrong(attribute, value, rng))
                detail = {"attribute": attribute, "correct": correct}
            record = _with_metadata(_record(rid, ref, [(question, answer)]), rng)
            gt = _gt(LLAVA_FILE, line, rid, ref, truth, [kind], group=group, pref_role=role,
                     detail=detail)
        else:
            record, truth, flaws, detail = _flawed(world, kind, payload, constant_plan)
            gt = _gt(LLAVA_FILE, line, rid, record["image"], truth, flaws, detail=detail)
            record["id"] = rid
        lines.append(json.dumps(record))
        gts.append(gt)

    (out / LLAVA_FILE).write_text("".join(f"{s}\n" for s in lines), encoding="utf-8")
    (out / GROUND_TRUTH_FILE).write_text("".join(json.dumps(g) + "\n" for g in gts),
                                         encoding="utf-8")
    flaws = Counter(f for g in gts for f in g["flaws"])
    summary = {
        "config": {f.name: getattr(cfg, f.name) for f in fields(cfg)},
        "hard": True, "split": split,
        "records": len(gts),
        "text": sum(g["modality"] == "text" for g in gts),
        "flaws": {f: flaws[f] for f in HARD_FLAWS},
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _flawed(world: _HardWorld, kind: str, payload: dict,
            constant_plan: list) -> tuple[dict, dict, list[str], dict]:
    """(record, truth, flaws, detail) of a single-record flaw."""
    rng, words = world.rng, world.words
    ref, truth, free = world.image_with()
    extra: list[tuple[str, str]] = []
    if kind == "caption_derived":
        prose = rng.random() < CAPTION_DERIVED_PROSE and "describe" in free
        attribute = rng.choice(ATTRIBUTES) if prose else \
            rng.choice([a for a in free if a != "describe"])
        wrong = dict(truth, **{attribute: _wrong(attribute, truth[attribute], rng)})
        asked = "describe" if prose else attribute
        world.state(ref, [asked])
        qa = (words.question(asked), words.answer(asked, wrong))
        caption = words.caption(wrong)
        placement = rng.choices([p for p, _ in DERIVED_PLACEMENTS],
                                [w for _, w in DERIVED_PLACEMENTS])[0]
        flaws = ["caption_derived"]
        detail = {"attribute": attribute, "caption_value": wrong[attribute],
                  "placement": placement, "prose": prose}
        if placement == "metadata":
            record = _with_metadata(_record("", ref, [qa]), rng, caption=caption,
                                    key=rng.choice(words.caption_keys))
        elif placement == "filename":
            record = _with_metadata(_record("", world.captioned_ref(ref, caption), [qa]), rng)
        elif placement == "system":
            record = _with_metadata(_record("", ref, [qa], system=f"Image description: "
                                                                  f"{caption}."), rng)
            flaws.append("blind_answer_in_question")
        else:
            record = _with_metadata(_record("", ref, [qa], prompt_prefix=f"Context: "
                                                                         f"{caption}.\n"), rng)
            flaws.append("blind_answer_in_question")
        return record, truth, flaws, detail
    if kind == "blind_answer_in_question":
        attribute = rng.choice([a for a in free if a != "describe"])
        world.state(ref, [attribute])
        qa = (words.blind_question(attribute, truth), words.short_answer(attribute,
                                                                          truth[attribute]))
        return (_with_metadata(_record("", ref, [qa]), rng), truth, [kind],
                {"attribute": attribute})
    if kind == "blind_constant_prior":
        question, answer = constant_plan[payload["k"] % len(constant_plan)]
        return (_with_metadata(_record("", ref, [(question, answer)]), rng), truth, [kind],
                {"question": question})
    if kind == "pref_flattened_marker":
        attribute = rng.choice([a for a in free if a != "describe"])
        world.state(ref, [attribute])
        answer = words.judged(words.short_answer(attribute, truth[attribute]))
        if rng.random() < 0.5 and len(free) > 2:  # a clean question after the judged one
            other = rng.choice([a for a in free if a not in (attribute, "describe")])
            world.state(ref, [other])
            extra = [(words.question(other), words.answer(other, truth))]
        record = _with_metadata(_record("", ref, [(words.question(attribute), answer), *extra]),
                                rng)
        return record, truth, [kind], {"attribute": attribute}
    raise AssertionError(kind)
