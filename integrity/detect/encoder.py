"""open_clip image and text embeddings: batched, device-aware, cached by content hash.

The encoder wraps open_clip's one entry point, ``create_model_and_transforms(name,
pretrained=tag_or_path)``, so any open_clip architecture and any user checkpoint work
unchanged. Every vector it returns is L2-normalised float32, rounded to float16 precision (the
precision the cache stores), so a result is bit-identical whether it came from the model or
from the cache.

Cost: one forward of the image tower per *unique* image hash not yet cached, one of the text
tower per unique text (or sentence piece) not yet cached. Images are read (fsspec), decoded
(Pillow) and preprocessed in DataLoader worker processes while the model runs in this one.

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
import pickle  # only for its error type: weights load with weights_only=True
import re
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Literal, get_args

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from integrity.store.embedding_cache import EmbeddingCache
from integrity.errors import UserError
from integrity.ingest.images import load_rgb

DEVICES = ("auto", "cpu", "cuda", "cuda:<index>", "mps")
Precision = Literal["fp32", "fp16", "bf16", "pure_fp16", "pure_bf16", "amp", "amp_bf16"]
PRECISIONS = get_args(Precision)
# Vectors are written to the cache every this many rows, so an interrupted run keeps its work.
FLUSH_ROWS = 4096
_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_MODEL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=-]*")
# Sentence ends: . ! ? followed by space (optionally after a closing quote or bracket), CJK
# full stops, and line breaks (list items in long answers).
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"'”’)\]])\s+|(?<=[。！？])\s*|\n+")


class EncoderError(UserError):
    """A model that cannot be loaded, a device that is not there, or images that cannot be read."""


class EncoderConfig(BaseModel):
    """Which open_clip model to run, where, and how (validated at the boundary)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model: str = Field("ViT-B-32", min_length=1, description="open_clip model name.")
    pretrained: str | None = Field(
        None,
        description="open_clip pretrained tag (e.g. 'laion2b_s34b_b79k') or a local checkpoint "
        "path; None = random init (tests and demos).",
    )
    device: str = Field("auto", description=f"One of {DEVICES}; auto = cuda if available else cpu.")
    batch_size: int = Field(64, ge=1, description="Images or texts per model forward.")
    workers: int = Field(
        2,
        ge=0,
        description="DataLoader worker processes that read and decode images; 0 = in-process "
        "(also used when a call has at most two batches to read).",
    )
    precision: Precision = Field(
        "fp32", description=f"One of {PRECISIONS} (open_clip's names; amp = autocast)."
    )
    model_id: str | None = Field(
        None, description="Cache identity override; default derived from model and weights."
    )
    config_file: str | None = Field(
        None, description="An open_clip model config (JSON) to register before loading, for a "
        "model open_clip does not know (registered under its file name)."
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE_PATTERN.fullmatch(value):
            raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {value!r}")
        return value

    @field_validator("model_id")
    @classmethod
    def _safe_model_id(cls, value: str | None) -> str | None:
        if value is not None and not _MODEL_ID_PATTERN.fullmatch(value):
            raise ValueError(
                f"model_id must be letters, digits and . _ @ + = - (not first); got {value!r}"
            )
        return value


def encoder_config(model, *, batch_size: int = 64, workers: int = 1,
                   device: str | None = None, precision: str | None = None) -> EncoderConfig:
    """The EncoderConfig of a sources file's ``model`` (``ingest.ModelConfig``); ``device`` and
    ``precision`` override the file's."""
    from pydantic import ValidationError

    from integrity.ingest.sources import RANDOM_WEIGHTS

    try:
        return EncoderConfig(
            model=model.name, config_file=model.config,
            pretrained=None if model.pretrained == RANDOM_WEIGHTS else model.pretrained,
            device=device or model.device, precision=precision or model.precision,
            batch_size=batch_size, workers=workers)
    except ValidationError as error:  # a device, precision or batch size the user gave
        problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}"
                             for item in error.errors())
        raise EncoderError(f"model {model.name}: {problems}") from error


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``: split after . ! ? (and CJK 。！？) and at line breaks.

    A simple rule, not a linguistic parser ("Dr. No" splits); empty parts are dropped and each
    part is stripped. ``"Red. Two circles!"`` -> ``["Red.", "Two circles!"]``.
    """
    return [part.strip() for part in _SENTENCE_BREAK.split(text) if part and part.strip()]


def text_key(text: str) -> str:
    """The cache key of a text: sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def resolve_device(device: str) -> torch.device:
    """The torch device for a config value; EncoderError if it is not available here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EncoderError(f"device {device!r} was asked for but CUDA is not available here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise EncoderError("device 'mps' was asked for but MPS is not available here")
    return torch.device(device)


def _safe_segment(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+=-]", "_", text).lstrip("._") or "model"


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        digest.update(memoryview(data))
    return digest.hexdigest()


class _ImageFiles(Dataset):
    """(row, pixels, error) for each uri: read, check, decode and preprocess, never raising."""

    def __init__(
        self,
        uris: list[str],
        sha256: list[str],
        preprocess: Callable[[Image.Image], torch.Tensor],
        storage_options: dict,
        draft_size: tuple[int, int],
    ) -> None:
        self.uris = uris
        self.sha256 = sha256
        self.preprocess = preprocess
        self.storage_options = storage_options
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.uris)

    def __getitem__(self, row: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            # The hash is the cache key: a file changed since ingest must not poison the cache.
            image = load_rgb(self.uris[row], sha256=self.sha256[row],
                             storage_options=self.storage_options, draft=self.draft_size)
            return row, self.preprocess(image), None
        except Exception as error:  # reported with its uri by encode_images, after the others
            return row, None, f"{type(error).__name__}: {error}"


def _collate(
    items: list[tuple[int, torch.Tensor | None, str | None]],
) -> tuple[np.ndarray, torch.Tensor | None, list[tuple[int, str]]]:
    good = [(row, pixels) for row, pixels, error in items if error is None]
    errors = [(row, error) for row, _, error in items if error is not None]
    rows = np.array([row for row, _ in good], dtype=np.int64)
    pixels = torch.stack([p for _, p in good]) if good else None
    return rows, pixels, errors


def _fp16_round(vectors: torch.Tensor) -> np.ndarray:
    """Normalise in float32, then round to the cache's float16 precision."""
    return F.normalize(vectors.float(), dim=-1).half().float().cpu().numpy()


class Encoder:
    """An open_clip model with a content-addressed embedding cache in front of it.

    Attributes: ``model_id`` (cache identity), ``dim`` (embedding size), ``context_length``
    (text tokens per forward), ``logit_scale`` (the model's exp'd temperature: probabilities
    are ``softmax(logit_scale * cosines)``), ``logit_bias`` (SigLIP models, else None), and the
    counters ``image_batches``, ``text_batches``, ``images_encoded``, ``texts_encoded`` of model
    work actually done.
    """

    def __init__(self, config: EncoderConfig, *, cache: EmbeddingCache | None = None,
                 progress: bool = False) -> None:
        self.config = config
        self.cache = cache
        self.progress = progress  # a bar over the images being encoded (the CLI, on a terminal)
        self.device = resolve_device(config.device)
        if config.config_file:
            if not os.path.isfile(config.config_file):
                raise EncoderError(f"model config {config.config_file} does not exist")
            open_clip.add_model_config(config.config_file)
        amp = config.precision.startswith("amp")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                config.model,
                pretrained=config.pretrained,
                precision="fp32" if amp else config.precision,
                device=self.device,
            )
        # UnpicklingError: weights_only refused a checkpoint that wants to run code.
        # AssertionError / KeyError: weights of another architecture ("text pos_embed width
        # changed!", missing keys).
        except (RuntimeError, FileNotFoundError, ValueError, pickle.UnpicklingError,
                AssertionError, KeyError) as error:
            raise EncoderError(
                f"cannot load open_clip model {config.model!r} with pretrained="
                f"{config.pretrained!r} (do the weights belong to this model?): "
                f"{str(error)[:500]}"
            ) from error
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(config.model)
        self._input_dtype = open_clip.get_input_dtype(config.precision) or torch.float32
        self._autocast_dtype = {"amp": torch.float16, "amp_bf16": torch.bfloat16}.get(
            config.precision
        )
        size = model.visual.preprocess_cfg.get("size", 224) if hasattr(model, "visual") else 224
        self._draft_size = (size, size) if isinstance(size, int) else tuple(size)
        self.context_length = int(
            getattr(model, "context_length", None) or self.tokenizer.context_length
        )
        with torch.inference_mode():
            self.dim = int(self.model.encode_text(self._tokenize([""])).shape[-1])
            self.logit_scale = float(self.model.logit_scale.exp())
            bias = getattr(self.model, "logit_bias", None)
            self.logit_bias = None if bias is None else float(bias)
        self.model_id = config.model_id or self._derive_model_id()
        self.image_batches = 0
        self.text_batches = 0
        self.images_encoded = 0
        self.texts_encoded = 0
        self._specials = int(self._token_lengths([""])[0])

    def __repr__(self) -> str:
        return f"Encoder({self.model_id!r}, device={str(self.device)!r}, dim={self.dim})"

    def _derive_model_id(self) -> str:
        name, pretrained = self.config.model, self.config.pretrained
        if pretrained is None:
            if ":" in name:  # hf-hub:/local-dir: schemas name their weights themselves
                return _safe_segment(name)
            return _safe_segment(f"{name}@random-{_weights_digest(self.model)[:12]}")
        if not open_clip.get_pretrained_cfg(name, pretrained) and os.path.isfile(pretrained):
            return _safe_segment(f"{name}@{_file_digest(pretrained)[:12]}")
        return _safe_segment(f"{name}@{pretrained}")

    # -- model calls ---------------------------------------------------------------------

    def _autocast(self):
        if self._autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._autocast_dtype)

    def _tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts, context_length=self.context_length).to(self.device)

    def _forward_images(self, pixels: torch.Tensor) -> np.ndarray:
        pixels = pixels.to(self.device, dtype=self._input_dtype, non_blocking=True)
        with torch.inference_mode(), self._autocast():
            vectors = _fp16_round(self.model.encode_image(pixels))
        self.image_batches += 1
        self.images_encoded += len(vectors)
        return vectors

    def _forward_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        step = self.config.batch_size
        for start in range(0, len(texts), step):
            with torch.inference_mode(), self._autocast():
                tokens = self._tokenize(texts[start : start + step])
                out[start : start + step] = _fp16_round(self.model.encode_text(tokens))
            self.text_batches += 1
            self.texts_encoded += len(tokens)
        return out

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

    def _batches(self, uris: list[str], keys: list[str], storage_options: dict) -> Iterator:
        dataset = _ImageFiles(uris, keys, self.preprocess, storage_options, self._draft_size)
        # A pool costs a fork per worker: not worth it for a batch or two.
        workers = self.config.workers if len(uris) > 2 * self.config.batch_size else 0
        return iter(
            DataLoader(
                dataset,
                batch_size=self.config.batch_size,
                num_workers=workers,
                collate_fn=_collate,
                pin_memory=self.device.type == "cuda",
                prefetch_factor=4 if workers else None,
            )
        )

    def _encode_image_files(
        self, uris: list[str], keys: list[str], storage_options: dict
    ) -> np.ndarray:
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
            for rows, pixels, errors in self._batches(uris, keys, storage_options):
                bar.update(len(rows) + len(errors))
                failures += errors
                if pixels is None:
                    continue
                out[rows] = self._forward_images(pixels)
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
            todo = [texts[i] for i in first[missing]]
            fits = np.ones(len(todo), bool)
            if split_long:
                fits = self._token_lengths(todo) <= self.context_length
            short, long = missing[fits], missing[~fits]
            if len(short):
                vectors[short] = self._forward_texts([t for t, f in zip(todo, fits) if f])
                self._store("text", unique[short].tolist(), vectors[short])
            if len(long):
                vectors[long] = self._mean_of_pieces([t for t, f in zip(todo, fits) if not f])
                self._store("text", unique[long].tolist(), vectors[long])
        return vectors[inverse.reshape(-1)]

    def _mean_of_pieces(self, texts: list[str]) -> np.ndarray:
        pieces = [self.text_pieces(text) for text in texts]
        counts = np.array([len(p) for p in pieces])
        flat = [piece for group in pieces for piece in group]
        # Pieces go through the cache too, so per-sentence scoring reuses them.
        piece_vectors = self._encode_texts(flat, split_long=False)
        sums = np.add.reduceat(piece_vectors, np.cumsum(counts) - counts, axis=0)
        return _fp16_round(torch.from_numpy(sums))

    def _token_lengths(self, texts: list[str]) -> np.ndarray:
        """Tokens per text including special tokens (0 where the tokenizer cannot tell)."""
        tokenizer = self.tokenizer
        if isinstance(tokenizer, open_clip.SimpleTokenizer):
            return np.array([len(tokenizer.encode(t)) + 2 for t in texts], dtype=np.int64)
        inner = getattr(tokenizer, "tokenizer", None)  # HF / SigLIP wrappers
        if inner is not None:
            clean = getattr(tokenizer, "clean_fn", lambda t: t)
            ids = inner([clean(t) for t in texts], truncation=False)["input_ids"]
            return np.array([len(i) for i in ids], dtype=np.int64)
        return np.zeros(len(texts), dtype=np.int64)

    def text_pieces(self, text: str) -> list[str]:
        """``text`` as parts that each fit the context: itself, or its sentences / word chunks."""
        if self._token_lengths([text])[0] <= self.context_length:
            return [text]
        sentences = split_sentences(text) or [text]
        fits = self._token_lengths(sentences) <= self.context_length
        pieces: list[str] = []
        for sentence, fit in zip(sentences, fits):
            pieces += [sentence] if fit else self._word_chunks(sentence)
        return pieces

    def _word_chunks(self, sentence: str) -> list[str]:
        """Greedy runs of words whose tokens fit; a word too long alone is cut by characters."""
        budget = self.context_length - self._specials
        words = sentence.split()
        costs = self._token_lengths(words) - self._specials
        if np.any(costs > budget):
            cut: list[str] = []
            for word, cost in zip(words, costs):
                step = len(word) if cost <= budget else max(1, len(word) * budget // (2 * cost))
                cut += [word[i : i + step] for i in range(0, len(word), step)]
            words = cut
            costs = self._token_lengths(words) - self._specials
        chunks: list[str] = []
        current: list[str] = []
        used = 0
        for word, cost in zip(words, costs.tolist()):
            if current and used + cost > budget:
                chunks.append(" ".join(current))
                current, used = [], 0
            current.append(word)
            used += cost
        if current:
            chunks.append(" ".join(current))
        return chunks
