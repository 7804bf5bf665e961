"""Write the demo world: a synthetic shapes VQA corpus whose flaws are known.

``generate(out_dir, DemoConfig(...))`` writes, under ``out_dir``:

- ``images/img_NNNNNN.png``: the distinct images (see ``shapes.py``), shared by all files (an
  image whose pixels repeat an earlier one's is redrawn); ``images/corrupt_NNNNNN.png``: files
  whose bytes are not a valid image; ``images/near_NNNNNN.jpg|png``: near copies of pool
  images (``near_duplicate_image``).
- ``llava.jsonl``: LLaVA-format SFT rows, clean and flawed (one flaw per record at most; the
  flaw kinds are ``LLAVA_FLAWS``). A content flaw sits in the first QA pair; the two duplicate
  kinds are otherwise clean records: ``exact_duplicate`` repeats an earlier clean record under
  a new id, ``near_duplicate_image`` repeats one on a near copy of its image (JPEG re-encode,
  a 1-2 px shift or a slight brightening; the answers still hold for the pixels). Both records
  of a duplicate pair carry the flaw and share a ``group``.
- ``sharegpt.json``: clean ShareGPT/LLaMA-Factory rows over the same image pool.
- ``preference_dpo.json``: LLaMA-Factory DPO pairs (chosen / rejected) over the same pool.
- ``ground_truth.jsonl``: one line per record of the three files, in file order (llava,
  sharegpt, preference), with ``file``, ``line`` (0-based line or array index),
  ``example_id``, ``modality``, ``image``, ``truth`` (the pixels' attributes, null for text
  rows and for missing or corrupt images), ``flaws``, ``group`` (shared by the two records of
  a pair), ``pref_role`` (chosen / rejected for flattened plain pairs) and ``detail``
  (e.g. which attribute a contaminated caption got wrong; ``copy_of`` and ``near_copy_of`` on
  the second record of a duplicate pair).
- ``summary.json``: the resolved config and counts per flaw and per file.

Output is a pure function of the config: same config, byte-identical files. Randomness comes
only from ``random.Random`` streams seeded from ``config.seed``; images depend only on the
seed, ``images`` and ``image_size``, so changing ``rows`` keeps the image pool.

Correct QA pairs never share an (image, question) key with a flawed row's first QA pair, and
flawed rows never share one with each other (except the two records of a pair, deliberately),
so the only contradictions in llava.jsonl are the groups the ground truth names. Likewise no
two records of the three files have the same image and conversation (read without ``<image>``
tokens) except the pairs of an ``exact_duplicate`` group, and the image of a near-duplicate
original is used by that one record only (and shows a truth no other pool image shows, where the
pool has such images). (Only a pool of a handful of images, with every key or conversation
taken, forces exceptions.)
"""

from __future__ import annotations

import io
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageChops

from demo.shapes import (
    BACKGROUND,
    COLORS,
    COUNT_WORDS,
    COUNTS,
    POSITION_PHRASES,
    POSITIONS,
    SHAPES,
    all_truths,
    caption,
    describe,
    draw_shapes,
    short_answer,
)
from integrity.errors import UserError
from integrity.ingest.images import load_rgb

IMAGE_TOKEN = "<image>"

LLAVA_FILE = "llava.jsonl"
SHAREGPT_FILE = "sharegpt.json"
PREFERENCE_FILE = "preference_dpo.json"
GROUND_TRUTH_FILE = "ground_truth.jsonl"
SUMMARY_FILE = "summary.json"
SOURCES_FILE = "sources.yaml"  # the sources file of the demo: its three files and its model

LLAVA_FLAWS: tuple[str, ...] = (
    "caption_derived",
    "blind_answer_in_question",
    "blind_constant_prior",
    "pref_flattened_marker",
    "pref_flattened_plain",
    "contradictory_duplicate",
    "exact_duplicate",
    "near_duplicate_image",
    "broken_missing_image",
    "broken_corrupt_image",
    "broken_bad_json",
)
FLAWS: tuple[str, ...] = (*LLAVA_FLAWS, "preference_pair")

RATE_FIELDS: tuple[str, ...] = (
    "text_only_share",
    "caption_derived_rate",
    "blind_rate",
    "preference_rate",
    "contradiction_rate",
    "broken_rate",
    "exact_duplicate_rate",
    "near_duplicate_rate",
)

# Attributes a short question asks about (size is only in captions and descriptions).
QUESTION_ATTRIBUTES: tuple[str, ...] = ("color", "shape", "count", "position")
# Questions are count-neutral ("shapes" even for one) so that no question leaks the count.
QUESTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "color": (
        "What color are the shapes?",
        "What color are the shapes in the image?",
        "Which color is used for the shapes in this picture?",
    ),
    "shape": (
        "What shape is shown?",
        "What kind of shape appears in the image?",
        "Which shape is drawn in this picture?",
    ),
    "count": (
        "How many shapes are there?",
        "How many shapes are in the image?",
        "Count the shapes in this picture.",
    ),
    "position": (
        "Where are the shapes?",
        "Where in the image are the shapes located?",
        "In which part of the picture are the shapes?",
    ),
    "describe": ("Describe the image.", "What does the image show?"),
}
DESCRIBE_SHARE = 0.15  # chance that a clean image row ends with a "Describe the image." turn

# blind_answer_in_question: the question states the answer. {value} is the answer word,
# {phrase} the position phrase ("on the left").
BLIND_IN_QUESTION_TEMPLATES: dict[str, str] = {
    "color": "The shapes in this picture are {value}. What color are they?",
    "shape": "This picture shows {value}s. What shape are they?",
    "count": "There are {value} shapes in this picture. How many shapes are there?",
    "position": "The shapes are {phrase}. Where are the shapes?",
}
# blind_constant_prior: the answer is the same for every image of the corpus.
CONSTANT_PRIOR_QA: tuple[tuple[str, str], ...] = (
    ("What color is the background?", "White."),
    ("What is the background color of the image?", "White."),
    ("Is the background of this picture white?", "Yes."),
)
# pref_flattened_marker: phrases that betray a preference record flattened into SFT.
PREFERENCE_MARKER_TEMPLATES: tuple[str, ...] = (
    "Response A is better. {answer}",
    "Chosen response: {answer}",
    "Rating: {rating}/5. {answer}",
    "[Preferred] {answer}",
    "Of the two responses, the second one is better: {answer}",
)
# Rejected answers of preference pairs: wrong and hedged. {value} is a wrong answer word.
HEDGE_TEMPLATES: tuple[str, ...] = (
    "I think it might be {value}.",
    "It could be {value}, but I am not sure.",
    "Possibly {value}.",
    "Maybe {value}? It is hard to tell.",
)
# Full-sentence answers (used inside marker phrases), count-neutral like the questions.
SENTENCE_ANSWER_TEMPLATES: dict[str, str] = {
    "color": "The shapes are {value}.",
    "shape": "Each shape is a {value}.",
    "count": "The number of shapes is {value}.",
    "position": "The shapes are {phrase}.",
}

# Text-only rows: general questions from templates.
CAPITALS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Germany", "Berlin"), ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"),
    ("Peru", "Lima"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Portugal", "Lisbon"),
)
OPPOSITES: tuple[tuple[str, str], ...] = (
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("light", "dark"),
    ("happy", "sad"), ("open", "closed"), ("early", "late"), ("full", "empty"), ("old", "new"),
)
PLURALS: tuple[tuple[str, str], ...] = (
    ("mouse", "mice"), ("child", "children"), ("goose", "geese"), ("foot", "feet"),
    ("tooth", "teeth"), ("person", "people"), ("woman", "women"), ("leaf", "leaves"),
)
TEXT_KINDS: tuple[str, ...] = ("plus", "minus", "times", "capital", "opposite", "plural")

# How the k-th near copy differs from its original: NEAR_PERTURBATIONS[k % 3].
NEAR_PERTURBATIONS: tuple[str, ...] = ("jpeg", "shift", "brighten")
NEAR_JPEG_QUALITY = 85
UNIQUE_TRIES = 50  # draws before accepting a repeated conversation (only a tiny pool needs it)
POOL_REDRAWS = 20  # draws before accepting an image whose pixels repeat an earlier one

_VALUES: dict[str, tuple] = {
    "color": tuple(COLORS), "shape": SHAPES, "count": COUNTS, "position": POSITIONS,
}


class DemoConfigError(UserError, ValueError):
    """A DemoConfig field is out of range; the message names the field."""


@dataclass(frozen=True)
class DemoConfig:
    """What to generate. Rates are shares in [0, 1]; all rates together must sum to <= 1.

    ``caption_derived_rate``, ``blind_rate``, ``exact_duplicate_rate`` and ``near_duplicate_rate``
    are shares of llava image rows; the other rates are shares of all llava rows. A duplicate
    rate counts both records of each pair (original and copy), like ``contradiction_rate``.
    ``images=None`` -> about ``rows * (1 - text_only_share) * 0.6`` distinct images (each
    reused by several rows); ``sharegpt_rows=None`` -> ``rows // 10``;
    ``preference_pairs=None`` -> ``rows // 20``.
    """

    rows: int = 2000
    seed: int = 0
    images: int | None = None
    image_size: int = 128
    text_only_share: float = 0.3
    caption_derived_rate: float = 0.05
    blind_rate: float = 0.05
    preference_rate: float = 0.03
    contradiction_rate: float = 0.02
    broken_rate: float = 0.01
    exact_duplicate_rate: float = 0.02
    near_duplicate_rate: float = 0.02
    sharegpt_rows: int | None = None
    preference_pairs: int | None = None
    # False: llava records carry no caption, so a caption-derived answer's source is nowhere in
    # the row (as when metadata is stripped before release); only the pixels can tell.
    captions: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.captions, bool):
            raise DemoConfigError(f"captions must be true or false, got {self.captions!r}")
        _check_int("rows", self.rows, minimum=0)
        _check_int("seed", self.seed, minimum=None)
        _check_int("images", self.images, minimum=1, optional=True)
        _check_int("image_size", self.image_size, minimum=16)
        _check_int("sharegpt_rows", self.sharegpt_rows, minimum=0, optional=True)
        _check_int("preference_pairs", self.preference_pairs, minimum=0, optional=True)
        for name in RATE_FIELDS:
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or not 0 <= value <= 1):
                raise DemoConfigError(f"{name} must be a number in [0, 1], got {value!r}")
        total = sum(getattr(self, name) for name in RATE_FIELDS)
        if total > 1 + 1e-9:
            raise DemoConfigError(
                f"{' + '.join(RATE_FIELDS)} must sum to <= 1, got {total:.4g}"
            )

    def resolved(self) -> DemoConfig:
        """This config with every None default replaced by its computed value."""
        images = self.images
        if images is None:
            images = max(1, round(self.rows * (1 - self.text_only_share) * 0.6))
        return replace(
            self,
            images=images,
            sharegpt_rows=self.rows // 10 if self.sharegpt_rows is None else self.sharegpt_rows,
            preference_pairs=(self.rows // 20 if self.preference_pairs is None
                              else self.preference_pairs),
        )


def _check_int(name: str, value: object, *, minimum: int | None, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise DemoConfigError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise DemoConfigError(f"{name} must be >= {minimum}, got {value!r}")


def plan_counts(config: DemoConfig) -> dict[str, int]:
    """Exact number of llava records per flaw, plus ``text`` and ``image`` row totals.

    Raises DemoConfigError (naming ``rows``) when rounding leaves too few image rows to hold
    the flaws, which only happens for a handful of rows with rates near their limits, and
    (naming ``images``) when the pool cannot give every near-duplicate original an image of
    its own and keep one for the other rows.
    """
    n = config.rows
    n_text = round(n * config.text_only_share)
    n_image = n - n_text
    blind = round(n_image * config.blind_rate)
    pref = round(n * config.preference_rate)
    plain_pairs = pref // 4
    broken = round(n * config.broken_rate)
    counts = {
        "text": n_text,
        "image": n_image,
        "caption_derived": round(n_image * config.caption_derived_rate),
        "blind_answer_in_question": (blind + 1) // 2,
        "blind_constant_prior": blind // 2,
        "pref_flattened_marker": pref - 2 * plain_pairs,
        "pref_flattened_plain": 2 * plain_pairs,
        "contradictory_duplicate": 2 * round(n * config.contradiction_rate / 2),
        "exact_duplicate": 2 * round(n_image * config.exact_duplicate_rate / 2),
        "near_duplicate_image": 2 * round(n_image * config.near_duplicate_rate / 2),
        "broken_missing_image": broken // 3 + (broken % 3 >= 1),
        "broken_corrupt_image": broken // 3 + (broken % 3 >= 2),
        "broken_bad_json": broken // 3,
    }
    flawed = sum(counts[f] for f in LLAVA_FLAWS)
    if flawed > n_image:
        raise DemoConfigError(
            f"rows={n} is too small: {flawed} flawed records do not fit in {n_image} image rows"
        )
    near_groups, images = counts["near_duplicate_image"] // 2, config.resolved().images
    if near_groups and images <= near_groups:
        raise DemoConfigError(
            f"images={images} is too small: {near_groups} near-duplicate originals need an "
            "image of their own and the other rows at least one more"
        )
    return counts


# ---------------------------------------------------------------------------------------------
# Questions and answers


def _word(attribute: str, value: object) -> str:
    return COUNT_WORDS[value] if attribute == "count" else str(value)


def _answer(qtype: str, truth: dict) -> str:
    return describe(truth) if qtype == "describe" else short_answer(qtype, truth[qtype])


def _wrong_value(attribute: str, value: object, rng: random.Random) -> object:
    return rng.choice([v for v in _VALUES[attribute] if v != value])


def _hedge(value_word: str, rng: random.Random) -> str:
    return rng.choice(HEDGE_TEMPLATES).format(value=value_word)


def _sentence(attribute: str, value: object) -> str:
    word = _word(attribute, value)
    phrase = POSITION_PHRASES.get(word, "")
    return SENTENCE_ANSWER_TEMPLATES[attribute].format(value=word, phrase=phrase)


def _text_qa(rng: random.Random) -> tuple[str, str, str]:
    """A general-knowledge (question, answer, wrong answer word) triple. Sums and products
    put the larger number first, so "3 plus 5" and "5 plus 3" are never two questions."""
    kind = rng.choice(TEXT_KINDS)
    if kind in ("plus", "minus", "times"):
        hi = 20 if kind == "times" else 60
        a, b = sorted((rng.randint(2, hi), rng.randint(2, hi)), reverse=True)
        result = {"plus": a + b, "minus": a - b, "times": a * b}[kind]
        wrong = result + rng.choice((-2, -1, 1, 2))
        return f"What is {a} {kind} {b}?", f"{result}.", str(wrong)
    if kind == "capital":
        country, city = rng.choice(CAPITALS)
        wrong = rng.choice([c for _, c in CAPITALS if c != city])
        return f"What is the capital of {country}?", f"{city}.", wrong
    if kind == "opposite":
        pair = rng.choice(OPPOSITES)
        word, opposite = pair if rng.random() < 0.5 else pair[::-1]
        wrong = rng.choice([w for p in OPPOSITES for w in p if w not in pair])
        return f"What is the opposite of {word}?", f"{opposite.capitalize()}.", wrong
    word, plural = rng.choice(PLURALS)
    return f"What is the plural of {word}?", f"{plural.capitalize()}.", word + "s"


def _llava_record(rid: str, image: str | None, qas: list[tuple[str, str]],
                  caption_text: str | None) -> dict:
    conversations = []
    for i, (question, answer) in enumerate(qas):
        if i == 0 and image is not None:
            question = f"{IMAGE_TOKEN}\n{question}"
        conversations.append({"from": "human", "value": question})
        conversations.append({"from": "gpt", "value": answer})
    record: dict = {"id": rid}
    if image is not None:
        record["image"] = image
    record["conversations"] = conversations
    if caption_text is not None:
        record["caption"] = caption_text
    return record


def _uncaptioned(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "caption"}


def _image_ref(index: int) -> str:
    return f"images/img_{index:06d}.png"


def _near_ref(k: int) -> str:
    ext = "jpg" if NEAR_PERTURBATIONS[k % len(NEAR_PERTURBATIONS)] == "jpeg" else "png"
    return f"images/near_{k:06d}.{ext}"


class _World:
    """The image pool plus the (image, question) keys and the conversations taken, shared by
    all three writers."""

    def __init__(self, pool: list[dict], rng: random.Random) -> None:
        self.pool = pool
        self.rng = rng
        self._queue: list[int] = []
        self.claimed: set[tuple[str, str]] = set()  # keys of flawed first QA pairs
        self.reserved: list[int] = []  # pool indices of near-duplicate originals
        self._conversations: set[tuple] = set()  # (image ref, QA pairs) of records written
        # Facts a correct QA pair already states about each image, and text QA pairs already
        # asked: a second record saying the same thing again is a duplicate, so none does.
        self.stated: dict[str, set[str]] = {}
        self.asked_text: set[tuple[str, str]] = set()

    def reserve(self, n: int) -> None:
        """Set ``n`` images aside for near-duplicate originals; ``next_image`` never gives
        them. Images whose truth the fewest other pool images show go first."""
        shown = Counter(tuple(truth.values()) for truth in self.pool)
        order = list(range(len(self.pool)))
        self.rng.shuffle(order)
        order.sort(key=lambda i: shown[tuple(self.pool[i].values())])  # stable: random ties
        self.reserved = order[:n]

    def next_image(self) -> tuple[str, dict]:
        """Images in rounds of a fresh shuffle, so every image is used before any repeats."""
        if not self._queue:
            reserved = set(self.reserved)
            self._queue = [i for i in range(len(self.pool)) if i not in reserved]
            self.rng.shuffle(self._queue)
        index = self._queue.pop()
        return _image_ref(index), self.pool[index]

    def fresh(self, ref: str | None, qas: list[tuple[str, str]]) -> bool:
        """Take the conversation ``qas`` on ``ref``; False when a record already has it."""
        key = (ref, tuple(qas))
        if key in self._conversations:
            return False
        self._conversations.add(key)
        return True

    def text_qas(self) -> list[tuple[str, str]]:
        """1-2 general-knowledge QA pairs that no record has asked yet."""
        qas: list[tuple[str, str]] = []
        for _ in range(self.rng.randint(1, 2)):
            for _ in range(UNIQUE_TRIES):
                qa = _text_qa(self.rng)[:2]
                if qa not in self.asked_text and qa not in qas:
                    break
            qas.append(qa)
        self.asked_text.update(qas)
        self.fresh(None, qas)
        return qas

    def fresh_clean_qas(self, ref: str, truth: dict) -> list[tuple[str, str]]:
        """1-3 correct QA pairs (``clean_qas``) on ``ref`` that no record has yet (empty when
        every fact of ``ref`` is stated already)."""
        for _ in range(UNIQUE_TRIES):
            qas = self.clean_qas(ref, truth, self.rng.randint(1, 3))
            if not qas or self.fresh(ref, qas):
                break
        return qas  # after UNIQUE_TRIES only when a handful of images carries every row

    def clean_image(self) -> tuple[str, dict, list[tuple[str, str]]]:
        """(ref, truth, QA pairs) of a clean record: an image with facts left to state. Only a
        pool too small for its rows (a handful of images) runs out of them; its records then
        restate facts, as they always did."""
        for _ in range(len(self.pool) + 1):
            ref, truth = self.next_image()
            qas = self.fresh_clean_qas(ref, truth)
            if qas:
                return ref, truth, qas
        self.stated.clear()
        return ref, truth, self.some_clean_qas(ref, truth)

    def some_clean_qas(self, ref: str, truth: dict) -> list[tuple[str, str]]:
        """``fresh_clean_qas``, or when every fact of ``ref`` is stated already, a restatement:
        never no dialog (a record without one is broken, and the ground truth would call it
        clean)."""
        qas = self.fresh_clean_qas(ref, truth)
        if not qas:
            self.stated.pop(ref, None)
            qas = self.clean_qas(ref, truth, 1)
        return qas

    def free_question(self, qtype: str, ref: str) -> str | None:
        """A random template of ``qtype`` whose key on ``ref`` no flawed record claimed."""
        templates = QUESTION_TEMPLATES[qtype]
        start = self.rng.randrange(len(templates))
        for j in range(len(templates)):
            question = templates[(start + j) % len(templates)]
            if (ref, question) not in self.claimed:
                return question
        return None

    def flawed_image(self) -> tuple[str, dict, str, str]:
        """(ref, truth, qtype, question) for a flawed first QA pair on an unclaimed key."""
        for _ in range(100):
            ref, truth = self.next_image()
            qtype = self.rng.choice(QUESTION_ATTRIBUTES)
            question = self.free_question(qtype, ref)
            if question is not None:
                return ref, truth, qtype, question
        # Only when nearly every key of the pool is claimed (a handful of images).
        return ref, truth, qtype, self.rng.choice(QUESTION_TEMPLATES[qtype])

    def clean_qas(self, ref: str, truth: dict, k: int, exclude: tuple[str, ...] = (),
                  describe_ok: bool = True) -> list[tuple[str, str]]:
        """Up to ``k`` correct QA pairs of distinct types on keys no flawed record claimed,
        about facts of ``ref`` no correct QA pair states yet (a description states them all)."""
        stated = self.stated.setdefault(ref, set())
        qtypes = [t for t in QUESTION_ATTRIBUTES if t not in exclude and t not in stated]
        self.rng.shuffle(qtypes)
        describe_ok = describe_ok and not stated
        if describe_ok and k and self.rng.random() < DESCRIBE_SHARE:
            qtypes.insert(k - 1, "describe")  # describe is never claimed: always taken
        qas, types = [], []
        for qtype in qtypes:
            if len(qas) == k:
                break
            question = self.free_question(qtype, ref)
            if question is not None:
                qas.append((question, _answer(qtype, truth)))
                types.append(qtype)
        if not qas and describe_ok:
            qas.append((self.free_question("describe", ref), describe(truth)))
            types.append("describe")
        stated.update(types)
        if "describe" in types:
            stated.update(QUESTION_ATTRIBUTES)
        return qas


def _gt(file: str, line: int, example_id: str, image: str | None, truth: dict | None,
        flaws: list[str], *, modality: str | None = None, group: str | None = None,
        pref_role: str | None = None, detail: dict | None = None) -> dict:
    return {
        "file": file,
        "line": line,
        "example_id": example_id,
        "modality": modality or ("text" if image is None else "image-text"),
        "image": image,
        "truth": dict(truth) if truth is not None else None,
        "flaws": flaws,
        "group": group,
        "pref_role": pref_role,
        "detail": detail,
    }


# ---------------------------------------------------------------------------------------------
# The three files


def _llava(world: _World, counts: dict[str, int], rows: int, images_dir: Path,
           image_size: int, captions: bool = True) -> tuple[list[str], list[dict]]:
    rng = world.rng
    slots: list[tuple[str, dict]] = [("text", {})] * counts["text"]
    for flaw in ("caption_derived", "blind_answer_in_question", "blind_constant_prior",
                 "pref_flattened_marker", "broken_missing_image", "broken_corrupt_image",
                 "broken_bad_json"):
        slots += [(flaw, {"k": k}) for k in range(counts[flaw])]
    for flaw, prefix in (("pref_flattened_plain", "prefplain"),
                         ("contradictory_duplicate", "contra")):
        for g in range(counts[flaw] // 2):
            slots += [(flaw, {"group": f"{prefix}-{g:04d}", "member": m}) for m in (0, 1)]
    # Duplicate pairs: the member that comes first in the file is the original.
    for flaw, prefix in (("exact_duplicate", "dup"), ("near_duplicate_image", "neardup")):
        for g in range(counts[flaw] // 2):
            slots += [(flaw, {"group": f"{prefix}-{g:04d}", "k": g})] * 2
    slots += [("clean", {})] * (rows - len(slots))
    rng.shuffle(slots)
    world.reserve(counts["near_duplicate_image"] // 2)

    # First the flawed QA pairs, so every later correct QA pair can steer clear of their keys.
    pairs: dict[str, tuple[str, dict, str, str]] = {}
    flawed = {line: _flawed_first(world, kind, payload, pairs)
              for line, (kind, payload) in enumerate(slots) if kind in _FIRST_QA_FLAWS}

    lines: list[str] = []
    gts: list[dict] = []
    originals: dict[str, tuple[dict, dict, list]] = {}  # duplicate group -> (record, truth, qas)
    for line, (kind, payload) in enumerate(slots):
        rid = f"shapes-{line:06d}"
        if kind == "text":
            qas = world.text_qas()
            record, gt = _llava_record(rid, None, qas, None), _gt(LLAVA_FILE, line, rid, None,
                                                                  None, [])
        elif kind in _FIRST_QA_FLAWS:
            plan = flawed[line]
            qas = [(plan["question"], plan["answer"])]
            if plan["extra"]:
                qas += world.clean_qas(plan["ref"], plan["truth"], plan["extra"],
                                       exclude=plan["exclude"], describe_ok=False)
            world.fresh(plan["ref"], qas)  # unique already: its first key is claimed
            record = _llava_record(rid, plan["ref"], qas, caption(plan["caption_attrs"]))
            gt = _gt(LLAVA_FILE, line, rid, plan["ref"], plan["truth"], [kind],
                     group=payload.get("group"), pref_role=plan["role"], detail=plan["detail"])
        elif kind in ("exact_duplicate", "near_duplicate_image") and payload["group"] in originals:
            original, truth, qas = originals[payload["group"]]
            ref, detail = original["image"], {"copy_of": original["id"]}
            if kind == "near_duplicate_image":
                detail = {"near_copy_of": ref}
                ref = _near_ref(payload["k"])
                perturbation = NEAR_PERTURBATIONS[payload["k"] % len(NEAR_PERTURBATIONS)]
                detail["perturbation"] = _write_near_copy(
                    images_dir / Path(original["image"]).name, images_dir / Path(ref).name,
                    perturbation, rng)
                world.fresh(ref, qas)
            record = {**original, "id": rid, "image": ref}
            gt = _gt(LLAVA_FILE, line, rid, ref, truth, [kind], group=payload["group"],
                     detail=detail)
        elif kind in ("clean", "broken_bad_json", "exact_duplicate", "near_duplicate_image"):
            if kind == "near_duplicate_image":  # an image no other record uses
                index = world.reserved[payload["k"]]
                ref, truth = _image_ref(index), world.pool[index]
                qas = world.some_clean_qas(ref, truth)
            else:
                ref, truth, qas = world.clean_image()
            record = _llava_record(rid, ref, qas, caption(truth))
            gt = _gt(LLAVA_FILE, line, rid, ref, truth, [] if kind == "clean" else [kind],
                     group=payload.get("group"))
            if "group" in payload:
                originals[payload["group"]] = record, truth, qas
            if kind == "broken_bad_json":  # cut in half: an object without its closing brace
                text = json.dumps(record if captions else _uncaptioned(record))
                lines.append(text[: len(text) // 2])
                gts.append(gt)
                continue
        else:  # broken_missing_image, broken_corrupt_image
            truth = rng.choice(all_truths())  # what the row claims to show
            name = "missing" if kind == "broken_missing_image" else "corrupt"
            ref = f"images/{name}_{payload['k']:06d}.png"
            if kind == "broken_corrupt_image":
                (images_dir / Path(ref).name).write_bytes(
                    _corrupt_bytes(payload["k"], truth, image_size, rng))
            record = _llava_record(rid, ref, world.clean_qas(ref, truth, rng.randint(1, 3)),
                                   caption(truth))
            gt = _gt(LLAVA_FILE, line, rid, ref, None, [kind], modality="image-text")
        lines.append(json.dumps(record if captions else _uncaptioned(record)))
        gts.append(gt)
    return lines, gts


_FIRST_QA_FLAWS = frozenset({
    "caption_derived", "blind_answer_in_question", "blind_constant_prior",
    "pref_flattened_marker", "pref_flattened_plain", "contradictory_duplicate",
})


def _flawed_first(world: _World, kind: str, payload: dict, pairs: dict) -> dict:
    """Plan the flawed first QA pair of a ``kind`` record and claim its key."""
    rng = world.rng
    group = payload.get("group")
    if group in pairs:  # second member of a pair: same image and question as the first
        ref, truth, qtype, question = pairs[group]
    elif kind in ("blind_answer_in_question", "blind_constant_prior"):
        # Their questions are no template, so their keys cannot collide with a clean row's;
        # an unclaimed key keeps two blind records from being the same record.
        for _ in range(100):
            (ref, truth), qtype = world.next_image(), rng.choice(QUESTION_ATTRIBUTES)
            question = _blind_question(kind, qtype, truth, rng)
            if (ref, question) not in world.claimed:
                break
    else:
        ref, truth, qtype, question = world.flawed_image()
        if group is not None:
            pairs[group] = (ref, truth, qtype, question)
    value = truth[qtype]
    plan = {"ref": ref, "truth": truth, "caption_attrs": truth, "detail": {"attribute": qtype},
            "role": None, "extra": rng.randint(0, 2), "exclude": (qtype,)}
    if kind == "caption_derived":
        wrong = _wrong_value(qtype, value, rng)
        plan["caption_attrs"] = dict(truth, **{qtype: wrong})
        answer = short_answer(qtype, wrong)
        plan["detail"] = {"attribute": qtype, "caption_value": wrong}
    elif kind == "blind_answer_in_question":
        answer = short_answer(qtype, value)
    elif kind == "blind_constant_prior":
        answer = dict(CONSTANT_PRIOR_QA)[question]
        plan["detail"], plan["exclude"] = None, ()
    elif kind == "pref_flattened_marker":
        template = rng.choice(PREFERENCE_MARKER_TEMPLATES)
        answer = template.format(answer=_sentence(qtype, value), rating=rng.randint(3, 5))
        plan["detail"] = {"attribute": qtype, "marker": template}
    elif kind == "pref_flattened_plain":
        plan["role"] = ("chosen", "rejected")[payload["member"]]
        if plan["role"] == "chosen":
            answer = short_answer(qtype, value)
        else:
            answer = _hedge(_word(qtype, _wrong_value(qtype, value, rng)), rng)
        plan["extra"] = 0  # preference prompts are single-turn
    elif kind == "contradictory_duplicate":
        correct = payload["member"] == 0
        answer = short_answer(qtype, value if correct else _wrong_value(qtype, value, rng))
        plan["detail"] = {"attribute": qtype, "correct": correct}
    else:
        raise AssertionError(kind)
    world.claimed.add((ref, question))
    if qtype in QUESTION_ATTRIBUTES:  # no correct QA pair restates this fact of the image
        world.stated.setdefault(ref, set()).add(qtype)
    plan.update(question=question, answer=answer)
    return plan


def _blind_question(kind: str, qtype: str, truth: dict, rng: random.Random) -> str:
    if kind == "blind_constant_prior":
        return rng.choice(CONSTANT_PRIOR_QA)[0]
    word = _word(qtype, truth[qtype])
    return BLIND_IN_QUESTION_TEMPLATES[qtype].format(value=word,
                                                     phrase=POSITION_PHRASES.get(word, ""))


def _write_near_copy(source: Path, dest: Path, perturbation: str, rng: random.Random) -> str:
    """Write a near copy of the image at ``source`` to ``dest``; return what was changed.

    ``jpeg``: re-encoded as JPEG (4:4:4, so small shapes keep their color); ``shift``: moved by
    1-2 px (1 px below 64 px) where no shape leaves the frame (``brighten`` when none can move);
    ``brighten``: every channel raised by a few levels (the white background stays white). The
    pixels stay within a few levels or pixels of the original's, so its truth and answers hold.
    """
    img = load_rgb(str(source))
    buf = io.BytesIO()
    if perturbation == "jpeg":
        img.save(buf, format="JPEG", quality=NEAR_JPEG_QUALITY, subsampling=0)
        dest.write_bytes(buf.getvalue())
        return f"jpeg q{NEAR_JPEG_QUALITY}"
    if perturbation == "shift":
        blank = Image.new("RGB", img.size, BACKGROUND)
        x0, y0, x1, y1 = ImageChops.difference(img, blank).getbbox() or (0, 0, *img.size)
        reach = range(-2, 3) if min(img.size) >= 64 else range(-1, 2)
        offsets = [(dx, dy) for dx in reach for dy in reach if (dx or dy)
                   and 0 <= x0 + dx and x1 + dx <= img.width
                   and 0 <= y0 + dy and y1 + dy <= img.height]
        if offsets:
            dx, dy = rng.choice(offsets)
            blank.paste(img, (dx, dy))
            blank.save(buf, format="PNG")
            dest.write_bytes(buf.getvalue())
            return f"shift {dx:+d},{dy:+d} px"
    delta = rng.randint(4, 10)
    img.point(lambda v: min(255, v + delta)).save(buf, format="PNG")
    dest.write_bytes(buf.getvalue())
    return f"brighten +{delta}"


def _corrupt_bytes(k: int, truth: dict, image_size: int, rng: random.Random) -> bytes:
    """Even k: a PNG cut short (its header opens, its pixels do not); odd k: random bytes."""
    if k % 2:
        return b"\x00NOT-AN-IMAGE\x00" + rng.randbytes(rng.randint(200, 2000))
    buf = io.BytesIO()
    draw_shapes(**truth, image_size=image_size, rng=rng).save(buf, format="PNG")
    data = buf.getvalue()
    return data[: max(60, len(data) * 2 // 5)]


def _sharegpt(world: _World, n_rows: int, n_text: int) -> tuple[list[str], list[dict]]:
    rng = world.rng
    kinds = ["text"] * n_text + ["image"] * (n_rows - n_text)
    rng.shuffle(kinds)
    lines, gts = [], []
    for i, kind in enumerate(kinds):
        rid = f"sg-{i:06d}"
        if kind == "text":
            qas = world.text_qas()
            ref, truth = None, None
        else:
            ref, truth, qas = world.clean_image()
        messages = []
        for j, (question, answer) in enumerate(qas):
            content = f"{IMAGE_TOKEN}{question}" if j == 0 and ref else question
            messages.append({"role": "user", "content": content})
            messages.append({"role": "assistant", "content": answer})
        record: dict = {"id": rid, "messages": messages}
        if ref is not None:
            record["images"] = [ref]
        lines.append(json.dumps(record))
        gts.append(_gt(SHAREGPT_FILE, i, rid, ref, truth, []))
    return lines, gts


def _preference(world: _World, n_pairs: int, n_text: int) -> tuple[list[str], list[dict]]:
    rng = world.rng
    kinds = ["text"] * n_text + ["image"] * (n_pairs - n_text)
    rng.shuffle(kinds)
    lines, gts = [], []
    for i, kind in enumerate(kinds):
        rid = f"pref-{i:06d}"
        if kind == "text":
            for _ in range(UNIQUE_TRIES):  # a prompt + chosen answer no record has yet
                question, chosen, wrong = _text_qa(rng)
                if (question, chosen) not in world.asked_text \
                        and world.fresh(None, [(question, chosen)]):
                    break
            world.asked_text.add((question, chosen))
            ref, truth, detail = None, None, None
        else:
            for _ in range(UNIQUE_TRIES):
                ref, truth = world.next_image()
                qtype = rng.choice(QUESTION_ATTRIBUTES)
                question = world.free_question(qtype, ref)
                if question is None:
                    qtype, question = "describe", world.free_question("describe", ref)
                if world.fresh(ref, [(question, _answer(qtype, truth))]):
                    break
            if qtype == "describe":
                wrong_attr = rng.choice(QUESTION_ATTRIBUTES)
                bad = dict(truth, **{wrong_attr: _wrong_value(wrong_attr, truth[wrong_attr], rng)})
                chosen, wrong = describe(truth), caption(bad)
            else:
                chosen = short_answer(qtype, truth[qtype])
                wrong = _word(qtype, _wrong_value(qtype, truth[qtype], rng))
            question = f"{IMAGE_TOKEN}\n{question}"
            detail = {"attribute": qtype}
        record: dict = {
            "id": rid,
            "conversations": [{"from": "human", "value": question}],
            "chosen": {"from": "gpt", "value": chosen},
            "rejected": {"from": "gpt", "value": _hedge(wrong, rng)},
        }
        if ref is not None:
            record["images"] = [ref]
        lines.append(json.dumps(record))
        gts.append(_gt(PREFERENCE_FILE, i, rid, ref, truth, ["preference_pair"], group=rid,
                       detail=detail))
    return lines, gts


def _write_json_array(path: Path, lines: list[str]) -> None:
    body = ",\n".join(lines)
    path.write_text(f"[\n{body}\n]\n" if lines else "[]\n", encoding="utf-8")


def _file_summary(gts: list[dict]) -> dict:
    modality = Counter(g["modality"] for g in gts)
    flaws = Counter(f for g in gts for f in g["flaws"])
    return {
        "records": len(gts),
        "image-text": modality["image-text"],
        "text": modality["text"],
        "text_only_share": round(modality["text"] / len(gts), 4) if gts else 0.0,
        "flawed_records": sum(1 for g in gts if g["flaws"]),
        "flaws": {f: flaws[f] for f in FLAWS if flaws[f]},
    }


SHIFT_RADIUS = 4  # px: a pool image moved by at most this much counts as a copy
SHIFT_IOU = 0.8   # ink masks overlapping more than this (intersection over union) are copies


@dataclass(frozen=True)
class _Ink:
    """Where a picture is not background (white), kept for the shifted-copy test: the mask's
    rows bit-packed, once per column shift in [-SHIFT_RADIUS, SHIFT_RADIUS] (shifted[k] is the
    mask moved k - radius columns, zero-filled), and per column shift the cumulative ink
    count over rows of the window the other image of a comparison is cropped to."""

    shifted: np.ndarray    # (shifts, size, size / 8) uint8
    window_ink: np.ndarray  # (size + 1, shifts) int64


def _ink(image, radius: int = SHIFT_RADIUS) -> _Ink:
    mask = np.asarray(image.convert("L")) < 250
    size = mask.shape[0]
    shifted, window_ink = [], []
    for dx in range(-radius, radius + 1):
        moved = np.zeros_like(mask)
        moved[:, max(0, -dx):size + min(0, -dx)] = mask[:, max(0, dx):size + min(0, dx)]
        shifted.append(np.packbits(moved, axis=1))
        window = mask[:, max(0, -dx):size + min(0, -dx)].sum(axis=1)
        window_ink.append(np.concatenate([[0], np.cumsum(window)]))
    return _Ink(np.stack(shifted), np.stack(window_ink, axis=1))


def _shifted_copy(a: _Ink, others: list[_Ink], radius: int = SHIFT_RADIUS,
                  iou: float = SHIFT_IOU) -> bool:
    """True when ``a`` is one of ``others`` moved by at most ``radius`` px: ink masks
    overlap > ``iou`` within the window both share. All of ``others`` and all column shifts
    are compared at once, one row shift at a time, on bit-packed rows (intersection by
    popcount, union = both inks - intersection)."""
    if not others:
        return False
    b = np.stack([other.shifted[radius] for other in others])  # unshifted masks
    b_window = np.stack([other.window_ink for other in others])  # (k, size + 1, shifts)
    size = b.shape[1]
    for dy in range(-radius, radius + 1):
        rows_a = slice(max(0, dy), size + min(0, dy))
        rows_b = slice(max(0, -dy), size + min(0, -dy))
        crop_a = a.shifted[:, rows_a]                                   # (shifts, rows, bytes)
        overlap = np.bitwise_count(crop_a[None] & b[:, None, rows_b]).sum(axis=(2, 3),
                                                                          dtype=np.int64)
        ink_a = np.bitwise_count(crop_a).sum(axis=(1, 2), dtype=np.int64)
        ink_b = b_window[:, rows_b.stop] - b_window[:, rows_b.start]
        union = ink_a[None] + ink_b - overlap
        if np.any((union > 0) & (overlap / np.maximum(union, 1) > iou)):
            return True
    return False


def draw_pool(cfg: DemoConfig, images_dir: Path, *, shift_radius: int = SHIFT_RADIUS,
              shift_iou: float = SHIFT_IOU) -> list[dict]:
    """Draw the ``cfg.images`` distinct pool images into ``images_dir`` (``img_NNNNNN.png``);
    return their truths. The pool depends only on the seed, ``images`` and ``image_size``.
    Two pool images of one truth never overlap by more than ``shift_iou`` (ink intersection
    over union) under any shift of up to ``shift_radius`` px."""
    # Separate streams: the image pool does not change when only the row counts change.
    image_rng = random.Random(f"shapes-demo/{cfg.seed}/images")
    truths = all_truths()
    pool: list[dict] = []
    while len(pool) < cfg.images:
        batch = list(truths)
        image_rng.shuffle(batch)  # every truth once per round: balanced attributes
        pool += batch
    pool = pool[: cfg.images]
    # No two pool images may be the same picture, not even shifted by a few pixels: near
    # copies are a flaw of their own (near_duplicate_image) and must come only from there.
    inks: dict[tuple, list[_Ink]] = {}
    for i, truth in enumerate(pool):
        for attempt in range(POOL_REDRAWS * 4):
            if attempt and attempt % POOL_REDRAWS == 0:  # this truth has no room left: swap it
                truth = pool[i] = image_rng.choice(truths)
            img = draw_shapes(**truth, image_size=cfg.image_size, rng=image_rng)
            ink = _ink(img, shift_radius)
            key = tuple(sorted(truth.items()))
            if not _shifted_copy(ink, inks.get(key, []), shift_radius, shift_iou):
                break
        inks.setdefault(key, []).append(ink)
        img.save(images_dir / Path(_image_ref(i)).name, format="PNG")
    return pool


def generate(out_dir: str | Path, config: DemoConfig) -> dict:
    """Write the demo corpus to ``out_dir`` (created if needed); return ``summary.json``'s dict.

    Files of a previous run in ``out_dir`` are overwritten; stale ``images/img_*.png``,
    ``images/corrupt_*.png`` and ``images/near_*`` beyond this run's counts are removed.
    """
    if not isinstance(config, DemoConfig):
        raise TypeError(f"config must be a DemoConfig, got {type(config).__name__}")
    cfg = config.resolved()
    counts = plan_counts(cfg)
    out = Path(out_dir)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)

    wanted = {Path(_image_ref(i)).name for i in range(cfg.images)}
    wanted |= {f"corrupt_{k:06d}.png" for k in range(counts["broken_corrupt_image"])}
    wanted |= {Path(_near_ref(k)).name for k in range(counts["near_duplicate_image"] // 2)}
    for stale in [*images_dir.glob("img_*.png"), *images_dir.glob("corrupt_*.png"),
                  *images_dir.glob("near_*")]:
        if stale.name not in wanted:
            stale.unlink()
    pool = draw_pool(cfg, images_dir)

    world = _World(pool, random.Random(f"shapes-demo/{cfg.seed}/rows"))
    llava_lines, llava_gt = _llava(world, counts, cfg.rows, images_dir, cfg.image_size,
                                   cfg.captions)
    sg_lines, sg_gt = _sharegpt(world, cfg.sharegpt_rows,
                                round(cfg.sharegpt_rows * cfg.text_only_share))
    pref_lines, pref_gt = _preference(world, cfg.preference_pairs,
                                      round(cfg.preference_pairs * cfg.text_only_share))

    (out / LLAVA_FILE).write_text("".join(f"{s}\n" for s in llava_lines), encoding="utf-8")
    _write_json_array(out / SHAREGPT_FILE, sg_lines)
    _write_json_array(out / PREFERENCE_FILE, pref_lines)
    all_gt = llava_gt + sg_gt + pref_gt
    (out / GROUND_TRUTH_FILE).write_text("".join(json.dumps(g) + "\n" for g in all_gt),
                                         encoding="utf-8")

    totals = Counter(f for g in all_gt for f in g["flaws"])
    summary = {
        "config": {f.name: getattr(cfg, f.name) for f in fields(cfg)},
        "images": {
            "pool": len(pool),
            "corrupt_files": counts["broken_corrupt_image"],
            "missing_refs": counts["broken_missing_image"],
            "near_copies": counts["near_duplicate_image"] // 2,
        },
        "files": {
            LLAVA_FILE: _file_summary(llava_gt),
            SHAREGPT_FILE: _file_summary(sg_gt),
            PREFERENCE_FILE: _file_summary(pref_gt),
        },
        "flaws": {f: totals[f] for f in FLAWS},
        "ground_truth_records": len(all_gt),
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / SOURCES_FILE).write_text(demo_sources_file(), encoding="utf-8")
    return summary


def demo_sources_file() -> str:
    """The demo's sources file, written beside its data (paths are relative to it): the three
    files in their formats, and the demo's reference CLIP from the package's data."""
    from demo.model import MODEL_NAME, REFERENCE_CONFIG, REFERENCE_WEIGHTS

    document = {
        "model": {"name": MODEL_NAME, "pretrained": str(REFERENCE_WEIGHTS),
                  "config": str(REFERENCE_CONFIG)},
        "sources": [{"name": "shapes_llava", "uri": LLAVA_FILE, "format": "llava"},
                    {"name": "shapes_sharegpt", "uri": SHAREGPT_FILE, "format": "sharegpt"},
                    {"name": "shapes_preference", "uri": PREFERENCE_FILE,
                     "format": "preference"}],
    }
    return ("# The demo world's sources, written by `python -m demo generate` (paths relative to\n"
            "# this file). The model is the demo's own reference CLIP; real data names a real one,\n"
            "# e.g. {name: ViT-L-14, pretrained: openai}.\n"
            + yaml.safe_dump(document, sort_keys=False))
