"""The demo's reference CLIP: a small open_clip model trained from scratch on the shapes world.

No weights can be downloaded here, so the demo ships its own: ``demo/models/`` holds the
open_clip model config ``shapes-clip.json`` and the weights ``shapes-clip.pt`` (an fp16
state_dict of plain tensors). They load through the same path users take for real weights::

    register_model_configs()  # makes "shapes-clip" a known open_clip model name
    open_clip.create_model_and_transforms("shapes-clip", pretrained=str(REFERENCE_WEIGHTS))

``train_reference`` reproduces the weights (``python -m demo train-reference``): contrastive
training with open_clip's own ``ClipLoss`` on freshly drawn images (seeds >= 10_000, disjoint
from the demo corpus, which uses small seeds) and varied captions. Each step has two parts:

- one batch of ``batch_size`` images with *distinct* truths, each paired with a caption that
  names a random subset of its attributes, widened until no other image of the batch fits it,
  so the batch holds no false negative (identical or merely compatible captions);
- per attribute, the batch is cut into small groups whose images differ in that attribute,
  paired with one-attribute texts of one style ("a photo of red shapes", "The shapes are
  red.", "Red."), so no text of a group fits another image of the group.

``zero_shot_accuracy`` scores held-out images (another seed stream) against one prompt per
value of an attribute, as users of a CLIP do.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from demo.generate import DemoConfigError
from demo.model import MODEL_NAME, MODELS_DIR, REFERENCE_CONFIG, REFERENCE_WEIGHTS  # noqa: F401
from demo.shapes import (
    COLORS,
    COUNT_WORDS,
    COUNTS,
    POSITION_PHRASES,
    POSITIONS,
    SHAPES,
    SIZES,
    all_truths,
    caption,
    describe,
    draw_shapes,
    short_answer,
)


MIN_TRAIN_SEED = 10_000  # the demo corpus draws from small seeds; training stays clear of them
DEFAULT_TRAIN_SEED = 12345
DEFAULT_EVAL_SEED = 777_000  # held-out images: a stream of its own
EVAL_IMAGE_SIZE = 128  # the demo corpus default
# Source sizes drawn for training (then resized by the model's preprocessing, like any input),
# so the model sees the demo at its default size most often and at other sizes too.
TRAIN_IMAGE_SIZES: tuple[int, ...] = (64, 96, 128, 128, 128, 192, 256)

VALUES: dict[str, tuple] = {"color": tuple(COLORS), "shape": SHAPES, "count": COUNTS,
                            "position": POSITIONS, "size": SIZES}
ZERO_SHOT_ATTRIBUTES: tuple[str, ...] = ("color", "shape", "count", "position")
_TRUTHS = all_truths()
_CAPTION_ATTRIBUTES: tuple[str, ...] = ("count", "size", "color", "shape", "position")
_MENTION_P: dict[str, float] = {"color": 0.7, "shape": 0.7, "count": 0.7, "position": 0.7,
                                "size": 0.5}
_WRAPPERS: tuple[str, ...] = ("{}", "a photo of {}", "an image of {}", "a picture of {}",
                              "this image shows {}.", "a drawing of {}")
_SENTENCES: dict[str, str] = {
    "color": "The shapes are {}.",
    "shape": "Each shape is a {}.",
    "count": "The number of shapes is {}.",
    "position": "The shapes are {}.",
    "size": "The shapes are {}.",
}
_QUESTIONS: dict[str, str] = {
    "color": "What color are the shapes?",
    "shape": "What shape is shown?",
    "count": "How many shapes are there?",
    "position": "Where are the shapes?",
    "size": "How big are the shapes?",
}


def register_model_configs() -> None:
    """Make ``"shapes-clip"`` (and any config in demo/models/) a known open_clip name."""
    import open_clip

    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(MODELS_DIR)


def load_reference(device: str | torch.device = "cpu", weights: str | Path | None = None):
    """(model, preprocess, tokenizer) of the shipped reference CLIP, in eval mode.

    Loads through ``open_clip.create_model_and_transforms("shapes-clip", pretrained=<path>)``
    (torch.load with weights_only=True); the fp16 file becomes fp32 parameters.
    """
    path = Path(weights) if weights is not None else REFERENCE_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run `python -m demo train-reference --out {path}`")
    return _load_as(MODEL_NAME, path, device)


def _load_as(model_name: str, path: Path, device: str | torch.device = "cpu"):
    import open_clip

    register_model_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=str(path), device=device, weights_only=True)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(model_name)


# ---------------------------------------------------------------------------------------------
# Texts


def _word(attribute: str, value: object) -> str:
    if attribute == "count":
        return COUNT_WORDS[value]
    if attribute == "position":
        return POSITION_PHRASES[value]
    return str(value)


def _phrase(truth: Mapping, mention: set[str] | frozenset[str], noun: str = "shape") -> str:
    """Noun phrase naming the ``mention``ed attributes: ``"two small red circles on the left"``.

    Without a count the noun is plural ("red circles"); without a shape it is ``noun``.
    """
    plural = "count" not in mention or truth["count"] != 1
    words = [_word(a, truth[a]) for a in ("count", "size", "color") if a in mention]
    words.append((truth["shape"] if "shape" in mention else noun) + ("s" if plural else ""))
    if "position" in mention:
        words.append(POSITION_PHRASES[truth["position"]])
    return " ".join(words)


def zero_shot_prompts(attribute: str) -> dict[object, str]:
    """One prompt per value of ``attribute``: "a photo of red shapes", "a photo of circles",
    "a photo of two shapes", "a photo of shapes on the left", "a photo of small shapes"."""
    if attribute not in VALUES:
        raise ValueError(f"attribute must be one of {list(VALUES)}, got {attribute!r}")
    base = {"color": "red", "shape": "circle", "count": 2, "position": "left", "size": "small"}
    return {v: "a photo of " + _phrase({**base, attribute: v}, {attribute})
            for v in VALUES[attribute]}


def _batch_caption(truth: Mapping, batch_keys: Callable[[tuple[str, ...]], Counter],
                   rng: random.Random) -> str:
    """A caption of ``truth`` that fits no other image of its batch (see ``_unique_mention``)."""
    mention = _unique_mention(truth, batch_keys, rng)
    if len(mention) == 5 and rng.random() < 0.3:
        return caption(truth) if rng.random() < 0.5 else describe(truth)
    text = _phrase(truth, mention, noun=rng.choice(("shape", "shape", "object")))
    wrapper = rng.choice((*_WRAPPERS, "there {be} {}."))
    be = "is" if "count" in mention and truth["count"] == 1 else "are"
    return wrapper.replace("{be}", be).format(text)


def _unique_mention(truth: Mapping, batch_keys: Callable[[tuple[str, ...]], Counter],
                    rng: random.Random) -> set[str]:
    """A random set of attributes, widened until it singles ``truth`` out of its batch."""
    mention = {a for a in _CAPTION_ATTRIBUTES if rng.random() < _MENTION_P[a]}
    rest = [a for a in _CAPTION_ATTRIBUTES if a not in mention]
    rng.shuffle(rest)
    while True:
        key = tuple(sorted(mention))
        if mention and batch_keys(key)[tuple(truth[a] for a in key)] == 1:
            return mention
        mention.add(rest.pop())  # all five attributes always single out a distinct truth


def _attribute_style(attribute: str, rng: random.Random) -> Callable[[object], str]:
    """A random text style for one attribute: value -> text, the value the only difference."""
    kind = rng.randrange(4)
    if kind == 0:
        noun = rng.choice(("shape", "object"))
        wrapper = rng.choice(_WRAPPERS)
        base = {"color": "red", "shape": "circle", "count": 2, "position": "left",
                "size": "small"}
        return lambda v: wrapper.format(_phrase({**base, attribute: v}, {attribute}, noun))
    if kind == 1:
        return lambda v: _SENTENCES[attribute].format(_word(attribute, v))
    if kind == 2:
        return lambda v: short_answer(attribute, v)
    return lambda v: f"{_QUESTIONS[attribute]} {short_answer(attribute, v)}"


# ---------------------------------------------------------------------------------------------
# Images


def _pixels(images: Sequence[Image.Image], size: int, mean: Sequence[float],
            std: Sequence[float]) -> torch.Tensor:
    """Batch tensor equal to open_clip's eval preprocessing of square RGB images (bicubic
    resize to ``size``, scale to [0, 1], normalize), without its per-image overhead."""
    arrays = [np.asarray(im if im.size == (size, size)
                         else im.resize((size, size), Image.Resampling.BICUBIC))
              for im in images]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def _draw(truth: Mapping, image_size: int, rng: random.Random) -> Image.Image:
    return draw_shapes(truth["color"], truth["shape"], truth["count"], truth["position"],
                       truth["size"], image_size, rng=rng)


# ---------------------------------------------------------------------------------------------
# Evaluation


@torch.inference_mode()
def zero_shot_accuracy(model, preprocess, tokenizer, *, attribute: str, n: int = 300,
                       seed: int = DEFAULT_EVAL_SEED, image_size: int = EVAL_IMAGE_SIZE,
                       batch_size: int = 100) -> float:
    """Share of ``n`` fresh images (truths uniform over the world, drawn at ``image_size``
    from ``random.Random(seed)``) whose best-scoring prompt of ``zero_shot_prompts(attribute)``
    names the true value."""
    prompts = zero_shot_prompts(attribute)
    values = list(prompts)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        text = model.encode_text(tokenizer(list(prompts.values())).to(device), normalize=True)
        rng = random.Random(seed)
        truths = [rng.choice(_TRUTHS) for _ in range(n)]
        correct = 0
        for start in range(0, n, batch_size):
            chunk = truths[start:start + batch_size]
            x = torch.stack([preprocess(_draw(t, image_size, rng)) for t in chunk]).to(device)
            best = (model.encode_image(x, normalize=True) @ text.T).argmax(dim=1).tolist()
            correct += sum(values[b] == t[attribute] for b, t in zip(best, chunk, strict=True))
    finally:
        model.train(was_training)
    return correct / n if n else 0.0


# ---------------------------------------------------------------------------------------------
# Training


def _lr_at(progress: float, base_lr: float, warmup: float) -> float:
    if progress < warmup:
        return base_lr * (progress / warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip's recipe: no weight decay on gains, biases, norms and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name \
            or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0},
            {"params": decay, "weight_decay": weight_decay}]


def save_weights(model: torch.nn.Module, out: Path) -> int:
    """Write the state_dict as plain tensors (floats in fp16); return the file size."""
    state = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).clone()
             for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out)
    return out.stat().st_size


def train_reference(
    out: Path,
    *,
    seed: int = DEFAULT_TRAIN_SEED,
    minutes: float = 8.0,
    batch_size: int = 256,
    lr: float = 2e-3,
    weight_decay: float = 0.1,
    warmup: float = 0.05,
    group_weight: float = 1.0,
    styles_per_attribute: int = 4,
    threads: int | None = 2,
    eval_n: int = 300,
    eval_seed: int = DEFAULT_EVAL_SEED,
    model_name: str = MODEL_NAME,
    log: Callable[[str], None] = print,
) -> dict:
    """Train the reference CLIP from scratch for ``minutes`` of wall time; save it to ``out``.

    The learning rate follows warmup + cosine over the time budget, so the run fits the budget
    on any machine (the weights therefore depend on the machine's speed, the recipe does not).
    Returns the metrics: steps, images seen, train seconds, final losses, parameter count,
    file size and, unless ``eval_n`` is 0, zero-shot accuracy per attribute of the *saved*
    file (reloaded through open_clip) on ``eval_n`` held-out images.
    """
    import open_clip
    from open_clip.loss import ClipLoss

    if seed < MIN_TRAIN_SEED:
        raise DemoConfigError(f"seed must be >= {MIN_TRAIN_SEED} (the demo corpus uses small "
                              "seeds)")
    if not 2 <= batch_size <= len(_TRUTHS):
        raise DemoConfigError(f"batch_size must be in [2, {len(_TRUTHS)}] (distinct truths per "
                              "batch)")
    if minutes <= 0:
        raise DemoConfigError(f"minutes must be > 0, got {minutes}")
    out = Path(out)
    register_model_configs()
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        rng = random.Random(seed)
        model = open_clip.create_model(model_name, pretrained=None)
        tokenizer = open_clip.get_tokenizer(model_name)
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg["size"] if isinstance(cfg["size"], int) else cfg["size"][0]
        n_params = sum(p.numel() for p in model.parameters())
        model.train()
        optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr,
                                      betas=(0.9, 0.98), eps=1e-6)
        loss_fn = ClipLoss()
        budget = minutes * 60.0
        log(f"training {model_name} ({n_params / 1e6:.2f}M params) for {minutes:g} min, "
            f"batch {batch_size}, lr {lr:g}, seed {seed}, {torch.get_num_threads()} threads")
        start = time.perf_counter()
        step, seen, last_log = 0, 0, start
        batch_loss = group_loss = float("nan")
        while True:
            progress = (time.perf_counter() - start) / budget
            if progress >= 1.0 and step > 0:
                break
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(min(progress, 1.0), lr, warmup)

            truths = rng.sample(_TRUTHS, batch_size)
            images = [_draw(t, rng.choice(TRAIN_IMAGE_SIZES), rng) for t in truths]
            pixels = _pixels(images, size, cfg["mean"], cfg["std"])

            key_cache: dict[tuple[str, ...], Counter] = {}

            def batch_keys(key: tuple[str, ...], truths=truths, key_cache=key_cache) -> Counter:
                if key not in key_cache:
                    key_cache[key] = Counter(tuple(t[a] for a in key) for t in truths)
                return key_cache[key]

            captions = [_batch_caption(t, batch_keys, rng) for t in truths]
            groups: list[tuple[list[int], list[str]]] = []
            for attribute, values in VALUES.items():
                styles = [_attribute_style(attribute, rng) for _ in range(styles_per_attribute)]
                order = list(range(batch_size))
                rng.shuffle(order)
                buckets = {v: [i for i in order if truths[i][attribute] == v] for v in values}
                for g in range(min(len(b) for b in buckets.values())):
                    style = rng.choice(styles)
                    groups.append(([buckets[v][g] for v in values], [style(v) for v in values]))
            group_texts = sorted({text for _, texts in groups for text in texts})
            text_index = {text: len(captions) + i for i, text in enumerate(group_texts)}

            image_features = model.encode_image(pixels, normalize=True)
            text_features = model.encode_text(tokenizer(captions + group_texts), normalize=True)
            scale = model.logit_scale.exp()
            main = loss_fn(image_features, text_features[:batch_size], scale)
            per_group = [loss_fn(image_features[idx], text_features[[text_index[t] for t in texts]],
                                 scale) for idx, texts in groups]
            side = torch.stack(per_group).mean() if per_group else torch.zeros(())
            loss = main + group_weight * side

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
            seen += batch_size
            batch_loss, group_loss = main.item(), side.item()
            now = time.perf_counter()
            if now - last_log >= 30 or step == 1:
                last_log = now
                log(f"step {step:5d}  {now - start:6.1f}s  lr {optimizer.param_groups[0]['lr']:.2e}"
                    f"  batch loss {batch_loss:.3f}  group loss {group_loss:.3f}"
                    f"  logit scale {scale.item():.1f}")
        train_seconds = time.perf_counter() - start
        model.eval()
        n_bytes = save_weights(model, out)
        log(f"saved {out} ({n_bytes / 1e6:.1f} MB) after {step} steps, {train_seconds:.0f}s")
        metrics: dict = {
            "model": model_name, "weights": str(out), "bytes": n_bytes, "params": n_params,
            "seed": seed, "batch_size": batch_size, "lr": lr, "steps": step,
            "images_seen": seen, "train_seconds": round(train_seconds, 1),
            "final_batch_loss": round(batch_loss, 4), "final_group_loss": round(group_loss, 4),
        }
        if eval_n:
            loaded, preprocess, tok = _load_as(model_name, out)
            metrics["zero_shot"] = {
                a: zero_shot_accuracy(loaded, preprocess, tok, attribute=a, n=eval_n,
                                      seed=eval_seed) for a in (*ZERO_SHOT_ATTRIBUTES, "size")}
            metrics["eval_n"], metrics["eval_seed"] = eval_n, eval_seed
        return metrics
    finally:
        torch.set_num_threads(old_threads)
