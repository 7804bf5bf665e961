"""ImageResolver: resolving refs against a root, safe decoding, content-addressed embedded blobs."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from integrity.ingest.images import (
    PROBE_ITEMS,
    THREADED_ITEM_SECONDS,
    ImageRefused,
    ImageResolver,
    check_decodable,
    map_images,
)
from integrity.ingest.schema import QuarantineReason

R = QuarantineReason


def image_bytes(fmt: str = "PNG", color=(10, 120, 240), size=(32, 24)) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, color)
    for x in range(size[0]):
        image.putpixel((x, x % size[1]), (255 - x * 5 % 256, 30, 60))
    image.save(buffer, fmt)
    return buffer.getvalue()


def refused(resolver: ImageResolver, ref: str) -> QuarantineReason:
    with pytest.raises(ImageRefused) as error:
        resolver.resolve(ref)
    return error.value.reason


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "coco").mkdir(parents=True)
    (root / "coco" / "a.png").write_bytes(image_bytes())
    (tmp_path / "outside.png").write_bytes(image_bytes(color=(1, 2, 3)))
    return root


# --- resolve ---------------------------------------------------------------------------------
def test_resolve_local_refs(root: Path, tmp_path: Path):
    resolver = ImageResolver(str(root))
    assert resolver.resolve("coco/a.png") == str(root / "coco" / "a.png")
    assert resolver.resolve("coco/../coco/a.png") == str(root / "coco" / "a.png")
    assert resolver.resolve(str(root / "coco" / "a.png")) == str(root / "coco" / "a.png")
    # A ref need not exist to resolve; reading it is what fails.
    assert resolver.resolve("coco/none.png") == str(root / "coco" / "none.png")
    assert resolver.resolve(f"file://{root}/coco/a.png") == str(root / "coco" / "a.png")


@pytest.mark.parametrize(
    "ref",
    ["../outside.png", "coco/../../outside.png", "{tmp}/outside.png", "file://{tmp}/outside.png",
     "/etc/passwd", "s3://bucket/key.png", "http://169.254.169.254/latest/meta-data"],
)
def test_resolve_refuses_refs_outside_a_local_root(root: Path, tmp_path: Path, ref: str):
    resolver = ImageResolver(str(root))
    assert refused(resolver, ref.format(tmp=tmp_path)) == R.IMAGE_OUTSIDE_ROOT


def test_resolve_refuses_a_sibling_folder_that_shares_the_prefix(root: Path, tmp_path: Path):
    sibling = tmp_path / "root-evil"
    sibling.mkdir()
    resolver = ImageResolver(str(root))
    assert refused(resolver, "../root-evil/x.png") == R.IMAGE_OUTSIDE_ROOT
    assert refused(resolver, str(sibling / "x.png")) == R.IMAGE_OUTSIDE_ROOT


def test_resolve_follows_symlinks(root: Path, tmp_path: Path):
    os.symlink(tmp_path / "outside.png", root / "out.png")
    os.symlink(root / "coco" / "a.png", root / "alias.png")
    resolver = ImageResolver(str(root))
    assert refused(resolver, "out.png") == R.IMAGE_OUTSIDE_ROOT
    assert resolver.resolve("alias.png") == str(root / "coco" / "a.png")
    # A root that is itself a link is taken at its real place.
    os.symlink(root, tmp_path / "root-link")
    linked = ImageResolver(str(tmp_path / "root-link"))
    assert linked.resolve("coco/a.png") == str(root / "coco" / "a.png")


def test_a_linked_folder_is_followed_again_by_each_check(root: Path, tmp_path: Path):
    """Folders' real places are remembered within one check_many, never across: a folder link
    swapped to point out of the root during an ingest is refused from the next batch on."""
    (tmp_path / "elsewhere").mkdir()
    for folder in (root / "coco", tmp_path / "elsewhere"):
        for name in ("b.png", "c.png"):
            (folder / name).write_bytes(image_bytes(color=(len(name), 9, 9)))
    os.symlink(root / "coco", root / "linked")
    resolver = ImageResolver(str(root))
    first, inside_link = resolver.check_many(["linked/a.png", "linked/b.png"])
    assert first.uri == str(root / "coco" / "a.png") and inside_link.reason is None
    os.remove(root / "linked")
    os.symlink(tmp_path / "elsewhere", root / "linked")
    [swapped] = resolver.check_many(["linked/c.png"])
    assert swapped.reason == R.IMAGE_OUTSIDE_ROOT.value


def test_a_name_that_is_a_link_in_a_known_folder_is_followed(root: Path, tmp_path: Path):
    resolver = ImageResolver(str(root))
    assert resolver.resolve("coco/a.png") == str(root / "coco" / "a.png")  # the folder is known
    os.symlink(tmp_path / "outside.png", root / "coco" / "out.png")
    os.symlink(root / "coco" / "a.png", root / "coco" / "alias.png")
    assert refused(resolver, "coco/out.png") == R.IMAGE_OUTSIDE_ROOT
    assert resolver.resolve("coco/alias.png") == str(root / "coco" / "a.png")
    assert resolver.resolve("coco/../coco/./a.png") == str(root / "coco" / "a.png")
    assert resolver.resolve("coco/") == str(root / "coco")


def test_resolve_under_an_s3_root():
    resolver = ImageResolver("s3://bucket/images/")
    assert resolver.resolve("coco/a.jpg") == "s3://bucket/images/coco/a.jpg"
    assert resolver.resolve("s3://bucket/images/coco/a.jpg") == "s3://bucket/images/coco/a.jpg"
    for ref in ["../secret.jpg", "coco/../../secret.jpg", "s3://bucket/other/a.jpg",
                "s3://bucket/images-evil/a.jpg", "s3://other-bucket/images/a.jpg",
                "s3://bucket/images/../secret.jpg", "/etc/passwd"]:
        assert refused(resolver, ref) == R.IMAGE_OUTSIDE_ROOT, ref


def test_resolve_without_a_root_and_bad_refs(root: Path):
    assert refused(ImageResolver(None), "coco/a.png") == R.MISSING_IMAGE
    assert refused(ImageResolver(str(root)), "coco/a.png\x00.jpg") == R.MISSING_IMAGE


# --- check_decodable -------------------------------------------------------------------------
def test_check_decodable_formats():
    assert check_decodable(image_bytes("PNG")) == "PNG"
    assert check_decodable(image_bytes("JPEG")) == "JPEG"
    assert check_decodable(image_bytes("WEBP")) == "WEBP"


@pytest.mark.parametrize(
    "data",
    [b"", b"definitely not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, os.urandom(2048)],
    ids=["empty", "text", "png-signature-only", "random"],
)
def test_check_decodable_garbage(data: bytes):
    with pytest.raises(ImageRefused) as error:
        check_decodable(data)
    assert error.value.reason == R.CORRUPT_IMAGE


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_check_decodable_truncated(fmt: str):
    data = image_bytes(fmt, size=(128, 96))
    with pytest.raises(ImageRefused) as error:
        check_decodable(data[: len(data) * 2 // 3])
    assert error.value.reason == R.CORRUPT_IMAGE


def test_check_decodable_pixel_budget():
    data = image_bytes(size=(100, 100))
    assert check_decodable(data, max_pixels=10_000) == "PNG"
    with pytest.raises(ImageRefused) as error:
        check_decodable(data, max_pixels=9_999)
    assert error.value.reason == R.IMAGE_TOO_LARGE
    assert "100x100" in error.value.detail


def test_check_decodable_decompression_bomb():
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, "PNG")  # ~50 KB announcing 400M pixels
    assert len(buffer.getvalue()) < 200_000
    with pytest.raises(ImageRefused) as error:
        check_decodable(buffer.getvalue())
    assert error.value.reason == R.IMAGE_TOO_LARGE


# --- check_ref -------------------------------------------------------------------------------
def test_check_ref(root: Path):
    resolver = ImageResolver(str(root))
    ok = resolver.check_ref("coco/a.png")
    assert ok.uri == str(root / "coco" / "a.png")
    assert ok.sha256 == hashlib.sha256((root / "coco" / "a.png").read_bytes()).hexdigest()
    assert ok.reason is None
    assert resolver.check_ref("coco/none.png").reason == R.MISSING_IMAGE
    assert resolver.check_ref("coco").reason == R.MISSING_IMAGE  # a folder is not an image
    assert resolver.check_ref("../outside.png").reason == R.IMAGE_OUTSIDE_ROOT
    (root / "bad.png").write_bytes(b"nope")
    assert resolver.check_ref("bad.png").reason == R.CORRUPT_IMAGE
    small = ImageResolver(str(root), max_bytes=10)
    assert small.check_ref("coco/a.png").reason == R.IMAGE_TOO_LARGE
    tight = ImageResolver(str(root), max_pixels=100)
    assert tight.check_ref("coco/a.png").reason == R.IMAGE_TOO_LARGE


def test_an_image_read_in_pieces_or_grown_since_its_size_was_taken(root: Path, monkeypatch):
    """Reads go on to the end of the file (a network file system may return it in pieces),
    and never past the byte budget, whatever size the file had when it was opened."""
    data = (root / "coco" / "a.png").read_bytes()
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, size: real_read(fd, min(size, 7)))
    assert ImageResolver(str(root)).check_ref("coco/a.png").sha256 == (
        hashlib.sha256(data).hexdigest())
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result(
        (*real_fstat(fd)[:6], 10, *real_fstat(fd)[7:])))  # it had 10 bytes when opened
    grown = ImageResolver(str(root), max_bytes=len(data) - 1).check_ref("coco/a.png")
    assert grown.reason == R.IMAGE_TOO_LARGE.value
    assert ImageResolver(str(root)).check_ref("coco/a.png").reason is None


# --- check_embedded --------------------------------------------------------------------------
def blobs(blob_root: Path) -> list[Path]:
    return sorted(path for path in blob_root.rglob("*") if path.is_file())


def test_check_embedded_writes_once_per_hash(tmp_path: Path):
    blob_root = tmp_path / "blobs"
    resolver = ImageResolver(None, blob_root=str(blob_root))
    data = image_bytes()
    digest = hashlib.sha256(data).hexdigest()
    first = resolver.check_embedded(data)
    assert first.sha256 == digest and first.reason is None
    assert first.uri == f"{blob_root}/{digest[:2]}/{digest}.png"
    blob = Path(first.uri)
    assert blob.read_bytes() == data
    os.utime(blob, ns=(1_000_000_000, 1_000_000_000))  # mark it: a rewrite would change this
    again = ImageResolver(None, blob_root=str(blob_root) + "/").check_embedded(data)
    assert again == first
    assert blob.stat().st_mtime_ns == 1_000_000_000
    jpeg = image_bytes("JPEG")
    other = resolver.check_embedded(jpeg)
    assert other.uri.endswith(".jpeg") and other.uri != first.uri
    assert blobs(blob_root) == sorted([blob, Path(other.uri)])


def test_check_embedded_refuses_bad_bytes_without_writing(tmp_path: Path):
    blob_root = tmp_path / "blobs"
    resolver = ImageResolver(None, blob_root=str(blob_root))
    bad = resolver.check_embedded(b"garbage")
    assert bad.reason == R.CORRUPT_IMAGE and bad.uri is None
    assert bad.sha256 == hashlib.sha256(b"garbage").hexdigest()
    big = ImageResolver(None, blob_root=str(blob_root), max_bytes=16).check_embedded(image_bytes())
    assert big.reason == R.IMAGE_TOO_LARGE
    assert blobs(blob_root) == []


def test_check_embedded_needs_a_blob_root():
    with pytest.raises(ValueError, match="blob_root"):
        ImageResolver(None).check_embedded(image_bytes())


def test_check_embedded_concurrent_writers_of_one_blob(tmp_path: Path):
    # Preference pairs carry the same image twice; threads may write one blob at the same time.
    data = image_bytes(size=(256, 256))
    for attempt in range(5):
        blob_root = tmp_path / f"blobs{attempt}"
        resolver = ImageResolver(None, blob_root=str(blob_root))
        with ThreadPoolExecutor(max_workers=16) as pool:
            checks = list(pool.map(resolver.check_embedded, [data] * 32))
        assert {check.uri for check in checks} == {checks[0].uri}
        assert all(check.reason is None for check in checks)
        assert blobs(blob_root) == [Path(checks[0].uri)]  # no .partial leftovers
        assert Path(checks[0].uri).read_bytes() == data


def test_check_many_keeps_input_order(root: Path, tmp_path: Path):
    resolver = ImageResolver(str(root), blob_root=str(tmp_path / "blobs"), workers=4)
    embedded = image_bytes(color=(0, 255, 0))
    items = ["coco/a.png", embedded, "missing.png", "coco/a.png", embedded, b"junk"]
    checks = resolver.check_many(items)
    assert [check.reason for check in checks] == [
        None, None, R.MISSING_IMAGE, None, None, R.CORRUPT_IMAGE
    ]
    assert checks[0] == checks[3]
    assert checks[1] == checks[4]
    assert checks[1].sha256 == hashlib.sha256(embedded).hexdigest()
    assert resolver.check_many([]) == []


class _ThreadRecordingResolver(ImageResolver):
    """Records the thread that checks each ref, optionally paying ``cost`` seconds a ref (what
    a big image's decoding costs)."""

    def __init__(self, *args, cost: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.cost, self.threads = cost, []

    def check_ref(self, ref: str):
        if self.cost:
            time.sleep(self.cost)
        self.threads.append(threading.get_ident())
        return super().check_ref(ref)


def _many_small_images(root: Path, count: int) -> list[str]:
    for i in range(count):
        (root / f"small_{i}.png").write_bytes(image_bytes(color=(i % 256, 40, 90), size=(16, 16)))
    return [f"small_{i}.png" for i in range(count)]


def test_check_many_keeps_cheap_local_images_on_the_calling_thread(root: Path):
    """Small local images cost Python's per-call work, not decoding: two threads only fought
    for the GIL (ingest's image checks 1.73 s -> 1.11 s on 5,400 images once they stopped)."""
    refs = _many_small_images(root, PROBE_ITEMS * 3)
    resolver = _ThreadRecordingResolver(str(root), workers=2)
    checks = resolver.check_many(refs)
    assert all(check.reason is None for check in checks)
    assert set(resolver.threads) == {threading.get_ident()}


def test_check_many_sends_costly_local_images_to_threads(root: Path):
    refs = _many_small_images(root, PROBE_ITEMS * 2)
    resolver = _ThreadRecordingResolver(str(root), workers=2, cost=THREADED_ITEM_SECONDS * 2)
    checks = resolver.check_many(refs)
    assert [check.uri for check in checks] == [resolver.resolve(ref) for ref in refs]  # order
    assert set(resolver.threads[:PROBE_ITEMS]) == {threading.get_ident()}  # timed here first
    assert threading.get_ident() not in resolver.threads[PROBE_ITEMS:]


# --- map_images: threads only where they pay -----------------------------------------------
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
