"""Image sanity (image_sanity.score_image_sanity and its image_defect flaw): each pair gets its
image's shortest side, aspect ratio and pixel spread; images too small, elongated or blank are
flagged."""

import polars as pl
from PIL import Image

from integrity.detect.image_sanity import ImageDefect, score_image_sanity
from integrity.detect.pixels import image_stats
from integrity.detect.registry import Columns, detector
from tests.detect.conftest import save_image


def test_blank_tiny_and_wide_images_measure_as_such_and_a_text_pair_stays_null(tmp_path,
                                                                             pairs_of):
    files = {
        "blank": save_image(tmp_path / "blank.png", Image.new("RGB", (64, 64), "white")),
        "tiny": save_image(tmp_path / "tiny.png", Image.effect_noise((8, 8), 60).convert("RGB")),
        "wide": save_image(tmp_path / "wide.png",
                           Image.effect_noise((400, 40), 60).convert("RGB")),
    }
    rows = [{"id": name, "image": sha, "uri": uri, "qa": [("Q?", "A.")]}
            for name, (uri, sha) in files.items()]
    rows.append({"id": "text", "qa": [("Q?", "A.")]})
    pairs = pairs_of(rows)
    uris, shas = zip(*files.values(), strict=True)
    scores = score_image_sanity(pairs, image_stats(list(uris), list(shas)))
    assert scores["image_min_side"].to_list() == [64, 8, 40, None]
    assert scores["image_aspect"].to_list()[:3] == [1.0, 1.0, 10.0]
    std = scores["image_pixel_std"].to_list()
    assert std[0] == 0.0 and std[1] > 10 and std[3] is None


def _stats(**sizes) -> pl.DataFrame:
    """Image statistics as pixels.image_stats reports them: sha -> (width, height, std)."""
    return pl.DataFrame(
        [(sha, width, height, std) for sha, (width, height, std) in sizes.items()],
        schema={"image_sha256": pl.String, "image_width": pl.Int32, "image_height": pl.Int32,
                "image_pixel_std": pl.Float32}, orient="row")


def test_every_pair_of_an_image_gets_its_measures_in_pair_order(pairs_of):
    pairs = pairs_of([
        {"id": "a", "image": "tall", "qa": [("Q1?", "A."), ("Q2?", "B.")]},
        {"id": "b", "image": "wide", "qa": [("Q?", "A.")]},
        {"id": "c", "image": "tall", "qa": [("Q?", "C.")]},
    ])
    scores = score_image_sanity(pairs, _stats(wide=(300, 100, 40.0), tall=(50, 200, 12.5)))
    assert scores.height == pairs.height == 4
    assert scores["image_min_side"].to_list() == [50, 50, 100, 50]
    assert scores["image_aspect"].to_list() == [4.0, 4.0, 3.0, 4.0]  # long side / short side
    assert scores["image_pixel_std"].to_list() == [12.5, 12.5, 40.0, 12.5]
    assert scores.schema["image_aspect"] == pl.Float32


def test_an_image_without_statistics_reads_as_unmeasured(pairs_of):
    pairs = pairs_of([{"id": "a", "image": "known", "qa": [("Q?", "A.")]},
                      {"id": "b", "image": "unread", "qa": [("Q?", "A.")]}])
    scores = score_image_sanity(pairs, _stats(known=(64, 64, 30.0)))
    assert scores.row(0) == (64, 1.0, 30.0)
    assert scores.row(1) == (None, None, None)


def _flagged(section: ImageDefect, scores: pl.DataFrame) -> list[bool]:
    (flaw,) = detector("image_sanity").flaws
    assert flaw.name == "image_defect"
    return scores.select(flaw.flag(section, Columns(set(scores.columns)))).to_series().to_list()


def test_images_too_small_too_elongated_or_blank_are_defects_and_others_are_not(pairs_of):
    pairs = pairs_of([{"id": name, "image": name, "qa": [("Q?", "A.")]}
                      for name in ("fine", "small", "long", "blank", "edge")] +
                     [{"id": "text", "qa": [("Q?", "A.")]}])
    scores = score_image_sanity(pairs, _stats(
        fine=(128, 96, 40.0), small=(31, 64, 40.0), long=(410, 100, 40.0),
        blank=(128, 128, 1.5), edge=(128, 32, 2.0)))  # on every default cut: not flagged
    assert _flagged(ImageDefect(), scores) == [False, True, True, True, False, None]
    lenient = ImageDefect(min_side=16, max_aspect=5.0, min_pixel_std=1.0)
    assert _flagged(lenient, scores) == [False, False, False, False, False, None]
