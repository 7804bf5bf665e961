"""The demo RL probe: K short policy-gradient runs from a demo VQA checkpoint on a probe set.

It stands in for an RL stage (TRL's GRPO, OpenRLHF, veRL) the way ``demo/trainer.py`` stands in
for SFT: ``training_rl_probe`` runs it as its own process through Dagster Pipes
(``assets/trainers/demo_rl.py``) and judges what it reports.

Each run starts from the checkpoint and trains GRPO-style on questions drawn from the probe set:

- policy: the checkpoint's answer distribution (a classifier over its answer vocabulary, so an
  answer is one sampled class); the vision tower stays frozen, as in many VLM RL recipes (its
  drift is the SFT checks' business), the question encoder and answer head learn;
- reward: 1 when the sampled answer is the probe's reference answer, else 0;
- advantage: the reward minus the mean of its group (``group_size`` answers sampled for the same
  question), divided by the group's standard deviation (GRPO); a group that agrees teaches
  nothing;
- KL leash: ``kl_coef`` times KL(policy || SFT policy) on the same questions, computed exactly
  (the answer space is small), keeps the policy near what SFT taught.

Every ``eval_every`` steps it measures, on the run's questions, the expected reward (probability
of the reference answer given the image) and the visual reliance (that probability minus the same
with the image replaced by the blank background). A run whose reward rises while its reliance
falls is earning reward by answering from the question alone; ``integrity.decide.rl_probe``
decides which runs are incidents.

Runs differ by seed: which ``prompts_per_run`` questions they draw, their order and the sampled
answers. The settings are fixed in ``RLConfig`` and the same for every checkpoint compared.

The demo probe set (``write_probe_set``) is fresh shapes images whose attribute values follow a
long-tailed prior (weights 1/rank, as answers of real VQA data do: a few colors, counts and
positions dominate): a question then has a likely answer without looking, which is what a policy
that learned to neglect the image exploits.

CLI: ``python -m demo.rl --checkpoint ckpt.pt --probe-set probe.json [--runs 4]`` prints the
runs as JSON; ``python -m demo.rl write-probe-set --out DIR`` writes a probe set.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from demo.generate import IMAGE_TOKEN, QUESTION_ATTRIBUTES, QUESTION_TEMPLATES
from demo.shapes import COLORS, COUNTS, POSITIONS, SHAPES, SIZES, draw_shapes, short_answer
from demo.trainer import (
    TrainerError,
    _encode_questions,
    _features,
    _answer_scores,
    _Pixels,
    _read_images,
    load_checkpoint,
    normalise_answer,
    read_mix,
)

PROBE_SET_FILE = "probe.json"
DEFAULT_PROBE_SET_SEED = 777_000  # neither a corpus seed nor the trainer's probe seed
# The order that sets each attribute's prior (weight 1 / rank): fixed before any comparison.
_PRIOR_ORDER = {"color": tuple(COLORS), "shape": SHAPES, "count": COUNTS,
                "position": POSITIONS, "size": SIZES}


class RLConfig(BaseModel):
    """How each probe run trains (validated at the boundary; unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(40, ge=1, description="Policy-gradient steps per run.")
    prompts_per_run: int = Field(128, ge=1, description="Probe questions a run draws.")
    prompts_per_step: int = Field(32, ge=1, description="Questions per step.")
    group_size: int = Field(8, ge=2, description="Answers sampled per question (GRPO group).")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate of question encoder and head.")
    kl_coef: float = Field(0.02, ge=0, description="Weight of KL(policy || SFT policy).")
    eval_every: int = Field(5, ge=1, description="Steps between curve points.")
    seed: int = Field(0, description="Run i uses seed (seed, i).")
    threads: int | None = Field(2, ge=1, description="torch CPU threads (None = torch's default).")


# ---------------------------------------------------------------------------------------------
# The demo probe set


def _long_tailed(values: Sequence, rng: random.Random):
    return rng.choices(values, weights=[1 / rank for rank in range(1, len(values) + 1)])[0]


def write_probe_set(out: str | Path, *, images: int = 128, seed: int = DEFAULT_PROBE_SET_SEED,
                    image_size: int = 128) -> Path:
    """Write ``images`` fresh shapes images and one question per attribute each, as a LLaVA json
    (``probe.json``, image paths relative to it) with the reference answer as the gpt turn.
    Returns the json's path."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"demo-rl-probe/{seed}")
    records = []
    for i in range(images):
        truth = {name: _long_tailed(values, rng) for name, values in _PRIOR_ORDER.items()}
        name = f"images/probe_{i:05d}.png"
        draw_shapes(**truth, image_size=image_size, rng=rng).save(out / name)
        for attribute in QUESTION_ATTRIBUTES:
            question = rng.choice(QUESTION_TEMPLATES[attribute])
            records.append({"id": f"probe-{i:05d}-{attribute}", "image": name,
                            "conversations": [
                                {"from": "human", "value": f"{IMAGE_TOKEN}\n{question}"},
                                {"from": "gpt", "value": short_answer(attribute,
                                                                      truth[attribute])}]})
    path = out / PROBE_SET_FILE
    path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# The probe


class _Prompts:
    """The probe set as tensors: image feature rows, question tokens, reference answer ids."""

    def __init__(self, features: torch.Tensor, image_row: torch.Tensor, tokens: torch.Tensor,
                 target: torch.Tensor):
        self.features, self.image_row, self.tokens, self.target = (
            features, image_row, tokens, target)

    def __len__(self) -> int:
        return len(self.target)


def _prepare(model, state: dict, probe_set: str | Path) -> tuple[_Prompts, dict]:
    """The probe set's questions against the checkpoint: frozen image features computed once
    (row 0 is the blank image) and each reference answer's class (-1 when the checkpoint never
    learnt that answer: such a question can never be rewarded)."""
    pairs = read_mix(probe_set)
    if not pairs:
        raise TrainerError(f"{probe_set}: the probe set holds no question-answer pair")
    size = int(state["metrics"]["image_size"])
    # The tower's own normalisation, as open_clip set it when load_checkpoint built it.
    mean, std = model.visual.preprocess_cfg["mean"], model.visual.preprocess_cfg["std"]
    uris = sorted({p.image for p in pairs if p.image is not None})
    arrays, image_row = _read_images(uris, size)
    usable = [p for p in pairs if p.image in image_row]  # a text-only pair probes no pixels
    if not usable:
        raise TrainerError(f"{probe_set}: no probe question has a readable image")
    with torch.inference_mode():
        features = _features(model.visual, _Pixels(arrays, mean, std), torch.arange(len(arrays)))
    word_index = {w: i + 2 for i, w in enumerate(state["question_vocab"])}
    answer_index = {a: i for i, a in enumerate(state["answer_vocab"])}
    target = torch.tensor([answer_index.get(normalise_answer(p.answer), -1) for p in usable])
    prompts = _Prompts(features, torch.tensor([image_row[p.image] for p in usable]),
                       _encode_questions([p.question for p in usable], word_index), target)
    counts = {"probe_pairs": len(pairs), "probe_questions": len(usable),
              "skipped_without_readable_image": len(pairs) - len(usable),
              "answers_unknown_to_checkpoint": int((target < 0).sum())}
    return prompts, counts


def _true_probability(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per question, the probability of its reference answer (0 for one never learnt): the
    trainer's sampled accuracy, which is the expected correctness reward."""
    return _answer_scores(logits, target)["sampled_accuracy"]


@torch.no_grad()
def _measure(policy, prompts: _Prompts, index: torch.Tensor) -> tuple[float, float]:
    """(expected reward, visual reliance) of ``policy`` on the questions ``index``."""
    target, tokens = prompts.target[index], prompts.tokens[index]
    seen = _true_probability(policy.answer(prompts.features[prompts.image_row[index]], tokens),
                             target).mean().item()
    blind = _true_probability(policy.answer(prompts.features[torch.zeros_like(index)], tokens),
                              target).mean().item()
    return seen, seen - blind


def _run(model, prompts: _Prompts, config: RLConfig, run: int) -> dict:
    """One RL run from the checkpoint; its curve of reward and reliance."""
    seed = config.seed * 100_003 + run
    # Every draw (questions, batches, sampled answers) comes from this generator alone.
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(prompts), generator=generator)[:config.prompts_per_run]
    policy = copy.deepcopy(model)
    policy.visual.requires_grad_(False)
    trainable = [p for name, p in policy.named_parameters() if not name.startswith("visual.")]
    for parameter in trainable:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(trainable, lr=config.lr)
    features = prompts.features[prompts.image_row]
    with torch.no_grad():
        reference = model.answer(features[index], prompts.tokens[index]).log_softmax(dim=1)
    curve = {"step": [], "reward": [], "reliance": []}

    def record(step: int) -> None:
        reward, reliance = _measure(policy, prompts, index)
        curve["step"].append(step)
        curve["reward"].append(round(reward, 5))
        curve["reliance"].append(round(reliance, 5))

    record(0)
    for step in range(1, config.steps + 1):
        batch = torch.randperm(len(index), generator=generator)[:config.prompts_per_step]
        rows = index[batch]
        log_probs = policy.answer(features[rows], prompts.tokens[rows]).log_softmax(dim=1)
        answers = torch.multinomial(log_probs.exp().detach(), config.group_size,
                                    replacement=True, generator=generator)
        rewards = (answers == prompts.target[rows][:, None]).float()
        # Not divided by the group's std (Dr. GRPO, Liu et al. 2025): a question the policy
        # nearly always gets right would otherwise turn one unlucky sample into a huge step.
        advantage = rewards - rewards.mean(dim=1, keepdim=True)
        policy_loss = -(advantage * log_probs.gather(1, answers)).mean()
        kl = F.kl_div(reference[batch], log_probs, log_target=True, reduction="batchmean")
        loss = policy_loss + config.kl_coef * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % config.eval_every == 0 or step == config.steps:
            record(step)
    return {"run": run, "seed": seed, "questions": len(index), **curve}


def rl_probe(checkpoint: str | Path, probe_set: str | Path, *, runs: int,
             config: RLConfig | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    """``runs`` RL runs from ``checkpoint`` on ``probe_set``: {"runs": [per-run curves],
    "config": ..., and the probe set's counts}. Each curve holds ``step``, ``reward`` and
    ``reliance`` lists; the first point is the checkpoint itself."""
    config = config or RLConfig()
    log = log or (lambda line: None)
    old_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        model, state = load_checkpoint(checkpoint)
        model.requires_grad_(False)
        prompts, counts = _prepare(model, state, probe_set)
        log(f"{probe_set}: {counts['probe_questions']} questions "
            f"({counts['answers_unknown_to_checkpoint']} with an answer the checkpoint never "
            f"learnt); {runs} runs of {config.steps} steps")
        results = []
        for run in range(runs):
            results.append(_run(model, prompts, config, run))
            curve = results[-1]
            log(f"run {run}: reward {curve['reward'][0]:.3f} -> {curve['reward'][-1]:.3f}, "
                f"reliance {curve['reliance'][0]:.3f} -> {curve['reliance'][-1]:.3f}")
    finally:
        torch.set_num_threads(old_threads)
    return {"runs": results, "config": config.model_dump(), **counts}


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["write-probe-set"]:
        parser = argparse.ArgumentParser(prog="python -m demo.rl write-probe-set")
        parser.add_argument("--out", required=True)
        parser.add_argument("--images", type=int, default=128)
        parser.add_argument("--seed", type=int, default=DEFAULT_PROBE_SET_SEED)
        args = parser.parse_args(argv[1:])
        print(write_probe_set(args.out, images=args.images, seed=args.seed))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m demo.rl",
        description="Run the demo RL probe from a demo VQA checkpoint; print the runs as JSON.")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--probe-set", required=True, dest="probe_set")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--config", help="JSON object of RLConfig fields")
    args = parser.parse_args(argv)
    try:
        config = RLConfig(**json.loads(args.config or "{}"))
        result = rl_probe(args.checkpoint, args.probe_set, runs=args.runs, config=config,
                          log=lambda line: print(line, file=sys.stderr, flush=True))
    except (TrainerError, ValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
