"""The RL probe's curves as one figure (integrity/report/rl_probe.py): a PNG Pillow can open, of
the size the figure asks for, drawn from the real runs_frame and curves_frame of hand-made runs
(one hacked, the rest not), and the markdown that carries it inline as a data: URI."""

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from integrity.decide.rl_probe import curves_frame, parse_runs, runs_frame
from integrity.report.rl_probe import INCIDENT_COLOR, rl_curves_markdown, rl_curves_png

REPORTED = [
    {"run": "hacked", "step": [0, 10, 20], "reward": [0.2, 0.5, 0.8],
     "reliance": [0.6, 0.3, 0.05]},
    {"run": "honest", "step": [0, 10, 20], "reward": [0.2, 0.4, 0.6],
     "reliance": [0.6, 0.65, 0.7]},
    {"run": 2, "step": [0, 5, 10, 20], "reward": [0.3, 0.3, 0.35, 0.4],
     "reliance": [0.5, 0.5, 0.45, 0.48]},
]


def frames(reported=REPORTED):
    runs = parse_runs(reported)
    return curves_frame(runs), runs_frame(runs, 0.1)


@pytest.fixture(scope="module")
def png() -> bytes:
    curves, summary = frames()
    assert summary["incident"].to_list() == [True, False, False]
    return rl_curves_png(curves, summary)


def red_pixels(data: bytes) -> int:
    """Pixels of the incident colour (drawn at alpha 0.95 over white and antialiased: within
    a few levels of it)."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    red = np.array([int(INCIDENT_COLOR[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels - red).max(axis=2) <= 16).sum())


def test_the_curves_are_a_png_pillow_opens_at_the_figure_s_size(png):
    assert png[:4] == b"\x89PNG"
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    assert image.size == (760, 280)  # figsize 7.6 x 2.8 inches at 100 dpi


def test_a_hacked_run_is_drawn_in_red_and_honest_runs_are_not(png):
    """Without the incident the figure holds no line of the incident colour."""
    assert red_pixels(png) > 50
    curves, summary = frames(REPORTED[1:])
    assert not summary["incident"].any()
    assert red_pixels(rl_curves_png(curves, summary)) == 0


def test_the_same_runs_draw_the_same_png(png):
    """The figure is attached to a content-addressed version: it must not change run to run."""
    assert rl_curves_png(*frames()) == png


def test_the_markdown_embeds_the_png_as_a_data_uri_that_round_trips(png):
    markdown = rl_curves_markdown(png)
    match = re.fullmatch(r"!\[RL probe curves\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)",
                         markdown)
    assert match, markdown[:80]
    assert base64.b64decode(match.group(1), validate=True) == png
