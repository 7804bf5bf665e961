"""The bundled demo trainer: a small VQA model fine-tuned on an exported training mix, on CPU.

It stands in for a real VLM's SFT run so that ``training_checkpoint`` has something to train and
measure in the demo world. The model has three parts:

- vision tower: the reference CLIP's image encoder (``demo/models/shapes-clip``, loaded
  through ``open_clip.create_model_and_transforms``), copied and fine-tuned at a low learning
  rate; by default only its last residual stage and attention pool (``vision_tune="top"``), so
  the frozen layers below run once per image instead of once per step. BatchNorm layers stay in
  eval mode: a batch of a text-heavy mix is mostly the one blank image, whose batch statistics
  say nothing about real images, and the blank image's features must not depend on the batch;
- question encoder: a bag of words (``EmbeddingBag``, mean) over a lowercase word tokenizer
  whose vocabulary is the training questions' words;
- answer head: an MLP over [image, question, image * question] projections that classifies
  into the answer vocabulary.

Training examples: every (human, gpt) pair of every record of the mix. Answers are normalised
(lowercase, trailing punctuation and extra spaces removed: ``"Red."`` -> ``"red"``) and every
normalised answer seen in training is a class. Answers longer than ``max_answer_words`` words
(the demo's "Describe the image." sentences, flattened preference markers, long hedges) are
skipped and counted: as classes they would be near-unique strings a classifier cannot learn.
Text-only records are examples whose image is the blank background, so they train the question
encoder and the answer head on exactly the input the blind evaluation gives. A pair whose image
cannot be read is skipped and counted.

Evaluation runs on a probe set drawn fresh from the shapes world (``probe_images`` images from
a stream seeded by ``probe_seed``, one templated question per attribute: color, shape, count,
position), independent of the mix. Its images are new drawings, though the world has only 240
distinct truths, so the truths themselves are seen in training. Metrics:

- ``accuracy``: share of probe questions whose top answer is right (an answer outside the
  training answer vocabulary is always wrong);
- ``blind_accuracy``: the same with the image replaced by the blank background;
- ``visual_reliance`` = accuracy - blind_accuracy: how much of the model's skill needs pixels;
- ``sampled_accuracy``, ``blind_sampled_accuracy``, ``sampled_visual_reliance``: the same with
  the probability of the true answer (the accuracy of an answer sampled at temperature 1, what
  RL rollouts see). Label noise that is symmetric across wrong values (the demo's
  caption-derived answers) leaves the top answer right and shows only here;
- ``cka``: linear CKA between the fine-tuned and the reference (untouched) vision tower's
  features of the probe images; 1.0 = unchanged representation, lower = the tower drifted.

Cost: on 2 CPU threads a 2000-row demo mix (about 3600 short-answer pairs) trains 2 epochs in
about 5 s (``vision_tune="all"``: about 4x that), plus about 12 s to load the model and images
and evaluate. Results are deterministic for a fixed seed, thread count and machine.

CLI: ``python -m demo.trainer --mix mix.json --out ckpt.pt [--epochs N]``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import fsspec
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from demo.generate import IMAGE_TOKEN, QUESTION_ATTRIBUTES, QUESTION_TEMPLATES
from demo.reference import MODEL_NAME, REFERENCE_WEIGHTS, register_model_configs
from demo.shapes import BACKGROUND, all_truths, draw_shapes, short_answer
from integrity.errors import UserError
from integrity.ingest.images import ImageRefused, load_rgb

CHECKPOINT_FORMAT = "sft-demo-vqa/1"
# top: the last residual stage and the attention pool of a ModifiedResNet tower (the layers
# below are frozen, so their output is computed once per image); all: the whole tower (about
# 4x slower); none: a frozen tower (features computed once per image, no drift).
VisionTune = Literal["top", "all", "none"]
VISION_TUNES = get_args(VisionTune)
DEFAULT_PROBE_SEED = 555_000  # neither the corpus seeds, the reference's training nor its eval
PROBE_IMAGE_SIZE = 128  # the demo corpus default: probe images are drawn like training images
PAD, UNKNOWN = 0, 1  # question token ids; real words start at 2
_WORD = re.compile(r"[a-z0-9]+")
_TRAILING_PUNCT = re.compile(r"[\s.!?,;:]+$")

logger = logging.getLogger(__name__)


class TrainerError(UserError):
    """A mix or checkpoint that cannot be used; the message names the file and what is wrong."""


class TrainConfig(BaseModel):
    """How to train the demo VQA model (validated at the boundary; unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    epochs: int = Field(
        2, ge=1, description="Passes over the training examples (2: the demo world is learnt; "
        "flaws still show).")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (tests; fixed compute).")
    batch_size: int = Field(64, ge=1, description="Training examples per step.")
    lr: float = Field(2e-3, gt=0, description="AdamW learning rate of question encoder and head.")
    vision_tune: VisionTune = Field(
        "top", description=f"Which part of the vision tower is fine-tuned: one of {VISION_TUNES}.")
    vision_lr: float = Field(1e-4, gt=0, description="Learning rate of the tuned vision layers.")
    weight_decay: float = Field(0.01, ge=0)
    warmup: float = Field(0.05, ge=0, lt=1, description="Share of steps of linear warmup.")
    seed: int = Field(0, description="Seeds initialisation and example order.")
    max_rows: int | None = Field(None, ge=1, description="Read at most this many mix records.")
    threads: int | None = Field(2, ge=1, description="torch CPU threads (None = torch's default).")
    max_answer_words: int = Field(3, ge=1, description="Longer answers are skipped.")
    question_dim: int = Field(64, ge=1)
    hidden_dim: int = Field(256, ge=1)
    probe_images: int = Field(150, ge=1, description="Probe images (4 questions each).")
    probe_seed: int = Field(DEFAULT_PROBE_SEED)
    model: str = Field(MODEL_NAME, min_length=1, description="open_clip model name.")
    reference_weights: str | None = Field(
        None, description="Reference CLIP weights path; None = the shipped shapes-clip.pt.")


@dataclass(frozen=True)
class QAPair:
    """One training example as read from the mix: question, raw answer, image uri (or None)."""

    question: str
    answer: str
    image: str | None


# ---------------------------------------------------------------------------------------------
# Reading the mix


def read_mix(path: str | Path, *, max_rows: int | None = None) -> list[QAPair]:
    """Every (human, gpt) pair of a LLaVA-format mix: a JSON array (or JSON lines) of records
    ``{"id", "image"?: uri or [uri, ...], "conversations": [{"from", "value"}, ...]}``.

    The first image of a record serves all its pairs; a relative image path is taken relative
    to the mix file's folder. Human turns without a gpt reply are ignored. Raises TrainerError
    naming the file and record for anything that is not such a record.
    """
    remote = "://" in str(path)  # an s3:// mix (the store's export) is read through fsspec
    path = str(path) if remote else Path(path)
    try:
        with fsspec.open(str(path), "r", encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise TrainerError(f"{path}: cannot read the mix: {error}") from error
    try:
        stripped = text.lstrip()
        if stripped.startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise TrainerError(f"{path}: not a JSON array or JSON lines: {error}") from error
    pairs: list[QAPair] = []
    for index, record in enumerate(records[:max_rows] if max_rows else records):
        where = f"{path}: record {index}"
        if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
            raise TrainerError(f"{where} has no 'conversations' list")
        image = record.get("image", record.get("images"))
        if isinstance(image, list):
            image = image[0] if image else None
        if image is not None and not isinstance(image, str):
            raise TrainerError(f"{where}: 'image' must be a path or a list of paths")
        if image is not None and "://" not in image and not os.path.isabs(image):
            image = (f"{path.rsplit('/', 1)[0]}/{image}" if remote
                     else str(path.parent / image))
        question: str | None = None
        for turn in record["conversations"]:
            if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
                raise TrainerError(f"{where}: every turn needs 'from' and a string 'value'")
            role = turn.get("from")
            if role == "human":
                question = turn["value"]
            elif role == "gpt" and question is not None:
                pairs.append(QAPair(question, turn["value"], image))
                question = None
    return pairs


def normalise_answer(text: str) -> str:
    """The answer class of a reply: lowercase, single spaces, no trailing punctuation."""
    return _TRAILING_PUNCT.sub("", " ".join(text.lower().split()))


def question_words(text: str) -> list[str]:
    """Lowercase words and numbers of a question, without the ``<image>`` token."""
    return _WORD.findall(text.replace(IMAGE_TOKEN, " ").lower())


def _vocabulary(items: Sequence[str]) -> list[str]:
    """Distinct items, most frequent first, ties alphabetical (deterministic)."""
    counts = Counter(items)
    return sorted(counts, key=lambda item: (-counts[item], item))


def _encode_questions(questions: Sequence[str], word_index: dict[str, int]) -> torch.Tensor:
    """Padded [n, max_len] token ids (PAD = 0, unknown words = UNKNOWN)."""
    ids = [[word_index.get(w, UNKNOWN) for w in question_words(q)] or [UNKNOWN]
           for q in questions]
    out = torch.full((len(ids), max(map(len, ids), default=1)), PAD, dtype=torch.long)
    for row, seq in enumerate(ids):
        out[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


# ---------------------------------------------------------------------------------------------
# Images


def _fit(image: Image.Image, size: int) -> np.ndarray:
    """uint8 HxWx3 at ``size`` as open_clip's eval preprocessing makes it (bicubic resize of the
    shortest side, center crop)."""
    image = image.convert("RGB")
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def _read_image(uri: str, size: int) -> np.ndarray:
    """Read and decode one image under the project's rules (integrity.ingest.images); ImageRefused if
    not."""
    return _fit(load_rgb(uri), size)


def _read_images(uris: Sequence[str], size: int) -> tuple[list[np.ndarray], dict[str, int]]:
    """[blank, *readable images] as uint8 at ``size`` and each readable uri's row."""
    arrays, rows = [_blank(size)], {}
    for uri in uris:
        try:
            arrays.append(_read_image(uri, size))
        except ImageRefused:
            continue
        rows[uri] = len(arrays) - 1
    return arrays, rows


def _blank(size: int) -> np.ndarray:
    return np.asarray(Image.new("RGB", (size, size), BACKGROUND), dtype=np.uint8)


class _Pixels:
    """Images held once as uint8 at model size (row 0 = the blank image), normalised per batch."""

    def __init__(self, arrays: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]):
        self.bank = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        return (self.bank[index].float().div_(255) - self.mean) / self.std


# ---------------------------------------------------------------------------------------------
# The model


class DemoVQA(nn.Module):
    """Vision tower + bag-of-words question encoder + answer MLP -> answer logits."""

    def __init__(self, visual: nn.Module, *, image_dim: int, n_words: int, n_answers: int,
                 question_dim: int = 64, hidden_dim: int = 256):
        super().__init__()
        self.visual = visual
        self.question_encoder = nn.EmbeddingBag(n_words, question_dim, mode="mean",
                                                padding_idx=PAD)
        self.image_proj = nn.Linear(image_dim, hidden_dim)
        self.question_proj = nn.Linear(question_dim, hidden_dim)
        self.answer_head = nn.Sequential(
            nn.LayerNorm(3 * hidden_dim), nn.Linear(3 * hidden_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, n_answers))

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def answer(self, image_features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        image = self.image_proj(F.normalize(image_features, dim=-1))
        question = self.question_proj(self.question_encoder(tokens))
        return self.answer_head(torch.cat([image, question, image * question], dim=-1))

    def forward(self, pixels: torch.Tensor, image_index: torch.Tensor,
                tokens: torch.Tensor) -> torch.Tensor:
        """Logits for each question; ``pixels`` holds the distinct images of the batch and
        ``image_index`` says which one each question is asked about."""
        return self.answer(self.image_features(pixels)[image_index], tokens)

    def train(self, mode: bool = True) -> DemoVQA:
        super().train(mode)
        for module in self.visual.modules():  # BatchNorm keeps the reference statistics
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self


def _reference(config: TrainConfig) -> tuple[nn.Module, dict]:
    """The reference CLIP's image tower (eval mode) and its preprocess config."""
    import open_clip

    register_model_configs()
    weights = Path(config.reference_weights) if config.reference_weights else REFERENCE_WEIGHTS
    if not weights.is_file():
        raise TrainerError(f"{weights}: reference weights not found")
    model, _, _ = open_clip.create_model_and_transforms(
        config.model, pretrained=str(weights), weights_only=True)
    preprocess = open_clip.get_model_preprocess_cfg(model)
    visual = model.visual.eval()
    return visual, preprocess


def split_tower(visual: nn.Module, vision_tune: str) -> tuple[
        Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor],
        list[nn.Parameter]]:
    """(bottom, top, tuned parameters) with ``visual(x) == top(bottom(x))``: ``bottom`` is
    frozen, so training runs it once per image and only ``top`` per step."""
    if vision_tune == "all":
        return nn.Identity(), visual, list(visual.parameters())
    if vision_tune == "none":
        return visual, nn.Identity(), []
    if vision_tune != "top":
        raise TrainerError(f"vision_tune must be one of {VISION_TUNES}, got {vision_tune!r}")
    if not all(hasattr(visual, n) for n in ("stem", "layer1", "layer2", "layer3", "layer4",
                                            "attnpool")):
        raise TrainerError(f"vision_tune 'top' needs a ModifiedResNet tower, not "
                           f"{type(visual).__name__}; use 'all' or 'none'")

    def bottom(x: torch.Tensor) -> torch.Tensor:
        return visual.layer3(visual.layer2(visual.layer1(visual.stem(x))))

    def top(x: torch.Tensor) -> torch.Tensor:
        return visual.attnpool(visual.layer4(x))

    return bottom, top, [*visual.layer4.parameters(), *visual.attnpool.parameters()]


def _image_size(preprocess: dict) -> int:
    size = preprocess["size"]
    return int(size if isinstance(size, int) else size[0])


# ---------------------------------------------------------------------------------------------
# Probe set and metrics


@dataclass(frozen=True)
class Probe:
    """Fixed, clean evaluation questions over fresh shapes images with known answers."""

    images: list[np.ndarray]  # uint8 at model size
    image_index: list[int]  # per question, into images
    questions: list[str]
    answers: list[str]  # normalised
    attributes: list[str]


def build_probe(n_images: int, *, seed: int = DEFAULT_PROBE_SEED, image_size: int) -> Probe:
    """``n_images`` fresh shapes images (truths uniform over the world) drawn at the demo's
    size and resized to ``image_size``, each with one templated question per attribute."""
    rng = random.Random(f"demo-trainer-probe/{seed}")
    truths = all_truths()
    images, image_index, questions, answers, attributes = [], [], [], [], []
    for i in range(n_images):
        truth = rng.choice(truths)
        drawn = draw_shapes(**truth, image_size=PROBE_IMAGE_SIZE, rng=rng)
        images.append(_fit(drawn, image_size))
        for attribute in QUESTION_ATTRIBUTES:
            image_index.append(i)
            questions.append(rng.choice(QUESTION_TEMPLATES[attribute]))
            answers.append(normalise_answer(short_answer(attribute, truth[attribute])))
            attributes.append(attribute)
    return Probe(images, image_index, questions, answers, attributes)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two feature matrices over the same n inputs (1.0 = same up to rotation and
    scale; Kornblith et al. 2019)."""
    x = x.double() - x.double().mean(dim=0, keepdim=True)
    y = y.double() - y.double().mean(dim=0, keepdim=True)
    cross = (y.T @ x).pow(2).sum()
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norm) if norm > 0 else 0.0


@torch.no_grad()
def _features(tower: Callable[[torch.Tensor], torch.Tensor], pixels: _Pixels,
              index: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([tower(pixels(index[i:i + batch_size]))
                      for i in range(0, len(index), batch_size)])


@torch.inference_mode()
def evaluate(model: DemoVQA, probe: Probe, question_vocab: Sequence[str],
             answer_vocab: Sequence[str], *, reference_features: torch.Tensor | None = None,
             mean: Sequence[float], std: Sequence[float]) -> dict:
    """accuracy, blind_accuracy, visual_reliance, per-attribute accuracies and, given the
    reference tower's features of the probe images, cka."""
    was_training = model.training
    model.eval()
    try:
        pixels = _Pixels([_blank(probe.images[0].shape[0]), *probe.images], mean, std)
        features = _features(model.visual, pixels, torch.arange(len(probe.images) + 1))
        word_index = {w: i + 2 for i, w in enumerate(question_vocab)}
        tokens = _encode_questions(probe.questions, word_index)
        answer_index = {a: i for i, a in enumerate(answer_vocab)}
        target = torch.tensor([answer_index.get(a, -1) for a in probe.answers])
        seen = torch.tensor(probe.image_index) + 1
        scores = {"": _answer_scores(model.answer(features[seen], tokens), target),
                  "blind_": _answer_scores(model.answer(features[torch.zeros_like(seen)], tokens),
                                           target)}
    finally:
        model.train(was_training)
    metrics: dict = {}
    for kind in ("accuracy", "sampled_accuracy"):
        for prefix, per_question in scores.items():
            metrics[prefix + kind] = per_question[kind].mean().item()
    metrics["visual_reliance"] = metrics["accuracy"] - metrics["blind_accuracy"]
    metrics["sampled_visual_reliance"] = (metrics["sampled_accuracy"]
                                          - metrics["blind_sampled_accuracy"])
    if reference_features is not None:
        metrics["cka"] = linear_cka(features[1:], reference_features)
    attributes = np.asarray(probe.attributes)
    metrics["per_attribute"] = {
        a: {prefix + kind: round(per_question[kind][torch.from_numpy(attributes == a)]
                                 .mean().item(), 4)
            for prefix, per_question in scores.items()
            for kind in ("accuracy", "sampled_accuracy")}
        for a in QUESTION_ATTRIBUTES}
    return metrics


def _answer_scores(logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per question: 1.0 when the top answer is the truth (``accuracy``) and the probability of
    the true answer (``sampled_accuracy``: the chance that an answer sampled from the model at
    temperature 1 is right); 0 for a truth outside the answer vocabulary."""
    known = target >= 0
    probs = logits.softmax(dim=1)
    true_prob = probs.gather(1, target.clamp(min=0)[:, None])[:, 0]
    return {"accuracy": ((logits.argmax(dim=1) == target) & known).float(),
            "sampled_accuracy": torch.where(known, true_prob, torch.zeros_like(true_prob))}


# ---------------------------------------------------------------------------------------------
# Training


def _lr_factor(step: int, total: int, warmup: float) -> float:
    warm = max(1, round(total * warmup))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def train(mix_path: str | Path, out_path: str | Path, config: TrainConfig | None = None, *,
          log: Callable[[str], None] | None = None) -> dict:
    """Train the demo VQA model on the mix at ``mix_path``; save the checkpoint to ``out_path``.

    Returns the metrics: ``accuracy``, ``blind_accuracy``, ``visual_reliance``, their
    ``sampled_*`` / ``blind_sampled_accuracy`` counterparts and ``cka`` (see the module
    docstring), ``per_attribute`` (the four accuracies per question attribute), the example
    counts (``train_examples``, ``image_examples``, ``text_only_examples``,
    ``skipped_long_answers``, ``skipped_unreadable_image``, ``unreadable_images``),
    ``answer_classes``, ``question_words``, ``steps``, ``epochs``, ``final_loss``,
    ``train_seconds``, ``probe_questions``, ``image_size``, ``seed``, ``vision_tune``,
    ``checkpoint_path`` and ``checkpoint_sha256``. Raises TrainerError for an unreadable or
    malformed mix, or one with nothing to train on. The checkpoint holds only tensors and plain
    containers (``torch.load(weights_only=True)``; see ``load_checkpoint``).
    """
    config = config or TrainConfig()
    log = log or logger.info
    out_path = Path(out_path)
    old_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(mix_path, out_path, config, log)
    finally:
        torch.set_num_threads(old_threads)


def _train(mix_path: str | Path, out_path: Path, config: TrainConfig,
           log: Callable[[str], None]) -> dict:
    pairs = read_mix(mix_path, max_rows=config.max_rows)
    answerable = [p for p in pairs
                  if 0 < len(normalise_answer(p.answer).split()) <= config.max_answer_words]
    if not answerable:
        raise TrainerError(f"{mix_path}: no question-answer pair with a short answer to train on")

    visual, preprocess = _reference(config)
    size, mean, std = _image_size(preprocess), preprocess["mean"], preprocess["std"]

    # Images: each distinct uri read once. A pair whose image cannot be read is skipped
    # (counted), not trained as text-only: it asks about pixels nobody can see.
    uris = sorted({p.image for p in answerable if p.image is not None})
    arrays, image_row = _read_images(uris, size)
    unreadable = set(uris) - set(image_row)
    kept = [p for p in answerable if p.image is None or p.image in image_row]
    if not kept:
        raise TrainerError(f"{mix_path}: no question-answer pair with a readable image or "
                           "without one to train on")
    pixels = _Pixels(arrays, mean, std)
    image_index = torch.tensor([image_row[p.image] if p.image else 0 for p in kept])

    question_vocab = _vocabulary([w for p in kept for w in question_words(p.question)])
    answer_vocab = sorted({normalise_answer(p.answer) for p in kept})
    word_index = {w: i + 2 for i, w in enumerate(question_vocab)}
    answer_index = {a: i for i, a in enumerate(answer_vocab)}
    tokens = _encode_questions([p.question for p in kept], word_index)
    targets = torch.tensor([answer_index[normalise_answer(p.answer)] for p in kept])
    log(f"{mix_path}: {len(pairs)} QA pairs, {len(kept)} kept "
        f"({int((image_index > 0).sum())} with an image), {len(answer_vocab)} answer classes, "
        f"{len(uris) - len(unreadable)} images ({len(unreadable)} unreadable), {size}px")

    probe = build_probe(config.probe_images, seed=config.probe_seed, image_size=size)
    probe_pixels = _Pixels(probe.images, mean, std)
    reference_features = _features(visual, probe_pixels, torch.arange(len(probe.images)))

    torch.manual_seed(config.seed)
    model = DemoVQA(copy.deepcopy(visual), image_dim=reference_features.shape[1],
                    n_words=len(question_vocab) + 2, n_answers=len(answer_vocab),
                    question_dim=config.question_dim, hidden_dim=config.hidden_dim)
    del visual
    bottom, top, tuned = split_tower(model.visual, config.vision_tune)
    model.visual.requires_grad_(False)
    for parameter in tuned:
        parameter.requires_grad_(True)
    head = [p for name, p in model.named_parameters() if not name.startswith("visual.")]
    groups = [{"params": head, "lr": config.lr}]
    if tuned:
        groups.append({"params": tuned, "lr": config.vision_lr})
    model.eval()  # the frozen bottom's output, once per image (row 0: the blank image)
    tower_inputs = _features(bottom, pixels, torch.arange(len(arrays)))
    del pixels, arrays
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    n = len(kept)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    start = time.perf_counter()
    step, loss_value, last_log = 0, float("nan"), start
    while step < total:
        order = torch.randperm(n, generator=generator)
        for begin in range(0, n, config.batch_size):
            if step >= total:
                break
            batch = order[begin:begin + config.batch_size]
            unique, inverse = torch.unique(image_index[batch], return_inverse=True)
            factor = _lr_factor(step, total, config.warmup)
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * factor
            logits = model.answer(top(tower_inputs[unique])[inverse], tokens[batch])
            loss = F.cross_entropy(logits, targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            loss_value = loss.item()
            now = time.perf_counter()
            if now - last_log >= 15 or step == total:
                last_log = now
                log(f"step {step}/{total}  epoch {(step - 1) // steps_per_epoch + 1}  "
                    f"loss {loss_value:.4f}  {now - start:.1f}s")
    train_seconds = time.perf_counter() - start

    metrics = evaluate(model, probe, question_vocab, answer_vocab,
                       reference_features=reference_features, mean=mean, std=std)
    metrics = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    text_only = sum(1 for p in kept if p.image is None)
    metrics.update({
        "train_examples": n,
        "image_examples": n - text_only,
        "text_only_examples": text_only,
        "skipped_long_answers": len(pairs) - len(answerable),
        "skipped_unreadable_image": len(answerable) - n,
        "unreadable_images": len(unreadable),
        "answer_classes": len(answer_vocab),
        "question_words": len(question_vocab),
        "steps": step,
        "epochs": round(step / steps_per_epoch, 3),
        "final_loss": round(loss_value, 4),
        "train_seconds": round(train_seconds, 2),
        "probe_questions": len(probe.questions),
        "image_size": size,
        "seed": config.seed,
        "vision_tune": config.vision_tune,
    })
    _save(out_path, model, question_vocab, answer_vocab, config, metrics)
    metrics["checkpoint_path"] = str(out_path)
    metrics["checkpoint_sha256"] = _file_sha256(out_path)
    log(f"accuracy {metrics['accuracy']:.3f}  blind {metrics['blind_accuracy']:.3f}  "
        f"reliance {metrics['visual_reliance']:.3f}  cka {metrics['cka']:.3f}  -> {out_path}")
    return metrics


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _save(out_path: Path, model: DemoVQA, question_vocab: list[str], answer_vocab: list[str],
          config: TrainConfig, metrics: dict) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "question_vocab": list(question_vocab),
        "answer_vocab": list(answer_vocab),
        "config": config.model_dump(),
        "image_dim": model.image_proj.in_features,
        "metrics": json.loads(json.dumps(metrics)),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, out_path)


class _quiet_random_init_notice:
    """Drop open_clip's "No pretrained weights loaded ... initialized randomly" root-logger
    warning while building an architecture whose weights are loaded right after."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    def __enter__(self):
        logging.getLogger().addFilter(self)

    def __exit__(self, *exc):
        logging.getLogger().removeFilter(self)


def load_checkpoint(path: str | Path) -> tuple[DemoVQA, dict]:
    """(model in eval mode, checkpoint dict) of a checkpoint written by ``train``.

    Loads with ``weights_only=True``; the vision tower's architecture comes from the open_clip
    config named in the checkpoint's config, its weights from the checkpoint.
    """
    import open_clip

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a bad file
        raise TrainerError(f"{path}: not a loadable checkpoint: {error}") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainerError(f"{path}: not a demo VQA checkpoint ({CHECKPOINT_FORMAT})")
    config = TrainConfig(**state["config"])
    register_model_configs()
    with _quiet_random_init_notice():  # the weights come from the checkpoint, next line
        visual = open_clip.create_model(config.model, pretrained=None).visual
    model = DemoVQA(visual, image_dim=state["image_dim"],
                    n_words=len(state["question_vocab"]) + 2,
                    n_answers=len(state["answer_vocab"]), question_dim=config.question_dim,
                    hidden_dim=config.hidden_dim)
    model.load_state_dict(state["state_dict"])
    return model.eval(), state


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m demo.trainer --mix mix.json --out ckpt.pt``: train, print metrics."""
    parser = argparse.ArgumentParser(
        prog="python -m demo.trainer",
        description="Train the demo VQA model on a LLaVA-format mix; print metrics as JSON.")
    parser.add_argument("--mix", required=True, help="LLaVA json (array) or jsonl mix")
    parser.add_argument("--out", required=True, help="checkpoint path to write")
    parser.add_argument("--metrics-out", help="also write the metrics JSON here")
    parser.add_argument("--config", help="JSON object of TrainConfig fields")
    for name, kind in (("epochs", int), ("max_steps", int), ("batch_size", int),
                       ("lr", float), ("vision_lr", float), ("seed", int), ("max_rows", int),
                       ("threads", int), ("probe_images", int)):
        parser.add_argument("--" + name.replace("_", "-"), type=kind, dest=name)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logger.setLevel(logging.INFO)
    fields = json.loads(args.config) if args.config else {}
    fields.update({name: value for name in TrainConfig.model_fields
                   if (value := getattr(args, name, None)) is not None})
    try:
        config = TrainConfig(**fields)
        metrics = train(args.mix, args.out, config)
    except (TrainerError, ValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(metrics, indent=2)
    if args.metrics_out:
        Path(args.metrics_out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
