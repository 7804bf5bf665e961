"""The open_clip side of the encoder: loading a model, reading images for it, forwards.

Only ``Encoder`` imports this module, and only when a vector is missing from its cache (or the
model's identity needs its weights): torch and open_clip cost ~0.7 GB and ~3 s to import, which
a re-score on a warm cache never needs.
"""

from __future__ import annotations

import hashlib
import os
import pickle  # only for its error type: weights load with weights_only=True
from collections.abc import Callable, Iterator
from contextlib import nullcontext

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from integrity.detect.encoder_config import EncoderConfig, EncoderError, ModelCard
from integrity.detect.text import split_sentences
from integrity.ingest.images import load_rgb


def resolve_device(device: str) -> torch.device:
    """The torch device for a config value; EncoderError if it is not available here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EncoderError(f"device {device!r} was asked for but CUDA is not available here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise EncoderError("device 'mps' was asked for but MPS is not available here")
    return torch.device(device)


def is_pretrained_tag(model: str, pretrained: str) -> bool:
    """Whether open_clip knows ``pretrained`` as a weights tag of ``model`` (it then downloads
    those weights, even where a file of that name exists)."""
    return bool(open_clip.get_pretrained_cfg(model, pretrained))


def fp16_round(vectors: torch.Tensor) -> np.ndarray:
    """Normalise in float32, then round to the cache's float16 precision."""
    return F.normalize(vectors.float(), dim=-1).half().float().cpu().numpy()


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


class ClipModel:
    """One loaded open_clip model: its preprocessing, tokenizer and forwards.

    ``card`` is what the encoder needs of it without running it (embedding size, temperature);
    ``context_length`` is text tokens per forward.
    """

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config
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
        self.draft_size = (size, size) if isinstance(size, int) else tuple(size)
        self.context_length = int(
            getattr(model, "context_length", None) or self.tokenizer.context_length
        )
        with torch.inference_mode():
            dim = int(self.model.encode_text(self._tokenize([""])).shape[-1])
            # In float32 on the CPU: the temperature is the weights', whatever the precision.
            scale = float(self.model.logit_scale.detach().float().cpu().exp())
            bias = getattr(self.model, "logit_bias", None)
        self.card = ModelCard(dim=dim, logit_scale=scale,
                              logit_bias=None if bias is None else float(bias.float().cpu()))
        self.specials = int(self.token_lengths([""])[0])

    def weights_digest(self) -> str:
        """sha256 over every parameter's name and bytes: the identity of random weights."""
        digest = hashlib.sha256()
        for name, tensor in self.model.state_dict().items():
            digest.update(name.encode())
            data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
            digest.update(memoryview(data))
        return digest.hexdigest()

    def _autocast(self):
        if self._autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._autocast_dtype)

    def _tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts, context_length=self.context_length).to(self.device)

    def image_batches(self, uris: list[str], keys: list[str], storage_options: dict) -> Iterator:
        """``(rows, pixels or None, [(row, error)])`` per batch of ``uris``, read and decoded in
        DataLoader workers."""
        dataset = _ImageFiles(uris, keys, self.preprocess, storage_options, self.draft_size)
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

    def forward_images(self, pixels: torch.Tensor) -> np.ndarray:
        pixels = pixels.to(self.device, dtype=self._input_dtype, non_blocking=True)
        with torch.inference_mode(), self._autocast():
            return fp16_round(self.model.encode_image(pixels))

    def forward_texts(self, texts: list[str]) -> np.ndarray:
        """One batch of texts, each fitting the context."""
        with torch.inference_mode(), self._autocast():
            return fp16_round(self.model.encode_text(self._tokenize(texts)))

    def mean_vectors(self, sums: np.ndarray) -> np.ndarray:
        """Rows of summed unit vectors, normalised and rounded as a forward's are."""
        return fp16_round(torch.from_numpy(sums))

    def token_lengths(self, texts: list[str]) -> np.ndarray:
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
        if self.token_lengths([text])[0] <= self.context_length:
            return [text]
        sentences = split_sentences(text) or [text]
        fits = self.token_lengths(sentences) <= self.context_length
        pieces: list[str] = []
        for sentence, fit in zip(sentences, fits):
            pieces += [sentence] if fit else self._word_chunks(sentence)
        return pieces

    def _word_chunks(self, sentence: str) -> list[str]:
        """Greedy runs of words whose tokens fit; a word too long alone is cut by characters."""
        budget = self.context_length - self.specials
        words = sentence.split()
        costs = self.token_lengths(words) - self.specials
        if np.any(costs > budget):
            cut: list[str] = []
            for word, cost in zip(words, costs):
                step = len(word) if cost <= budget else max(1, len(word) * budget // (2 * cost))
                cut += [word[i : i + step] for i in range(0, len(word), step)]
            words = cut
            costs = self.token_lengths(words) - self.specials
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
