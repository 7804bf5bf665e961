"""The hard demo's vocabulary pools, each split into a tune half and a held-out half.

Every way the hard generator (``hard.py``) words a flaw is drawn from a pool here: caption
synonyms and sentence shapes, the metadata keys a caption hides under, question and answer
shapes, prose descriptions, judge wordings and ratings, hedges, blind question templates,
constant-answer questions, re-encoding recipes and the edits of templated copies.

``half(pool, split)`` splits a pool deterministically: entries are ranked by the sha256 of
their text and alternate between the halves, so the split depends on no one's choice. Editing
an entry can move the entries ranked after it to the other half: keep an edited pool's halves
as they were (tests/demo/test_hard.py pins them), or the held-out half is held out no more.
Detectors and policy defaults may be tuned on the ``tune`` half only; the ``heldout`` half
measures them (``bench/detection.py``).

The demo's reference CLIP knows the shapes world's own words only, so what the pixels are asked
to judge (answers) keeps the world's words (red, circle, two, on the left); the text around
them, and every caption, question and judge phrase, is free. A real CLIP reads any wording.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal, TypeVar

Split = Literal["tune", "heldout"]
SPLITS: tuple[str, ...] = ("tune", "heldout")
T = TypeVar("T")


def _key(entry: object) -> str:
    return hashlib.sha256(repr(entry).encode("utf-8")).hexdigest()


def half(pool: Sequence[T], split: Split) -> tuple[T, ...]:
    """The ``split`` half of ``pool``: entries ranked by sha256, alternating tune, heldout."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    ranked = sorted(pool, key=_key)
    return tuple(ranked[SPLITS.index(split)::2])


# --- Captions: synonyms of every attribute value (the world's own word is in both halves) ----
COLOR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("crimson", "scarlet", "ruby", "cherry", "brick-red", "vermilion"),
    "green": ("emerald", "lime", "jade", "grass-green", "leafy green", "forest green"),
    "blue": ("azure", "navy", "cobalt", "sapphire", "sky-blue", "ultramarine"),
    "yellow": ("golden", "lemon", "canary", "mustard", "sunflower", "butter-yellow"),
    "purple": ("violet", "lavender", "plum", "lilac", "amethyst", "mauve"),
    "orange": ("tangerine", "amber", "apricot", "pumpkin", "carrot-colored", "marigold"),
}
# (singular, plural) of each shape.
SHAPE_SYNONYMS: dict[str, tuple[tuple[str, str], ...]] = {
    "circle": (("disc", "discs"), ("dot", "dots"), ("round shape", "round shapes"),
               ("orb", "orbs"), ("ring-less disk", "ring-less disks"), ("roundel", "roundels")),
    "square": (("box", "boxes"), ("block", "blocks"), ("tile", "tiles"),
               ("four-sided shape", "four-sided shapes"), ("quadrilateral", "quadrilaterals"),
               ("cube face", "cube faces")),
    "triangle": (("wedge", "wedges"), ("three-sided shape", "three-sided shapes"),
                 ("delta", "deltas"), ("pyramid outline", "pyramid outlines"),
                 ("arrowhead", "arrowheads"), ("trigon", "trigons")),
}
COUNT_SYNONYMS: dict[int, tuple[str, ...]] = {
    1: ("a single", "1", "a lone", "just one", "one solitary", "only one"),
    2: ("a pair of", "2", "a couple of", "twin", "two matching", "a duo of"),
    3: ("a trio of", "3", "a group of three", "three separate", "a set of three", "triple"),
    4: ("a quartet of", "4", "a group of four", "four separate", "a set of four", "quadruple"),
}
POSITION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "left": ("on the left side", "at the left edge", "toward the left", "in the left part",
             "along the left margin", "to the west"),
    "right": ("on the right side", "at the right edge", "toward the right",
              "in the right part", "along the right margin", "to the east"),
    "top": ("near the top", "along the upper edge", "in the upper part", "up high",
            "at the top edge", "in the top area"),
    "bottom": ("near the bottom", "along the lower edge", "in the lower part", "down low",
               "at the bottom edge", "in the bottom area"),
    "center": ("in the middle", "at the centre", "in the central area", "dead center",
               "in the middle of the frame", "at the midpoint"),
}
SIZE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "small": ("tiny", "little", "petite", "miniature", "compact", "smallish"),
    "large": ("big", "huge", "sizable", "oversized", "hefty", "bulky"),
}
# Sentence shapes of a caption; {count} {size} {color} {shapes} {position} are filled in.
CAPTION_SHAPES: tuple[str, ...] = (
    "{count} {size} {color} {shapes} {position}",
    "a drawing of {count} {size} {color} {shapes} {position}",
    "{position}: {count} {size} {color} {shapes} on a white background",
    "illustration with {count} {size} {shapes} in {color}, placed {position}",
    "white canvas, {count} {color} {shapes} ({size}) {position}",
    "{count} {color} {shapes}, {size}, {position}",
    "simple graphic showing {count} {size} {color} {shapes} {position}",
    "clip art: {count} {size} {color} {shapes} sitting {position}",
    "{count} {size} {shapes} colored {color}, {position}",
    "flat icon art with {count} {color} {size} {shapes} {position}",
    "a white picture; {count} {size} {color} {shapes} appear {position}",
    "vector image of {count} {size} {color} {shapes} {position} of the frame",
)
# Where a record keeps its caption: a dotted path into the record (digits index lists).
CAPTION_KEYS: tuple[str, ...] = (
    "caption", "alt_text", "blip_caption", "coco_caption", "description", "text",
    "meta.caption", "annotations.0.caption", "source.original_caption", "llm_context",
    "image_info.alt", "labels.summary", "notes", "gpt_source_text", "raw.desc",
    "provenance.generator_prompt", "captions.0", "attributes.scene", "ocr_free_desc",
    "extra.vlm_caption",
)

# --- Questions and answers (answers keep the world's words: the pixels judge them) -----------
QUESTION_WORDINGS: dict[str, tuple[str, ...]] = {
    "color": ("What color are the shapes?", "Which color do the shapes have?",
              "What is the color of the shapes?", "Tell me the color of the shapes.",
              "What hue are the objects in the picture?", "Can you name the shapes' color?",
              "In what color are the shapes drawn?", "What colour are the figures?",
              "Identify the color of the shapes.", "The shapes are which color?"),
    "shape": ("What shape is shown?", "Which shape appears in the image?",
              "What kind of shape is drawn here?", "Name the shape in the picture.",
              "What geometric figure can you see?", "Which figure is depicted?",
              "What is the form of the objects?", "Identify the shape.",
              "What type of shape do you see?", "The objects are which shape?"),
    "count": ("How many shapes are there?", "How many shapes can you count?",
              "Count the shapes in this picture.", "What is the number of shapes?",
              "How many objects are drawn?", "How many figures appear?",
              "Tell me how many shapes there are.", "What number of shapes is shown?",
              "How many items are in the image?", "Give the count of the shapes."),
    "position": ("Where are the shapes?", "Where in the image are the shapes located?",
                 "In which part of the picture are the shapes?", "Where are the objects placed?",
                 "Which region holds the shapes?", "Where do the figures sit?",
                 "Whereabouts are the shapes?", "Where can the shapes be found?",
                 "In what area of the frame are the shapes?", "Locate the shapes."),
}
DESCRIBE_WORDINGS: tuple[str, ...] = (
    "Describe the image.", "What does the image show?", "Give a short description of this "
    "picture.", "Describe what you see.", "What is in this picture?", "Write a caption for the "
    "image.", "Describe the picture in one or two sentences.", "Summarize the contents of the "
    "image.", "What can you see here?", "Explain what this image depicts.",
)
# Short answers: {value} is the world's word ("red", "two", "circle"), {phrase} the position
# phrase ("on the left"); shapes take the plural when {plural} is used.
ANSWER_SHAPES: dict[str, tuple[str, ...]] = {
    "color": ("{Value}.", "{value}", "They are {value}.", "The shapes are {value}.",
              "{Value}!", "All of them are {value}.", "{Value}, all of them.",
              "The color is {value}."),
    "shape": ("{Value}.", "{value}", "They are {plural}.", "Each shape is a {value}.",
              "{Plural}.", "A {value}.", "The shapes are {plural}.", "It is a {value}."),
    "count": ("{Value}.", "{value}", "There are {value}.", "{Value} shapes.",
              "I count {value}.", "{Value} in total.", "The number is {value}.",
              "{Value} of them."),
    "position": ("{Phrase}.", "{phrase}", "They are {phrase}.", "The shapes are {phrase}.",
                 "{Phrase} of the image.", "All of them sit {phrase}.", "Mostly {phrase}.",
                 "You can find them {phrase}."),
}
# Prose descriptions (LLaVA's detail answers): {count} {size} {color} {shapes} {phrase}, and
# {be} (is/are) agreeing with the count.
PROSE_SHAPES: tuple[str, ...] = (
    "There {be} {count} {size} {color} {shapes} {phrase}.",
    "The image shows {count} {size} {color} {shapes} {phrase}.",
    "I can see {count} {color} {shapes}. They are {size} and sit {phrase}.",
    "{Count} {size} {color} {shapes} {be} drawn {phrase} on a white background.",
    "This picture contains {count} {color} {shapes} {phrase}. They look {size}.",
    "The picture has {count} {size} {color} {shapes}, placed {phrase}.",
    "In this image, {count} {size} {color} {shapes} appear {phrase}.",
    "A white background with {count} {size} {color} {shapes} {phrase}.",
    "We see {count} {color} {shapes} {phrase}; each one is {size}.",
    "{Count} {color} {shapes}, all {size}, are grouped {phrase}.",
)

# --- Blind answerability ---------------------------------------------------------------------
# The question states its own answer, in the world's word or another ({said} is a synonym or
# the word itself; {said_phrase} a position phrase).
BLIND_IN_QUESTION: dict[str, tuple[str, ...]] = {
    "color": ("The shapes in this picture are {said}. What color are they?",
              "Given these {said} shapes, what color are they?",
              "I painted the shapes {said}; which color are they?",
              "Look at the {said} shapes. What is their color?",
              "These shapes are {said}, right? What color are the shapes?",
              "Since the figures are colored {said}, what color are the figures?"),
    "count": ("There are {said} shapes in this picture. How many shapes are there?",
              "I drew {said} shapes here. How many shapes did I draw?",
              "With {said} shapes shown, how many shapes are there?",
              "Counting {said} objects, how many objects are in the image?",
              "The image holds {said} figures. What is the number of figures?",
              "Given {said} shapes, count the shapes."),
    "shape": ("This picture shows {said_plural}. What shape are they?",
              "Look at these {said_plural}. Which shape is drawn?",
              "The figures are {said_plural}; what shape are the figures?",
              "I see some {said_plural}. What kind of shape is this?",
              "These {said_plural} are which shape?",
              "Given the {said_plural} here, name the shape."),
    "position": ("The shapes are {said_phrase}. Where are the shapes?",
                 "Everything sits {said_phrase}. Where are the objects?",
                 "Since the figures are {said_phrase}, where are they located?",
                 "I placed the shapes {said_phrase}. Where did I place them?",
                 "With the shapes {said_phrase}, which part of the image holds them?",
                 "The drawing puts the shapes {said_phrase}; where are they?"),
}
# Questions whose answer is the same for every image of the world: (wordings, answer).
CONSTANT_QUESTIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("What color is the background?", "What is the background color of the image?"),
     "White."),
    (("Is the background of this picture white?", "Is the backdrop white?"), "Yes."),
    (("Is there any text written in the image?", "Does the picture contain any writing?"),
     "No."),
    (("Is this a photograph?", "Was this image taken with a camera?"), "No."),
    (("How many images are shown here?", "How many pictures do you see?"), "One."),
    (("Is the image in color?", "Does this picture have colors?"), "Yes."),
    (("Are there any people in the image?", "Can you see a person in this picture?"), "No."),
    (("Is the background plain?", "Is the backdrop plain and empty?"), "Yes."),
)

# --- Preference data flattened into SFT ------------------------------------------------------
# Judge wordings around the kept answer ({answer}); {r} is a rating.
JUDGE_WORDINGS: tuple[str, ...] = (
    "Response A is better. {answer}",
    "Chosen response: {answer}",
    "[[B]] {answer}",
    "Assistant 2's reply is more accurate: {answer}",
    "Between the two candidates, I prefer the first one. {answer}",
    "{answer} (Preferred over the alternative answer.)",
    "Output (b) wins. {answer}",
    "The second completion is superior: {answer}",
    "Winner: Response 1. {answer}",
    "Ranking: B > A. {answer}",
    "{answer}\nVerdict: answer A is the stronger of the two.",
    "After comparing both replies, option 2 is better. {answer}",
    "I would pick answer B. {answer}",
    "Both outputs are close, but A edges out B. {answer}",
    "{answer} This completion was selected by the annotators.",
    "Best response: {answer}",
    "Model A outperforms model B here. {answer}",
    "Judgement: the latter answer is more helpful. {answer}",
    "Preferred answer -> {answer}",
    "Of the two responses, the first one is better: {answer}",
    "Final verdict: [[A]]. {answer}",
    "Candidate 1 is the winning response. {answer}",
    "{answer} (ranked first of 2 candidate responses)",
    "Answer B is worse, so we keep answer A: {answer}",
    "Comparison result: response two is preferable. {answer}",
    "The human rater favored this reply. {answer}",
    "Rating: {r}/5. {answer}",
    "Score: {r}/10 - {answer}",
    "{answer} (rated {r} out of 5)",
    "Quality score = {r}/10. {answer}",
    "Overall: {r}/10. {answer}",
    "I'd give this response {r} stars. {answer}",
    "Helpfulness: {r}/5, accuracy: {r}/5. {answer}",
    "{answer}\n\nScore of the assistant: {r} out of 10",
)
# Rejected answers of preference pairs: wrong, and unsure ({value} is the wrong word).
HEDGES: tuple[str, ...] = (
    "I think it might be {value}.", "It could be {value}, but I am not sure.",
    "Possibly {value}.", "Maybe {value}? It is hard to tell.", "Probably {value}.",
    "Looks like {value} to me, though I can't be certain.", "Perhaps {value}.",
    "{Value}, I guess.", "I'd say {value}, but don't quote me.", "My best guess is {value}.",
    "It seems to be {value}.", "Hard to say - {value}?", "{Value}? Not entirely sure.",
    "It appears to be {value}, I suppose.", "I believe it is {value}, roughly.",
    "If I had to guess: {value}.", "Likely {value}.", "{Value}, most likely.",
    "Not certain, but {value}.", "Presumably {value}.",
)

# --- Near copies: how a copy of an image is re-encoded ---------------------------------------
# (format, JPEG quality or None, scale of the side, pixels cropped from each side (of 128)).
NEAR_RECIPES: tuple[tuple[str, int | None, float, int], ...] = tuple(
    (fmt, quality, scale, crop)
    for fmt, quality in (("JPEG", 60), ("JPEG", 70), ("JPEG", 80), ("JPEG", 90), ("JPEG", 95),
                         ("JPEG", 65), ("JPEG", 75), ("JPEG", 85), ("WEBP", 80), ("PNG", None))
    for scale, crop in ((1.0, 0), (0.9, 0), (0.8, 1), (0.95, 2))
)

# --- Templated copies: light edits of a whole dialog -----------------------------------------
COPY_EDITS: tuple[str, ...] = (
    "prefix:Please answer: ", "prefix:Question: ", "suffix: Thanks!", "suffix: Be brief.",
    "lower", "strip_punctuation", "swap:image>picture", "swap:shapes>objects",
    "prefix:Short question: ", "suffix: Answer in a word.", "answer_lower", "swap:picture>image",
)

# The pools split into halves (a dict holds one pool per key); the rest of this module is shared.
SPLIT_POOLS: tuple[str, ...] = (
    "COLOR_SYNONYMS", "SHAPE_SYNONYMS", "COUNT_SYNONYMS", "POSITION_SYNONYMS", "SIZE_SYNONYMS",
    "CAPTION_SHAPES", "CAPTION_KEYS", "QUESTION_WORDINGS", "DESCRIBE_WORDINGS", "ANSWER_SHAPES",
    "PROSE_SHAPES", "BLIND_IN_QUESTION", "CONSTANT_QUESTIONS", "JUDGE_WORDINGS", "HEDGES",
    "NEAR_RECIPES", "COPY_EDITS",
)


def halves_digest() -> str:
    """A digest of every split pool's tune half: it changes when an edit moves an entry across."""
    digest = hashlib.sha256()
    for name in SPLIT_POOLS:
        pools = globals()[name]
        for key, pool in (pools.items() if isinstance(pools, dict) else [(None, pools)]):
            digest.update(repr((name, key, half(pool, "tune"))).encode("utf-8"))
    return digest.hexdigest()[:16]


# --- Clean text rows that look like flaws to a careless detector -----------------------------
# Templates: {X} and {Y} are upper-case variable names, {x} a lower-case one, {n} < {m} numbers,
# {name} a person. Code whose brackets and comparisons are not judge verdicts:
CODE_ANSWERS: tuple[tuple[str, str], ...] = (
    ("How do I pick the rows of a numpy array `{x}` by a boolean mask {X}?",
     "Index with the mask: `rows = {x}[{X}]`. For two masks, `{x}[{X} & {Y}]` keeps rows where "
     "both hold."),
    ("How can I compare two scores in Python, {X} and {Y}, stored in `{x}`?",
     "```python\nif {x}[{X}] > {x}[{Y}]:\n    print('{X}')\n```\nThis prints {X} when the "
     "first score is higher."),
    ("Write a Python list `{x}` holding a nested list with the variable {X}.",
     "```python\n{x} = [[{X}]]\n```"),
    ("What does `{x}[{X}]` mean in JavaScript when {X} is a string?",
     "It reads the property named by {X}: `{x}[{X}]` is `{x}.{x}` when {X} is '{x}'."),
    ("How do I check which of two lists, `{x}` or `{x}2`, is longer?",
     "Use `len({x}) > len({x}2)`; `max([{x}, {x}2], key=len)` returns the longer one."),
    ("How do I write a {n} by {n} matrix {X} in LaTeX?",
     "Use $${X} = \\begin{{pmatrix}} {n} & {m} \\\\ {m} & {n} \\end{{pmatrix}}$$ and refer "
     "to it as $[{X}]$."),
)
# Ordinary text questions whose answers use rating and comparison words.
LOOKALIKE_QA: tuple[tuple[str, str], ...] = (
    ("A quiz has {m} questions and {name} got {n} right. What is the score?",
     "The score is {n} out of {m}."),
    ("What is {n}/{m} of {m}0?", "{n}/{m} of {m}0 is {n}0."),
    ("Which is better for a beginner who wants to learn {x}, Python or C?",
     "Python is usually better for a beginner learning {x}: its syntax is simpler."),
    ("How many stars does a restaurant need to be rated top in a guide with {m} levels?",
     "It is rated from one to {m} stars; {m} stars is the highest rating."),
    ("Is a sorted list better than a set for {n} membership tests on `{x}`?",
     "A set is better: each test is O(1) on average, a sorted list needs O(log n)."),
    ("What does a {m}/{m} rating usually mean on a site reviewing {x}?",
     "It is the highest rating: the reviewer of {x} was fully satisfied."),
)
NAMES: tuple[str, ...] = ("Ana", "Ben", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo",
                          "Jo", "Kai", "Lea", "Milo", "Nia", "Omar", "Pia")
VARIABLES: tuple[str, ...] = ("data", "rows", "table", "scores", "items", "grid", "frame",
                              "values", "batch", "pixels", "words", "points", "cells", "nodes")
# Follow-up turns of long text dialogs (the same words, different dialogs before them).
FOLLOW_UPS: tuple[str, ...] = ("continue", "Continue.", "Go on.", "Keep going.", "And then?",
                               "Please continue.")
STORY_OPENINGS: tuple[str, ...] = (
    "Tell me a story about a lighthouse keeper.", "Explain how rain forms.",
    "Describe a day at a busy market.", "Tell me about the history of the bicycle.",
    "Explain how a refrigerator keeps food cold.", "Tell me a story about a lost cat.",
    "Explain why the sky is blue.", "Describe how bread is baked.",
    "Tell me about the first trip to the moon.", "Explain how bees make honey.",
)
# Story sentences: one word from each list.
STORY_SUBJECTS: tuple[str, ...] = ("The keeper", "A traveller", "The old baker", "A young pilot",
                                   "The farmer", "A stray dog", "The engineer", "A small boat",
                                   "The teacher", "A curious child", "The merchant", "A storm")
STORY_VERBS: tuple[str, ...] = ("crossed", "watched", "repaired", "followed", "painted",
                                "counted", "carried", "remembered", "opened", "climbed",
                                "measured", "heard")
STORY_OBJECTS: tuple[str, ...] = ("the bridge", "a lantern", "the north road", "an old map",
                                  "the harbour", "a wooden gate", "the river", "a silver bell",
                                  "the valley", "a broken clock", "the market square",
                                  "a long letter")
STORY_TIMES: tuple[str, ...] = ("at dawn", "before noon", "in the rain", "after supper",
                                "by moonlight", "in early spring", "late at night",
                                "on a windy day", "during the festival", "at the end of summer")
