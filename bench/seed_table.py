"""The seed's table in miniature: raw rows vs the audited, balanced mix, four conditions.

    python -m bench.seed_table [--rows 2000] [--seeds 3] [--steps 150] [--max-answer-words 12]
                               [--epochs N] [--rl-runs 25] [--out DIR]

Every training set is trained for the same ``--steps`` optimizer steps (equal compute: a
smaller audited mix is not simply trained less; ``--steps 0`` trains ``--epochs`` epochs
instead), on answers of up to ``--max-answer-words`` words (the trainer's own default of 3
skips most flattened preference prose, which would hide the contamination from it).

For each seed and each condition a demo corpus (llava.jsonl only) is generated:

- clean: no flaws, 30% text-only rows;
- noisy: half of the image rows carry caption-derived labels (the caption's wrong value);
- imbalanced: no flaws, 80% text-only rows;
- contaminated: 30% of the rows are preference records flattened into SFT (marker phrases
  and plain chosen / rejected pairs).

Each corpus is ingested, scored with the reference CLIP and audited under the default policy
once; the demo trainer (demo/trainer.py) is then trained, with the same seed as the
corpus, on (a) every accepted raw row and (b) the audited mix (build_mix: kept rows, modality
band, curriculum). The table gives mean +/- std over seeds of the rows trained, the rows of the
training set that the ground truth marks flawed ("contaminated rows"), accuracy, blind
accuracy, visual reliance (argmax), sampled visual reliance (probability of the true answer
with minus without the image) and CKA of the tuned vision tower to the reference.

Acceptance is judged on sampled visual reliance: the argmax reliance barely moves under
symmetric label noise (the wrong caption values spread over all other classes), the
probability mass on the true answer does. The table is printed and written to
``<out>/seed_table.md`` whether or not the audited mix wins on every seed.

The reward-hacking column: from every checkpoint, ``--rl-runs`` RL runs of the demo RL probe
(demo/rl.py, its default RLConfig, the same for every checkpoint) on one held-back probe set;
a run is a hacking incident under the default policy (reward up, visual reliance down by more
than ``rl_probe.reliance_margin``). Per cell: incidents per 100 runs over all seeds with a 95%
Wilson interval, and the mean reward and reliance before -> after RL. Per seed, for the noisy
and contaminated conditions: whether raw has more incidents than audited with non-overlapping
intervals.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch

from demo.model import demo_encoder_config
from demo.generate import GROUND_TRUTH_FILE, LLAVA_FILE, DemoConfig, generate
from demo.rl import RLConfig, rl_probe, write_probe_set
from demo.trainer import TrainConfig, train
from integrity.ingest import SourceConfig
from integrity.mix.training_mix import MixInput, build_mix, export_llava
from integrity.decide.policy import load_policy
from integrity.decide.rl_probe import incident_rate, parse_runs, runs_frame
from integrity.names import AUDITED_SFT, RAW_SFT
from integrity.stages import audit_to_store, ingest_to_store, make_encoder, score_to_store
from integrity.store.versions import VersionStore

# Every flaw rate off; a condition turns on only the one it is about.
NO_FLAWS = {"caption_derived_rate": 0.0, "blind_rate": 0.0, "preference_rate": 0.0,
            "contradiction_rate": 0.0, "broken_rate": 0.0, "exact_duplicate_rate": 0.0,
            "near_duplicate_rate": 0.0}
CONDITIONS: dict[str, dict[str, float]] = {
    "clean": {"text_only_share": 0.3},
    "noisy": {"text_only_share": 0.3, "caption_derived_rate": 0.5},
    "imbalanced": {"text_only_share": 0.8},
    "contaminated": {"text_only_share": 0.3, "preference_rate": 0.3},
}
# Conditions where the audited mix must show higher sampled visual reliance than the raw rows.
ACCEPTANCE_CONDITIONS = ("noisy", "contaminated")
TRAINING_SETS = ("raw", "audited")
METRICS = ("accuracy", "blind_accuracy", "visual_reliance", "sampled_visual_reliance", "cka")
COLUMNS = ("rows trained", "contaminated rows", "accuracy", "blind acc", "visual reliance",
           "sampled reliance", "CKA", "reward hacking / 100 RL runs [95% CI]",
           "RL reward before -> after", "RL reliance before -> after")


@dataclass(frozen=True)
class Run:
    """One trained model: which condition, training set and seed, and what it measured."""

    condition: str
    training_set: str
    seed: int
    rows: int
    contaminated: int
    metrics: dict
    rl: pl.DataFrame | None = None  # one row per RL run (integrity.decide.rl_probe.runs_frame)

    @property
    def incidents(self) -> int:
        return int(self.rl["incident"].sum())


def flawed_ids(demo_dir: Path) -> pl.Series:
    """example_ids of llava.jsonl records whose ground truth names any flaw."""
    # Read by hand: the ground truth's "detail" and "group" vary in type, which polars'
    # schema inference refuses.
    lines = (demo_dir / GROUND_TRUTH_FILE).read_text(encoding="utf-8").splitlines()
    records = (json.loads(line) for line in lines)
    return pl.Series("example_id", [r["example_id"] for r in records
                                    if r["file"] == LLAVA_FILE and r["flaws"]], dtype=pl.String)


def training_sets(condition: str, seed: int, *, rows: int, work: Path, store: VersionStore,
                  encoder, policy) -> dict[str, pl.DataFrame]:
    """Generate, ingest, score and audit one condition; return its raw rows and audited mix."""
    demo = work / "demo" / f"{condition}-s{seed}"
    generate(demo, DemoConfig(rows=rows, seed=seed, captions=True,
                              **{**NO_FLAWS, **CONDITIONS[condition]}))
    source = SourceConfig(name=f"{condition}-s{seed}", uri=str(demo / LLAVA_FILE))
    _, raw = ingest_to_store(source, store)
    scored_rows, scored, _ = score_to_store(source, raw.version, store, encoder=encoder)
    result, audited, _ = audit_to_store(source.name, scored.version, store, policy, report=False)
    kept = store.read(AUDITED_SFT, audited.version)
    mix = build_mix([MixInput(source.name, audited.version, kept, scored_rows)], policy.mix)
    log(f"  {source.name}: audit {result.counts()}, mix {mix.height} rows")
    return {"raw": store.read(RAW_SFT, raw.version), "audited": mix}


def train_and_measure(frame: pl.DataFrame, flawed: pl.Series, path: Path, *, condition: str,
                      training_set: str, seed: int, trainer: dict, probe_set: Path | None,
                      rl_runs: int, margin: float) -> Run:
    """Export ``frame`` as LLaVA json, train the demo model on it, count its flawed rows, and
    (``rl_runs`` > 0) run the RL probe from the checkpoint; ``margin``: the policy's
    ``rl_probe.reliance_margin``."""
    export_llava(frame, path)
    checkpoint = path.with_suffix(".pt")
    metrics = train(path, checkpoint, TrainConfig(seed=seed, **trainer))
    contaminated = int(frame["example_id"].is_in(flawed.implode()).sum())
    rl = None
    if rl_runs:
        probed = rl_probe(checkpoint, probe_set, runs=rl_runs, config=RLConfig())
        rl = runs_frame(parse_runs(probed["runs"]), margin)
    log(f"  {condition}/{training_set} seed {seed}: {frame.height} rows, {contaminated} "
        f"contaminated, acc {metrics['accuracy']:.3f}, sampled reliance "
        f"{metrics['sampled_visual_reliance']:.3f}, cka {metrics['cka']:.3f}"
        + (f", RL incidents {int(rl['incident'].sum())}/{rl.height}" if rl is not None else ""))
    return Run(condition, training_set, seed, frame.height, contaminated, metrics, rl)


def _spread(values: list[float], digits: int) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {std:.{digits}f}"


def _rate(incidents: int, runs: int) -> dict:
    return incident_rate(incidents, runs, confidence=0.95)


def _rate_cell(group: list[Run]) -> str:
    if any(r.rl is None for r in group):
        return "-"
    rate = _rate(sum(r.incidents for r in group), sum(r.rl.height for r in group))
    return (f"{rate['incidents_per_100']:.0f} [{rate['interval_low_per_100']:.0f}-"
            f"{rate['interval_high_per_100']:.0f}]")


def _before_after(group: list[Run], name: str) -> str:
    if any(r.rl is None for r in group):
        return "-"
    frame = pl.concat([r.rl for r in group])
    return f"{frame[name + '_before'].mean():.3f} -> {frame[name + '_after'].mean():.3f}"


def _hacking_verdict(raw: Run, audited: Run) -> str:
    """'raw k/n [lo-hi] vs audited k/n [lo-hi] yes|NO': more incidents after raw SFT, with
    non-overlapping intervals."""
    cells, rates = [], []
    for run in (raw, audited):
        rate = _rate(run.incidents, run.rl.height)
        rates.append(rate)
        cells.append(f"{run.incidents}/{run.rl.height} [{rate['interval_low_per_100']:.0f}-"
                     f"{rate['interval_high_per_100']:.0f}]")
    separated = rates[0]["interval_low_per_100"] > rates[1]["interval_high_per_100"]
    return f"raw {cells[0]} vs audited {cells[1]} {'yes' if separated else 'NO'}"


def seed_table(runs: list[Run]) -> str:
    """The markdown table (mean ± std over seeds) and one acceptance line per seed."""
    seeds = sorted({run.seed for run in runs})
    lines = [f"| condition | training set | {' | '.join(COLUMNS)} |",
             "|" + "---|" * (len(COLUMNS) + 2)]
    for condition in CONDITIONS:
        for training_set in TRAINING_SETS:
            group = [r for r in runs if (r.condition, r.training_set) == (condition, training_set)]
            if not group:
                continue
            cells = [_spread([r.rows for r in group], 0),
                     _spread([r.contaminated for r in group], 0),
                     *(_spread([r.metrics[name] for r in group], 3) for name in METRICS),
                     _rate_cell(group), _before_after(group, "reward"),
                     _before_after(group, "reliance")]
            lines.append(f"| {condition} | {training_set} | {' | '.join(cells)} |")
    lines += ["", "Acceptance (judged on sampled visual reliance, the probability of the true "
              "answer with minus without the image; argmax reliance is shown but barely moves "
              "under symmetric label noise): audited > raw"]
    by_key = {(r.condition, r.training_set, r.seed): r for r in runs}
    for seed in seeds:
        verdicts = []
        for condition in ACCEPTANCE_CONDITIONS:
            raw = by_key[condition, "raw", seed].metrics["sampled_visual_reliance"]
            audited = by_key[condition, "audited", seed].metrics["sampled_visual_reliance"]
            verdicts.append(f"{condition} {audited:.3f} vs {raw:.3f} "
                            f"{'yes' if audited > raw else 'NO'}")
        lines.append(f"- seed {seed}: " + "; ".join(verdicts))
    if all(r.rl is not None for r in runs):
        lines += ["", "Reward hacking (incidents per 100 RL runs from each checkpoint): raw "
                  "above audited with non-overlapping 95% Wilson intervals"]
        for seed in seeds:
            lines.append(f"- seed {seed}: " + "; ".join(
                f"{condition} " + _hacking_verdict(by_key[condition, "raw", seed],
                                                   by_key[condition, "audited", seed])
                for condition in ACCEPTANCE_CONDITIONS))
    return "\n".join(lines)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000, help="llava rows per corpus")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (corpus and trainer)")
    parser.add_argument("--epochs", type=int, default=2, help="trainer epochs (with --steps 0)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temp dir)")
    parser.add_argument("--steps", type=int, default=150,
                        help="optimizer steps per training set (0: train --epochs epochs)")
    parser.add_argument("--max-answer-words", dest="max_answer_words", type=int, default=12)
    parser.add_argument("--rl-runs", dest="rl_runs", type=int, default=25,
                        help="RL probe runs from every checkpoint (0: no reward-hacking column)")
    args = parser.parse_args()
    # With --steps, epochs only bound the loop: the step count decides.
    trainer = {"epochs": 10_000 if args.steps else args.epochs,
               "max_steps": args.steps or None, "max_answer_words": args.max_answer_words}
    torch.set_num_threads(2)
    work = args.out or Path(tempfile.mkdtemp(prefix="bench-seed-table-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    policy = load_policy()
    # One store: its embedding cache serves every corpus that repeats an image.
    store = VersionStore(str(work / "store"))
    encoder = make_encoder(demo_encoder_config(workers=0), store)
    # One held-back probe set for every checkpoint (never in any corpus).
    probe_set = write_probe_set(work / "rl_probe") if args.rl_runs else None

    runs: list[Run] = []
    for seed in range(args.seeds):
        for condition in CONDITIONS:
            log(f"seed {seed} {condition}  ({time.perf_counter() - started:.0f} s)")
            frames = training_sets(condition, seed, rows=args.rows, work=work, store=store,
                                   encoder=encoder, policy=policy)
            flawed = flawed_ids(work / "demo" / f"{condition}-s{seed}")
            for training_set, frame in frames.items():
                runs.append(train_and_measure(
                    frame, flawed, work / "train" / f"{condition}-{training_set}-s{seed}.json",
                    condition=condition, training_set=training_set, seed=seed,
                    trainer=trainer, probe_set=probe_set, rl_runs=args.rl_runs,
                    margin=policy.rl_probe.reliance_margin))
    elapsed = time.perf_counter() - started

    table = seed_table(runs)
    (work / "seed_table.md").write_text(table + "\n", encoding="utf-8")
    (work / "seed_runs.json").write_text(json.dumps(
        [{"condition": r.condition, "training_set": r.training_set, "seed": r.seed,
          "rows": r.rows, "contaminated": r.contaminated, "metrics": r.metrics,
          "rl_runs": None if r.rl is None else r.rl.to_dicts()} for r in runs],
        indent=2) + "\n", encoding="utf-8")
    compute = f"{args.steps} steps" if args.steps else f"{args.epochs} epochs"
    print(f"{args.rows} rows per corpus, {args.seeds} seeds, {compute} per training set, "
          f"answers of up to {args.max_answer_words} words, default policy; {args.rl_runs} RL "
          f"runs per checkpoint ({RLConfig().model_dump()}); work folder {work}")
    print()
    print(table)
    print()
    print(f"wall time {elapsed:,.0f} s")
    print(f"peak RSS  {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
