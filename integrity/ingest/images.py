"""Image refs: resolve against a source's image root, read, hash, and decode safely.

An image ref is what a dataset row names: a path relative to the source's image root (LLaVA's
``coco/train2017/0001.jpg``), an absolute path inside that root, an ``s3://`` URI, or embedded
bytes (HF parquet). Every image is read once per ingest, hashed (sha256 of the bytes) and decoded
under a pixel budget, so a missing, corrupt or hostile file quarantines its row instead of failing
the run, and a ref that escapes the image root is refused before anything is opened.

This module is the only one that opens an image (a test holds every other module to it). Later
stages read through ``read_image_bytes`` / ``opened_image`` / ``load_rgb`` with the sha256 ingest
recorded: regular files only (a FIFO would block forever), a byte budget, the bytes must still
hash to what ingest checked (an image swapped since is refused, never scored), then the same
format allow-list, pixel budget and first frame as ingest.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import time
import posixpath
import re
import stat
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import fsspec
from PIL import Image

from integrity.errors import UserError
from integrity.ingest.schema import QuarantineReason

# Above this many pixels an image is refused: a small file that decodes to gigabytes is an attack.
MAX_IMAGE_PIXELS = 64_000_000
MAX_IMAGE_BYTES = 64 * 1024 * 1024
# Only raster formats training data uses; others (EPS runs Ghostscript) are not images to us.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
# How Pillow's readers say "a valid file, but a mode or layout I do not decode".
_UNSUPPORTED_MESSAGE = re.compile(r"unknown (pixel mode|data organization)|unsupported", re.I)
# Decoding at this size is enough to prove a JPEG is whole while skipping most DCT work.
_DRAFT_SIZE = (64, 64)


class ImageRefused(UserError):
    """An image that cannot be used, with the quarantine reason that names why."""

    def __init__(self, reason: QuarantineReason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = str(self)  # as redacted by UserError


@dataclass(frozen=True)
class ImageCheck:
    """Outcome for one ref: where it was read, its hash, or why it was refused."""

    uri: str | None
    sha256: str | None
    reason: str | None = None
    detail: str | None = None


def _is_url(ref: str) -> bool:
    return "://" in ref


def image_threads(remote: bool) -> int:
    """Threads that read and decode images at once (threads, not processes: PIL releases the
    GIL while decoding): one per core for local files, where more only contend; for remote
    ones, whose wait is the network's, four per core up to 32."""
    cores = os.cpu_count() or 1
    return min(32, 4 * cores) if remote else cores


# Items read on the calling thread first, to time them (see map_images).
PROBE_ITEMS = 32
# Below this many seconds an item, reading is Python's per-call work, not decoding: threads
# only contend for the GIL (16k 32 px PNGs: 3.8 s on one thread, 8.2 s on two). Above it,
# PIL's decoding (which releases the GIL) dominates and threads pay (640x480 JPEGs: 1.9x on two).
THREADED_ITEM_SECONDS = 0.001


def map_images(read, items: list, *, workers: int | None = None,
               remote: bool | None = None) -> list:
    """``read`` applied to every item (a uri, or a (sha256, uri) pair), in order.

    Remote items (``remote``; by default: any item names a URL) go to ``image_threads``
    threads (or ``workers``) at once: their wait is the network's. Local ones are timed over
    the first PROBE_ITEMS on this thread, and the rest go to the threads only when an item
    costs at least THREADED_ITEM_SECONDS.
    """
    if remote is None:
        remote = any("://" in str(item) for item in items)
    workers = workers or image_threads(remote)
    if workers == 1:
        return [read(item) for item in items]
    head: list = []
    if not remote:
        started = time.perf_counter()
        head = [read(item) for item in items[:PROBE_ITEMS]]
        if (len(head) == len(items)
                or (time.perf_counter() - started) / len(head) < THREADED_ITEM_SECONDS):
            return head + [read(item) for item in items[len(head):]]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return head + list(pool.map(read, items[len(head):]))


@contextmanager
def decoded(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Iterator[Image.Image]:
    """The image in ``data``, opened under the rules every reader follows: an allow-listed
    format, at most ``max_pixels`` (checked from the header, before any decoding), the first
    frame. ImageRefused (CORRUPT_IMAGE, IMAGE_TOO_LARGE, UNSUPPORTED_IMAGE) otherwise, also
    for a decoding error raised inside the ``with`` block."""
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            if image.width * image.height > max_pixels:
                raise ImageRefused(
                    QuarantineReason.IMAGE_TOO_LARGE,
                    f"{image.width}x{image.height} exceeds {max_pixels} pixels",
                )
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # animated GIF/WebP, multi-page TIFF: the first frame only
            yield image
    except Image.DecompressionBombError as error:
        raise ImageRefused(QuarantineReason.IMAGE_TOO_LARGE, str(error)) from error
    except ImageRefused:
        raise
    except Image.UnidentifiedImageError as error:
        layout = _unsupported_layout(data)
        if layout is not None:
            raise ImageRefused(QuarantineReason.UNSUPPORTED_IMAGE, layout) from error
        raise ImageRefused(QuarantineReason.CORRUPT_IMAGE, "not a recognised image format") from error
    except Exception as error:  # PIL raises many types for bad bytes; all mean "not an image"
        raise ImageRefused(QuarantineReason.CORRUPT_IMAGE, f"cannot decode: {error}") from error


def check_decodable(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> str:
    """Decode ``data`` under a pixel budget; return the image format (``PNG``, ``JPEG``, ...).

    Raises ImageRefused(CORRUPT_IMAGE) for bytes that are not a whole image and
    ImageRefused(IMAGE_TOO_LARGE) when the header announces more than ``max_pixels``.
    """
    with decoded(data, max_pixels=max_pixels) as image:
        image.draft("RGB", _DRAFT_SIZE)
        image.load()
        return image.format or "unknown"


def decode_rgb(data: bytes, *, draft: tuple[int, int] | None = None,
               max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """``data`` decoded as RGB under the rules of ``decoded``; ``draft``: JPEGs decode at the
    smallest power-of-two reduction that stays at least this size (most DCT work skipped)."""
    with decoded(data, max_pixels=max_pixels) as image:
        if draft is not None:
            image.draft("RGB", draft)
        return image.convert("RGB")


def _read_local(path: str, max_bytes: int) -> bytes:
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):  # a folder opens; it is a missing image, as in open()
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(info.st_mode):
            raise ImageRefused(QuarantineReason.NOT_A_FILE,
                               f"{path} is not a regular file (a FIFO, device or socket)")
        if info.st_size > max_bytes:
            raise ImageRefused(QuarantineReason.IMAGE_TOO_LARGE,
                               f"{path} is {info.st_size} bytes > {max_bytes}")
        # Raw reads sized by the file: a buffered read(max_bytes + 1) maps and frees a 64 MB
        # buffer per image (22 -> 4 us a small file). Until end of file or past the budget, as
        # a file may grow after fstat or come back in pieces (network file systems).
        chunks, left, ask = [], max_bytes + 1, info.st_size + 1
        while left > 0 and (chunk := os.read(descriptor, min(left, ask))):
            chunks.append(chunk)
            left, ask = left - len(chunk), 1 << 20
        return b"".join(chunks)
    finally:
        os.close(descriptor)


def read_image_bytes(uri: str, *, sha256: str | None = None, storage_options: dict | None = None,
                     max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of the image at ``uri`` (a local path or any fsspec URI): a regular file of at
    most ``max_bytes``; with ``sha256`` (what ingest recorded), bytes that still hash to it.
    ImageRefused naming the file otherwise."""
    try:
        if not _is_url(uri) or uri.startswith("file://"):
            data = _read_local(uri.removeprefix("file://"), max_bytes)
        else:
            fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
            size = fs.size(path)
            if size is not None and size > max_bytes:
                raise ImageRefused(QuarantineReason.IMAGE_TOO_LARGE,
                                   f"{uri} is {size} bytes > {max_bytes}")
            with fs.open(path, "rb") as handle:
                data = handle.read(max_bytes + 1)
    except ImageRefused:
        raise
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
        raise ImageRefused(QuarantineReason.MISSING_IMAGE, f"{uri} not found") from error
    except OSError as error:
        raise ImageRefused(QuarantineReason.MISSING_IMAGE, f"{uri} unreadable: {error}") from error
    if len(data) > max_bytes:
        raise ImageRefused(QuarantineReason.IMAGE_TOO_LARGE, f"{uri} exceeds {max_bytes} bytes")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ImageRefused(QuarantineReason.IMAGE_CHANGED,
                           f"{uri} changed since it was ingested (its sha256 is no longer "
                           f"{sha256[:12]}...): re-ingest the source")
    return data


@contextmanager
def opened_image(uri: str, *, sha256: str | None = None, storage_options: dict | None = None,
                 max_pixels: int = MAX_IMAGE_PIXELS) -> Iterator[Image.Image]:
    """``read_image_bytes`` then ``decoded``: the image at ``uri``, open, under every rule."""
    data = read_image_bytes(uri, sha256=sha256, storage_options=storage_options)
    with decoded(data, max_pixels=max_pixels) as image:
        yield image


def load_rgb(uri: str, *, sha256: str | None = None, storage_options: dict | None = None,
             draft: tuple[int, int] | None = None) -> Image.Image:
    """The image at ``uri`` as RGB, read and decoded under every rule (see ``opened_image``)."""
    return decode_rgb(read_image_bytes(uri, sha256=sha256, storage_options=storage_options),
                      draft=draft)


def _unsupported_layout(data: bytes) -> str | None:
    """Why a well-formed file of a known format still does not open (a TIFF with five samples
    per pixel, say): the format's reader names a mode or layout it does not support. None for
    anything else: then the bytes are simply corrupt."""
    Image.init()
    for name in IMAGE_FORMATS:
        factory, accept = Image.OPEN[name]
        if accept is not None and not accept(data[:16]):
            continue
        try:
            factory(io.BytesIO(data), None).close()
        except Exception as error:  # noqa: BLE001 - the reader's own words decide below
            if _UNSUPPORTED_MESSAGE.search(str(error)):
                return f"{name} with a pixel layout Pillow cannot decode ({error})"
    return None


class ImageResolver:
    """Resolves, reads and checks the images of one source.

    ``image_root`` is a local folder or an ``s3://bucket/prefix``; relative refs are joined to
    it and must stay inside it. ``blob_root`` is where embedded bytes are written,
    content-addressed (``<blob_root>/<sha[:2]>/<sha>.<ext>``), so later stages read every image
    the same way.
    """

    def __init__(
        self,
        image_root: str | None,
        *,
        blob_root: str | None = None,
        storage_options: dict | None = None,
        max_pixels: int = MAX_IMAGE_PIXELS,
        max_bytes: int = MAX_IMAGE_BYTES,
        workers: int | None = None,
    ):
        self.storage_options = storage_options or {}
        self.image_root = self._normalise_root(image_root) if image_root else None
        self.blob_root = blob_root.rstrip("/") if blob_root else None
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self.workers = workers or image_threads(
            any(root is not None and _is_url(root) for root in (self.image_root, self.blob_root)))
        self._checked: dict[str, ImageCheck] = {}
        self._real_folders: dict[str, str] = {}

    @staticmethod
    def _normalise_root(root: str) -> str:
        if _is_url(root):
            return root.rstrip("/")
        return os.path.realpath(root)

    def resolve(self, ref: str) -> str:
        """The absolute location of ``ref``; ImageRefused(IMAGE_OUTSIDE_ROOT) if it escapes the root."""
        root = self.image_root
        if "\x00" in ref:
            raise ImageRefused(QuarantineReason.MISSING_IMAGE, f"{ref!r} is not a valid path")
        if ref.startswith("file://"):
            ref = ref.removeprefix("file://")  # a local path: confined like any other
        elif _is_url(ref):
            if root and not _is_url(root):
                raise ImageRefused(QuarantineReason.IMAGE_OUTSIDE_ROOT, f"{ref} is outside {root}")
            if root:
                scheme, rest = ref.split("://", 1)
                ref = f"{scheme}://{posixpath.normpath(rest)}"
                if not ref.startswith(root + "/"):
                    raise ImageRefused(QuarantineReason.IMAGE_OUTSIDE_ROOT, f"{ref} is outside {root}")
            return ref
        if root is None:
            raise ImageRefused(QuarantineReason.MISSING_IMAGE, f"no image_root to resolve {ref}")
        if _is_url(root):
            joined = posixpath.normpath(posixpath.join(root.split("://", 1)[1], ref))
            uri = root.split("://", 1)[0] + "://" + joined
            if not uri.startswith(root + "/"):
                raise ImageRefused(QuarantineReason.IMAGE_OUTSIDE_ROOT, f"{ref} escapes {root}")
            return uri
        # realpath also follows symlinks, so a link pointing out of the root is refused too.
        path = self._real_path(os.path.join(root, ref))
        if os.path.commonpath([root, path]) != root:
            raise ImageRefused(QuarantineReason.IMAGE_OUTSIDE_ROOT, f"{ref} escapes {root}")
        return path

    def _real_path(self, path: str) -> str:
        """``os.path.realpath(path)``, its folder's part remembered (within one ``check_many``):
        images share a few folders, and realpath's lstat of every component was most of
        resolving (10 -> 3 us an image)."""
        folder, name = os.path.split(path)
        if name in ("", ".", ".."):
            return os.path.realpath(path)
        real_folder = self._real_folders.get(folder)
        if real_folder is None:
            real_folder = self._real_folders[folder] = os.path.realpath(folder)
        real = os.path.join(real_folder, name)
        try:
            if stat.S_ISLNK(os.lstat(real).st_mode):
                return os.path.realpath(real)  # the name itself is a link: follow it
        except OSError:
            pass  # missing or unreachable: realpath leaves such a name as it is, and so do we
        return real

    def _read(self, uri: str) -> bytes:
        return read_image_bytes(uri, storage_options=self.storage_options if _is_url(uri)
                                else None, max_bytes=self.max_bytes)

    def check_ref(self, ref: str) -> ImageCheck:
        """Resolve, read, hash and decode one ref; never raises for bad images."""
        try:
            uri = self.resolve(ref)
            data = self._read(uri)
            digest = hashlib.sha256(data).hexdigest()
            check_decodable(data, max_pixels=self.max_pixels)
            return ImageCheck(uri=uri, sha256=digest)
        except ImageRefused as refused:
            return ImageCheck(uri=None, sha256=None, reason=refused.reason.value, detail=refused.detail)

    def check_embedded(self, data: bytes) -> ImageCheck:
        """Hash and decode embedded bytes and write them to the blob store (once per hash)."""
        digest = hashlib.sha256(data).hexdigest()
        try:
            if len(data) > self.max_bytes:
                raise ImageRefused(
                    QuarantineReason.IMAGE_TOO_LARGE, f"{len(data)} bytes > {self.max_bytes}"
                )
            image_format = check_decodable(data, max_pixels=self.max_pixels)
        except ImageRefused as refused:
            return ImageCheck(uri=None, sha256=digest, reason=refused.reason.value, detail=refused.detail)
        if self.blob_root is None:
            raise ValueError("embedded images need a blob_root to be written to")
        uri = f"{self.blob_root}/{digest[:2]}/{digest}.{image_format.lower()}"
        fs, path = fsspec.core.url_to_fs(uri, **(self.storage_options if _is_url(uri) else {}))
        if not fs.exists(path):
            fs.makedirs(posixpath.dirname(path), exist_ok=True)
            # Write aside, then move: a reader never sees a half-written blob.
            # Unique per call: threads of check_many may write the same blob at once.
            partial = f"{path}.partial-{os.getpid()}-{uuid.uuid4().hex}"
            with fs.open(partial, "wb") as handle:
                handle.write(data)
            fs.mv(partial, path)
        return ImageCheck(uri=uri, sha256=digest)

    def check_many(self, items: list[str | bytes]) -> list[ImageCheck]:
        """Check refs (str) and embedded images (bytes) in parallel, in input order.

        Outcomes of refs are remembered, so a ref shared by many rows (or batches) is read once.
        """
        todo = [item for item in dict.fromkeys(items)
                if isinstance(item, bytes) or item not in self._checked]
        # Folders' real places are looked up again each call: a link swapped during a long
        # ingest is seen by the next batch.
        self._real_folders.clear()

        def check(item: str | bytes) -> ImageCheck:
            return self.check_embedded(item) if isinstance(item, bytes) else self.check_ref(item)

        remote = (any(root is not None and _is_url(root)
                      for root in (self.image_root, self.blob_root))
                  or any(isinstance(item, str) and _is_url(item) for item in todo))
        fresh = dict(zip(todo, map_images(check, todo, workers=self.workers, remote=remote),
                         strict=True))
        self._checked.update((item, outcome) for item, outcome in fresh.items()
                             if isinstance(item, str))
        return [fresh[item] if item in fresh else self._checked[item] for item in items]
