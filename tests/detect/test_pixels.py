"""What detectors read of the pixels (pixels.image_stats): size, grey-level spread and the RGB
thumbnail of each distinct image."""


import polars as pl
import pytest
from PIL import Image

from integrity.detect.pixels import THUMB_DIM, THUMB_SIDE, image_stats
from integrity.ingest.images import ImageRefused
from tests.detect.conftest import save_image


def test_stats_report_each_images_size_spread_and_thumbnail(tmp_path):
    halves = Image.new("RGB", (64, 32), "black")
    halves.paste((255, 255, 255), (0, 0, 32, 32))  # the left half white
    files = [save_image(tmp_path / "solid.png", Image.new("RGB", (40, 30), (10, 200, 30))),
             save_image(tmp_path / "halves.png", halves)]
    stats = image_stats([uri for uri, _ in files], [sha for _, sha in files], workers=1)
    assert stats["image_sha256"].to_list() == [sha for _, sha in files]
    assert stats["image_width"].to_list() == [40, 64]
    assert stats["image_height"].to_list() == [30, 32]
    solid_std, halves_std = stats["image_pixel_std"].to_list()
    assert solid_std == 0.0 and halves_std == pytest.approx(127.5, abs=1.0)
    thumbs = stats["image_thumb"].to_numpy().reshape(2, THUMB_SIDE, THUMB_SIDE, 3)
    assert (thumbs[0] == [10, 200, 30]).all()  # a solid image: its color everywhere
    assert (thumbs[1, :, :4] == 255).all() and (thumbs[1, :, -4:] == 0).all()
    assert stats.schema["image_thumb"] == pl.Array(pl.Float32, THUMB_DIM)


def test_an_image_listed_twice_is_read_once_and_reported_once(tmp_path):
    uri, sha = save_image(tmp_path / "a.png", Image.new("RGB", (8, 8), "red"))
    other_uri, other_sha = save_image(tmp_path / "b.png", Image.new("RGB", (9, 9), "blue"))
    stats = image_stats([uri, other_uri, uri], [sha, other_sha, sha], workers=2)
    assert stats["image_sha256"].to_list() == [sha, other_sha]
    assert stats["image_width"].to_list() == [8, 9]


def test_a_large_jpeg_decoded_in_draft_mode_still_reports_its_full_size(tmp_path):
    halves = Image.new("RGB", (1024, 768), "black")
    halves.paste((255, 255, 255), (0, 0, 512, 768))
    uri, sha = save_image(tmp_path / "big.jpg", halves, "JPEG", quality=90)
    stats = image_stats([uri], [sha])
    assert (stats["image_width"].item(), stats["image_height"].item()) == (1024, 768)
    assert stats["image_pixel_std"].item() == pytest.approx(127.5, abs=3)


def test_no_images_give_an_empty_frame_of_the_same_schema():
    stats = image_stats([], [])
    assert stats.is_empty()
    assert stats.schema == {"image_sha256": pl.String, "image_width": pl.Int32,
                            "image_height": pl.Int32, "image_pixel_std": pl.Float32,
                            "image_thumb": pl.Array(pl.Float32, THUMB_DIM)}


def test_an_image_changed_since_ingest_is_refused(tmp_path):
    uri, sha = save_image(tmp_path / "a.png", Image.new("RGB", (8, 8), "red"))
    save_image(tmp_path / "a.png", Image.new("RGB", (8, 8), "blue"))
    with pytest.raises(ImageRefused, match="changed since it was ingested"):
        image_stats([uri], [sha], workers=1)
