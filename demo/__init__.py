"""The demo world: a synthetic shapes VQA corpus with known flaws, to run and measure offline."""

from demo.generate import FLAWS, LLAVA_FLAWS, DemoConfig, DemoConfigError, generate
from demo.shapes import (
    COLORS,
    COUNTS,
    POSITIONS,
    SHAPES,
    SIZES,
    caption,
    describe,
    draw_shapes,
)

__all__ = [
    "COLORS",
    "COUNTS",
    "FLAWS",
    "LLAVA_FLAWS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "DemoConfig",
    "DemoConfigError",
    "caption",
    "describe",
    "draw_shapes",
    "generate",
]
