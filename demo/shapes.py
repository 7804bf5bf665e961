"""The shapes world: its vocabulary, how an image is drawn, and how it is described in words.

An image shows 1-4 copies of one shape in one color on a white background, clustered in one
region (left, right, top, bottom, center), all small or all large. Everything about the pixels
is therefore captured by five attributes, the *truth* of the image::

    {"color": "red", "shape": "circle", "count": 2, "position": "left", "size": "small"}

Shapes are drawn without anti-aliasing, so every pixel is either the background white or
exactly the palette RGB of the truth color; that keeps the world cleanly learnable by a tiny
CLIP and lets tests check the pixels exactly.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping

from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 210, 20),
    "purple": (140, 50, 180),
    "orange": (250, 130, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COUNTS: tuple[int, ...] = (1, 2, 3, 4)
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")
SIZES: tuple[str, ...] = ("small", "large")
ATTRIBUTES: tuple[str, ...] = ("color", "shape", "count", "position", "size")

BACKGROUND: tuple[int, int, int] = (255, 255, 255)
BACKGROUND_NAME = "white"

COUNT_WORDS: dict[int, str] = {1: "one", 2: "two", 3: "three", 4: "four"}
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}

# Regions as fractions of the image side (x0, y0, x1, y1). Left/right/center do not overlap;
# the side regions touch the top/bottom ones only in small corners, so a cluster's region is
# unambiguous from its pixels.
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "left": (0.03, 0.28, 0.33, 0.72),
    "right": (0.67, 0.28, 0.97, 0.72),
    "top": (0.28, 0.03, 0.72, 0.33),
    "bottom": (0.28, 0.67, 0.72, 0.97),
    "center": (0.33, 0.33, 0.67, 0.67),
}
# Shape diameter as a fraction of the image side. "large" fits a quarter of the smallest region.
DIAMETERS: dict[str, float] = {"small": 0.08, "large": 0.14}


def all_truths() -> list[dict]:
    """Every distinct truth of the world (6 colors x 3 shapes x 4 counts x 5 positions x 2 sizes)."""
    return [
        {"color": c, "shape": s, "count": n, "position": p, "size": z}
        for c, s, n, p, z in itertools.product(COLORS, SHAPES, COUNTS, POSITIONS, SIZES)
    ]


def validate_truth(attrs: Mapping) -> None:
    """Raise ValueError naming the attribute when ``attrs`` is not a truth of this world."""
    allowed = {"color": tuple(COLORS), "shape": SHAPES, "count": COUNTS,
               "position": POSITIONS, "size": SIZES}
    for name, values in allowed.items():
        if attrs.get(name) not in values:
            raise ValueError(f"{name} must be one of {list(values)}, got {attrs.get(name)!r}")


def draw_shapes(
    color: str,
    shape: str,
    count: int,
    position: str,
    size: str,
    image_size: int = 128,
    *,
    rng: random.Random | None = None,
) -> Image.Image:
    """Draw ``count`` copies of ``shape`` in ``color`` clustered at ``position``; return RGB.

    The region of ``position`` is cut into a 2x2 grid; ``count`` distinct cells are picked and
    each shape is placed in its cell with a small jitter, so copies never overlap. ``rng``
    chooses cells and jitter (None -> ``random.Random(0)``: a fixed layout).
    """
    validate_truth({"color": color, "shape": shape, "count": count, "position": position,
                    "size": size})
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    rng = rng if rng is not None else random.Random(0)
    img = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    fill = COLORS[color]
    d = max(3, round(DIAMETERS[size] * image_size))
    x0, y0, x1, y1 = (v * image_size for v in REGIONS[position])
    cw, ch = (x1 - x0) / 2, (y1 - y0) / 2
    for cell in sorted(rng.sample(range(4), count)):
        cx0, cy0 = x0 + (cell % 2) * cw, y0 + (cell // 2) * ch
        left = round(cx0 + rng.uniform(0, max(0.0, cw - d)))
        top = round(cy0 + rng.uniform(0, max(0.0, ch - d)))
        box = (left, top, left + d - 1, top + d - 1)
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            inset = round(d * 0.06)  # a square of the same width looks bigger than a circle
            draw.rectangle((box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset),
                           fill=fill)
        else:
            draw.polygon([((box[0] + box[2]) / 2, box[1]), (box[0], box[3]), (box[2], box[3])],
                         fill=fill)
    return img


def _noun(attrs: Mapping) -> str:
    return attrs["shape"] + ("" if attrs["count"] == 1 else "s")


def caption(attrs: Mapping) -> str:
    """Metadata-style caption, e.g. ``"two small red circles on the left"``."""
    return (f"{COUNT_WORDS[attrs['count']]} {attrs['size']} {attrs['color']} {_noun(attrs)} "
            f"{POSITION_PHRASES[attrs['position']]}")


def describe(attrs: Mapping) -> str:
    """One-sentence description, e.g. ``"There are two small red circles on the left."``."""
    verb = "is" if attrs["count"] == 1 else "are"
    return f"There {verb} {caption(attrs)}."


def short_answer(attribute: str, value: object) -> str:
    """The one-word answer for an attribute value: ``"Red."``, ``"Two."``, ``"Circle."``."""
    word = COUNT_WORDS[value] if attribute == "count" else str(value)
    return word.capitalize() + "."
