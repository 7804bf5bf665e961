"""What detectors read of the pixels (pixels.image_stats, pixels.map_images): size, grey-level
spread and the RGB thumbnail of each distinct image, read in order by threads."""

import threading
import time

import polars as pl
import pytest
from PIL import Image

from integrity.detect.pixels import (
    PROBE_ITEMS,
    THREADED_ITEM_SECONDS,
    THUMB_DIM,
    THUMB_SIDE,
    image_stats,
    map_images,
)
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


def test_map_images_keeps_the_input_order_whatever_the_threads():
    items = list(range(40))
    assert map_images(lambda item: item * item, items, workers=4) == [i * i for i in items]
    assert map_images(lambda item: item * item, items, workers=1) == [i * i for i in items]


def test_map_images_with_one_worker_reads_in_the_calling_thread():
    seen = set()

    def read(item):
        seen.add(threading.get_ident())
        return item

    map_images(read, ["a", "b", "c"], workers=1)
    assert seen == {threading.get_ident()}


def test_remote_images_are_read_by_threads_at_once():
    seen, barrier = set(), threading.Barrier(2, timeout=10)

    def read_together(item):  # both items in flight at once: two threads at work
        barrier.wait()
        seen.add(threading.get_ident())
        return item

    items = ["s3://bucket/a.png", "s3://bucket/b.png"]
    assert map_images(read_together, items, workers=2) == items
    assert len(seen) == 2 and threading.get_ident() not in seen


def test_cheap_local_reads_stay_on_this_thread_and_costly_ones_go_to_threads():
    """Reading a small image is Python's per-call work, which threads only make contend for the
    GIL (twice as slow on two); decoding a large one releases the GIL, and threads pay."""
    def reader(seconds):
        seen = []

        def read(item):
            time.sleep(seconds)
            seen.append(threading.get_ident())
            return item
        return read, seen

    items = [f"/images/{i}.png" for i in range(PROBE_ITEMS * 3)]
    cheap, seen = reader(0)
    assert map_images(cheap, items, workers=2) == items
    assert set(seen) == {threading.get_ident()}
    costly, seen = reader(THREADED_ITEM_SECONDS * 2)
    assert map_images(costly, items, workers=2) == items
    assert set(seen[:PROBE_ITEMS]) == {threading.get_ident()}  # timed here first
    assert threading.get_ident() not in seen[PROBE_ITEMS:]
