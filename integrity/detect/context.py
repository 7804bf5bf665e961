"""What a detector gets: the QA pairs of one source and what detectors share.

Shared evidence is computed once, on first use, and only if some detector asks for it: the
image statistics (one decode per distinct image), the image embeddings (one model pass per
distinct image), and the columns earlier detectors wrote. Evidence that needs no other
detector's output may be started early on a background thread (``start``): image decoding is
mostly Python under the GIL, the text detectors mostly polars outside it, so the two overlap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from integrity.detect.encoder import Encoder


@dataclass
class ScoringContext:
    # The QA pairs (``pairs.qa_pairs``). Scoring drops each column once no detector left to
    # run reads it: read ``pairs`` when needed, never keep it (a kept frame keeps every column).
    pairs: pl.DataFrame
    encoder: Encoder | None = None
    storage_options: dict = field(default_factory=dict)
    eval_images: set[str] = field(default_factory=set)
    eval_questions: set[str] = field(default_factory=set)
    outputs: dict[str, pl.DataFrame] = field(default_factory=dict)
    # Wall seconds per step (QA pairs, each detector, copy keys); a value shared by several
    # detectors (image statistics, ...) counts for the first that asked for it, or for
    # "<detector> (background)" when that detector's prefetch started it.
    seconds: dict[str, float] = field(default_factory=dict)
    _shared: dict[str, Future] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per context; later calls return the same value (a call on
        another thread while it is computed waits for it; an error reaches every caller)."""
        with self._lock:
            future = self._shared.get(key)
            owner = future is None
            if owner:
                future = self._shared[key] = Future()
        if owner:
            try:
                future.set_result(compute())
            except BaseException as error:
                future.set_exception(error)
        return future.result()

    def start(self, background: Executor, name: str,
              compute: Callable[[ScoringContext], Any]) -> None:
        """Run ``compute(self)`` on ``background`` now: it fills shared evidence (``shared``),
        whose value or error a later ``shared`` call of the same key returns or raises. Its
        wall seconds are recorded as ``<name> (background)``."""
        def run() -> None:
            started = time.perf_counter()
            try:
                compute(self)  # an error stays with the shared evidence, for whoever asks
            finally:
                self.seconds[f"{name} (background)"] = time.perf_counter() - started

        background.submit(run)

    def output(self, detector: str) -> pl.DataFrame:
        """The columns ``detector`` wrote (it must be declared in ``after``)."""
        return self.outputs[detector]

    def image_stats(self) -> pl.DataFrame:
        """One row per distinct image: size, pixel spread, thumbnail (image_sanity.image_stats)."""
        return self._image_stats()[0]

    def decoded_images(self):
        """The images ``image_stats`` decoded whole (``pixels.Decoded``, within its budget), for
        the near-copy verification to read instead of decoding them again."""
        return self._image_stats()[1]

    def _image_stats(self):
        from integrity.detect.pixels import Decoded, image_stats

        def compute():
            with_image = self.pairs.select("image_sha256", "image_uri").filter(
                pl.col("image_sha256").is_not_null()).unique("image_sha256", maintain_order=True)
            decoded = Decoded()
            return image_stats(with_image["image_uri"].to_list(),
                               with_image["image_sha256"].to_list(),
                               storage_options=self.storage_options, decoded=decoded), decoded

        return self.shared("image_stats", compute)

    def image_embeddings(self):
        """(rows with an image, each row's index into the matrix, the distinct image embeddings),
        or None without an encoder."""
        if self.encoder is None:
            return None
        from integrity.detect.embeddings import image_matrix

        return self.shared("image_embeddings", lambda: image_matrix(
            self.pairs, self.encoder, storage_options=self.storage_options))

    def paradigm(self) -> pl.DataFrame:
        """The source's paradigms (``claims.paradigms``): all that claim keys need of claims."""
        from integrity.detect.claims import paradigms

        return self.shared("paradigm", lambda: paradigms(self.pairs))

    def claims(self):
        """The source's paradigms, claim words, text words and their translation
        (``claims.source_claims``)."""
        from integrity.detect.claims import source_claims

        return self.shared("claims", lambda: source_claims(self.pairs, self.paradigm()))

    def claim_keys(self) -> pl.Series:
        """What each pair's answer claims, comparable across wordings (``pairs.claim_keys``)."""
        from integrity.detect.pairs import claim_keys

        return self.shared("claim_keys", lambda: claim_keys(self.pairs, self.paradigm()))
