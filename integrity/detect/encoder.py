"""open_clip image and text embeddings: batched, device-aware, cached by content hash.

The encoder wraps open_clip's one entry point, ``create_model_and_transforms(name,
pretrained=tag_or_path)``, so any open_clip architecture and any user checkpoint work
unchanged. Every vector it returns is L2-normalised float32, rounded to float16 precision (the
precision the cache stores), so a result is bit-identical whether it came from the model or
from the cache.

Cost: one forward of the image tower per *unique* image hash not yet cached, one of the text
tower per unique text (or sentence piece) not yet cached. Images are read (fsspec), decoded
(Pillow) and preprocessed in DataLoader worker processes while the model runs in this one.
The model, and torch with it, is loaded only when a vector is missing (``clip_model``): a
re-score on a warm cache reads the model's card (embedding size, temperature) from the cache.

Cache identity (``model_id``): ``<model>@<tag>`` for an open_clip pretrained tag,
``<model>@<sha256[:12] of the file>`` for a checkpoint path, ``<model>@random-<sha256[:12] of
the initial weights>`` for a randomly initialised model (two models built under the same seed
are the same function and share entries; any other random model gets its own), or the
``model_id`` given in the config. Precision and device are not part of it: they move a vector
by less than the float16 rounding the cache applies anyway.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError
from tqdm import tqdm

from integrity.detect.encoder_config import EncoderConfig, EncoderError, ModelCard
from integrity.store.embedding_cache import EmbeddingCache

if TYPE_CHECKING:
    from integrity.detect.clip_model import ClipModel

# Vectors are written to the cache every this many rows, so an interrupted run keeps its work.
FLUSH_ROWS = 4096


def text_key(text: str) -> str:
    """The cache key of a text: sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _safe_segment(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+=-]", "_", text).lstrip("._") or "model"


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_weights_file(model: str, pretrained: str) -> bool:
    """Whether open_clip loads ``pretrained`` from a file: it must exist, and not be a weights
    tag of ``model`` (a tag wins). No tag has a '/' or '.', so only a bare name needs open_clip."""
    if not os.path.isfile(pretrained):
        return False
    if re.search(r"[./\\]", pretrained):
        return True
    from integrity.detect.clip_model import is_pretrained_tag

    return not is_pretrained_tag(model, pretrained)


class Encoder:
    """An open_clip model with a content-addressed embedding cache in front of it.

    The model (and torch) load only when needed: for a vector missing from the cache, or for
    the identity of random weights. A re-score on a warm cache runs without them, taking the
    model's card (``dim``, ``logit_scale``, ``logit_bias``) from the cache.

    Attributes: ``model_id`` (cache identity), ``dim`` (embedding size), ``logit_scale`` (the
    model's exp'd temperature), ``logit_bias`` (SigLIP models, else None), ``clip`` (the loaded
    model, loading it on first use), and the counters ``image_batches``, ``text_batches``,
    ``images_encoded``, ``texts_encoded`` of model work actually done.
    """

    def __init__(self, config: EncoderConfig, *, cache: EmbeddingCache | None = None,
                 progress: bool = False) -> None:
        self.config = config
        self.cache = cache
        self.progress = progress  # a bar over the images being encoded (the CLI, on a terminal)
        self._clip: ClipModel | None = None
        self._loading = threading.Lock()
        self.card: ModelCard | None = None
        self.image_batches = 0
        self.text_batches = 0
        self.images_encoded = 0
        self.texts_encoded = 0
        if config.device not in ("auto", "cpu"):  # a device asked for by name: check it now
            from integrity.detect.clip_model import resolve_device

            resolve_device(config.device)
        self.model_id = config.model_id or self._model_id_without_weights()
        cached = None
        if self.cache is not None and self.model_id is not None:
            cached = self.cache.model_card(self.model_id)
        try:
            self.card = ModelCard.model_validate(cached) if cached else self.clip.card
        except ValidationError as error:
            raise EncoderError(f"the model card cached for {self.model_id!r} in "
                               f"{self.cache.root} is not one (delete it to rebuild it): "
                               f"{error}") from error

    def __repr__(self) -> str:
        return f"Encoder({self.model_id!r}, device={self.device_used!r}, dim={self.dim})"

    def _model_id_without_weights(self) -> str | None:
        """The cache identity from the config alone; None for random weights (their hash)."""
        name, pretrained = self.config.model, self.config.pretrained
        if pretrained is None:
            if ":" in name:  # hf-hub:/local-dir: schemas name their weights themselves
                return _safe_segment(name)
            return None
        if _is_weights_file(name, pretrained):
            return _safe_segment(f"{name}@{_file_digest(pretrained)[:12]}")
        return _safe_segment(f"{name}@{pretrained}")

    @property
    def clip(self) -> ClipModel:
        """The open_clip model, loaded on first use (its card then goes into the cache)."""
        with self._loading:
            if self._clip is None:
                from integrity.detect.clip_model import ClipModel

                clip = ClipModel(self.config)
                if self.model_id is None:
                    self.model_id = _safe_segment(
                        f"{self.config.model}@random-{clip.weights_digest()[:12]}")
                if self.card is not None and self.card.dim != clip.card.dim:
                    raise EncoderError(
                        f"the cache's card for {self.model_id!r} says {self.card.dim}-d "
                        f"vectors, but the model makes {clip.card.dim}-d ones")
                if self.cache is not None and self.card is None:  # none was cached
                    self.cache.put_model_card(self.model_id, clip.card.model_dump())
                self._clip = clip
            return self._clip

    @property
    def dim(self) -> int:
        return self.card.dim

    @property
    def logit_scale(self) -> float:
        return self.card.logit_scale

    @property
    def logit_bias(self) -> float | None:
        return self.card.logit_bias

    @property
    def device_used(self) -> str | None:
        """The device the model is loaded on; None while it is not (all from the cache)."""
        return None if self._clip is None else str(self._clip.device)

    # -- cache ---------------------------------------------------------------------------

    def _cached(self, kind: str, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.zeros((len(keys), self.dim), np.float32)
        if self.cache is None or not keys:
            return vectors, np.zeros(len(keys), bool)
        cached, found = self.cache.lookup(self.model_id, kind, keys)
        if found.any():
            if cached.shape[1] != self.dim:
                raise EncoderError(
                    f"cache {self.cache.root} holds {cached.shape[1]}-d {kind} vectors under "
                    f"{self.model_id!r}, but the model makes {self.dim}-d ones"
                )
            vectors[found] = cached[found]
        return vectors, found

    def _store(self, kind: str, keys: list[str], vectors: np.ndarray) -> None:
        if self.cache is not None and len(keys):
            self.cache.put(self.model_id, kind, keys, vectors)

    # -- images --------------------------------------------------------------------------

    def encode_images(
        self, uris: list[str], sha256: list[str], *, storage_options: dict | None = None
    ) -> np.ndarray:
        """Embeddings (n, dim) float32, unit length, of the images at ``uris``, in input order.

        ``sha256`` is each image's content hash (raw_sft's ``image_sha256``): the cache key and
        the dedupe key, so an image stored twice is read and encoded once. Only hashes missing
        from the cache are read, and their bytes must still hash to ``sha256``.
        ``storage_options`` go to fsspec for s3:// uris. Raises EncoderError naming the images
        that could not be read, matched or decoded (after caching all the others).
        """
        if len(uris) != len(sha256):
            raise ValueError(f"{len(uris)} uris but {len(sha256)} sha256 values")
        if not uris:
            return np.zeros((0, self.dim), np.float32)
        if not all(sha256):
            raise ValueError("every image needs its sha256 (quarantined rows have none)")
        unique, first, inverse = np.unique(
            np.asarray(sha256), return_index=True, return_inverse=True
        )
        vectors, found = self._cached("image", unique.tolist())
        missing = np.flatnonzero(~found)
        if len(missing):
            todo = [uris[i] for i in first[missing]]
            vectors[missing] = self._encode_image_files(
                todo, unique[missing].tolist(), storage_options or {}
            )
        return vectors[inverse.reshape(-1)]

    def _encode_image_files(
        self, uris: list[str], keys: list[str], storage_options: dict
    ) -> np.ndarray:
        clip = self.clip
        out = np.zeros((len(uris), self.dim), np.float32)
        failures: list[tuple[int, str]] = []
        pending: list[np.ndarray] = []  # rows encoded but not yet in the cache

        def flush() -> None:
            if pending:
                rows = np.concatenate(pending)
                self._store("image", [keys[i] for i in rows], out[rows])
                pending.clear()

        bar = tqdm(total=len(uris), unit="image", desc="encoding images",
                   disable=not self.progress)
        try:
            for rows, pixels, errors in clip.image_batches(uris, keys, storage_options):
                bar.update(len(rows) + len(errors))
                failures += errors
                if pixels is None:
                    continue
                out[rows] = clip.forward_images(pixels)
                self.image_batches += 1
                self.images_encoded += len(rows)
                pending.append(rows)
                if sum(len(p) for p in pending) >= FLUSH_ROWS:
                    flush()
        finally:
            flush()
            bar.close()
        if failures:
            shown = "; ".join(f"{uris[row]}: {error}" for row, error in failures[:3])
            raise EncoderError(f"{len(failures)} image(s) could not be encoded: {shown}")
        return out

    # -- texts ---------------------------------------------------------------------------

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Embeddings (n, dim) float32, unit length, of ``texts``, in input order.

        Cached by sha256 of the text; duplicates are encoded once. A text longer than the
        context length is not truncated: it is split into sentences (and an over-long sentence
        into word chunks) that fit, and its embedding is the normalised mean of theirs.
        """
        return self._encode_texts(list(texts), split_long=True)

    def _encode_texts(self, texts: list[str], *, split_long: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        keys = np.asarray([text_key(t) for t in texts])
        unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        vectors, found = self._cached("text", unique.tolist())
        missing = np.flatnonzero(~found)
        if len(missing):
            clip = self.clip
            todo = [texts[i] for i in first[missing]]
            fits = np.ones(len(todo), bool)
            if split_long:
                fits = clip.token_lengths(todo) <= clip.context_length
            short, long = missing[fits], missing[~fits]
            if len(short):
                vectors[short] = self._forward_texts([t for t, f in zip(todo, fits) if f])
                self._store("text", unique[short].tolist(), vectors[short])
            if len(long):
                vectors[long] = self._mean_of_pieces([t for t, f in zip(todo, fits) if not f])
                self._store("text", unique[long].tolist(), vectors[long])
        return vectors[inverse.reshape(-1)]

    def _forward_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        step = self.config.batch_size
        for start in range(0, len(texts), step):
            out[start : start + step] = self.clip.forward_texts(texts[start : start + step])
            self.text_batches += 1
            self.texts_encoded += len(texts[start : start + step])
        return out

    def _mean_of_pieces(self, texts: list[str]) -> np.ndarray:
        pieces = [self.clip.text_pieces(text) for text in texts]
        counts = np.array([len(p) for p in pieces])
        flat = [piece for group in pieces for piece in group]
        # Pieces go through the cache too, so per-sentence scoring reuses them.
        piece_vectors = self._encode_texts(flat, split_long=False)
        sums = np.add.reduceat(piece_vectors, np.cumsum(counts) - counts, axis=0)
        return self.clip.mean_vectors(sums)
