"""Detection quality on wording the detectors were never tuned on, beside the easy demo's.

    python -m bench.detection [--split heldout] [--seeds 0 1 2] [--rates 0.005 0.02 0.05 0.1]
                              [--rows 3000] [--work DIR] [--policy FILE] [--no-easy]

For every seed and flaw rate, the hard demo (``integrity-demo generate --hard``) draws a corpus
from the ``--split`` half of its vocabulary pools with every flaw at that rate; each corpus is
ingested, scored with the shipped reference CLIP and flagged under the policy, row by row
against the ground truth. Printed per flaw class: precision and recall pooled over every
corpus (and at each rate), then the false-positive rate on clean rows (clean rows flagged with
anything) and the share of removed rows (dropped or sent to review) that were clean. The
baseline is the same table on easy-demo corpora of the same seeds (default rates), where every
detector has always scored 1.00. Corpora and the embedding cache live under ``--work`` and are
reused by later runs (the model encodes each image and text once). Peak memory is reported.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import torch

from demo.model import demo_encoder_config
from integrity.decide.audit import audit_rows
from demo.generate import DemoConfig, generate
from demo.hard import generate_hard
from demo.labels import GROUND_TRUTH_CLASSES
from integrity.detect import score_pairs
from integrity.detect.registry import flaw_classes
from integrity.store.embedding_cache import EmbeddingCache
from integrity.detect.encoder import Encoder
from integrity.ingest import SourceConfig, ingest_source
from integrity.decide.policy import flag_rows, load_policy

RATE_FIELDS = ("caption_derived_rate", "blind_rate", "preference_rate", "contradiction_rate",
               "exact_duplicate_rate", "near_duplicate_rate")


@dataclass
class Tally:
    """Row counts behind precision and recall, per flaw class, plus the clean-row figures."""

    hits: Counter = field(default_factory=Counter)      # flagged and truly of the class
    flagged: Counter = field(default_factory=Counter)
    actual: Counter = field(default_factory=Counter)
    clean_rows: int = 0
    clean_flagged: int = 0
    removed: int = 0
    removed_clean: int = 0

    def add(self, other: Tally) -> None:
        for name in ("hits", "flagged", "actual"):
            getattr(self, name).update(getattr(other, name))
        for name in ("clean_rows", "clean_flagged", "removed", "removed_clean"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def truth_of(folder: Path) -> dict[str, set[str]]:
    """example_id -> flaw classes of the llava records (the reviewer's view)."""
    truth = {}
    for line in (folder / "ground_truth.jsonl").open():
        record = json.loads(line)
        if record["file"] == "llava.jsonl":
            truth[record["example_id"]] = {GROUND_TRUTH_CLASSES[f] for f in record["flaws"]
                                           if f in GROUND_TRUTH_CLASSES}
    return truth


def judge(folder: Path, encoder: Encoder, policy, *, show: int = 0) -> Tally:
    """Ingest, score and flag one corpus; count against its ground truth."""
    result = ingest_source(SourceConfig(name=folder.name, uri=str(folder / "llava.jsonl")))
    pairs = score_pairs(result.accepted, encoder=encoder)
    flags = flag_rows(pairs, policy)
    verdicts = audit_rows(pairs, policy, rows_in=result.accepted.height, quarantined=0).verdicts
    truth = truth_of(folder)
    tally = Tally()
    classes = [name for name in flaw_classes() if name in flags.columns]
    flagged_any = set()
    for name in classes:
        predicted = set(flags.filter(pl.col(name).fill_null(False))["example_id"])
        actual = {e for e, found in truth.items() if name in found}
        flagged_any |= predicted
        tally.hits[name] += len(predicted & actual)
        tally.flagged[name] += len(predicted)
        tally.actual[name] += len(actual)
        if show:
            for kind, ids in (("FP", predicted - actual), ("FN", actual - predicted)):
                for example_id in sorted(ids)[:show]:
                    print(f"  {name} {kind} {example_id}", file=sys.stderr)
    clean = {e for e, found in truth.items() if not found}
    removed = set(verdicts.filter(pl.col("verdict") != "keep")["example_id"])
    tally.clean_rows, tally.clean_flagged = len(clean), len(clean & flagged_any)
    tally.removed, tally.removed_clean = len(removed), len(removed & clean)
    return tally


def corpus(work: Path, *, hard: bool, split: str, seed: int, rate: float | None,
           rows: int) -> Path:
    """The corpus folder, generated unless a previous run left it there."""
    name = f"{'hard-' + split if hard else 'easy'}-seed{seed}" + (f"-rate{rate}" if rate else "")
    folder = work / name
    if not (folder / "summary.json").exists():
        rates = {field: rate for field in RATE_FIELDS} if rate is not None else {}
        config = DemoConfig(rows=rows, seed=seed, **rates)
        if hard:
            generate_hard(folder, config, split=split)
        else:
            generate(folder, config)
    return folder


def table(title: str, tally: Tally, by_rate: dict[float, Tally] | None = None) -> str:
    def share(a: int, b: int) -> str:
        return f"{a / b:.2f}" if b else "  - "

    rates = sorted(by_rate or {})
    lines = [f"\n{title}", "| flaw class | precision | recall | flagged | true |"
             + "".join(f" recall @{rate:g} |" for rate in rates),
             "|---|---:|---:|---:|---:|" + "---:|" * len(rates)]
    for name in flaw_classes():
        if not tally.actual[name] and not tally.flagged[name]:
            continue
        lines.append(
            f"| {name} | {share(tally.hits[name], tally.flagged[name])} | "
            f"{share(tally.hits[name], tally.actual[name])} | {tally.flagged[name]} | "
            f"{tally.actual[name]} |"
            + "".join(f" {share(by_rate[r].hits[name], by_rate[r].actual[name])} |"
                      for r in rates))
    lines.append(f"clean rows flagged: {tally.clean_flagged}/{tally.clean_rows} "
                 f"({share(tally.clean_flagged, tally.clean_rows)}); removed rows that were "
                 f"clean: {tally.removed_clean}/{tally.removed} "
                 f"({share(tally.removed_clean, tally.removed)})")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="heldout", choices=("tune", "heldout"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.005, 0.02, 0.05, 0.1])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--work", type=Path, default=Path("data/bench/detection"))
    parser.add_argument("--policy", default=None)
    parser.add_argument("--no-easy", dest="easy", action="store_false")
    parser.add_argument("--show", type=int, default=0, help="print this many FP/FN ids per class")
    args = parser.parse_args()

    torch.set_num_threads(2)
    args.work.mkdir(parents=True, exist_ok=True)
    policy = load_policy(args.policy) if args.policy else load_policy()
    encoder = Encoder(demo_encoder_config(workers=0), cache=EmbeddingCache(str(args.work / "cache")))
    started = time.perf_counter()
    hard, by_rate = Tally(), {rate: Tally() for rate in args.rates}
    for seed in args.seeds:
        for rate in args.rates:
            folder = corpus(args.work, hard=True, split=args.split, seed=seed, rate=rate,
                            rows=args.rows)
            tally = judge(folder, encoder, policy, show=args.show)
            hard.add(tally)
            by_rate[rate].add(tally)
            print(f"{folder.name}: done ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr)
    easy = Tally()
    if args.easy:
        for seed in args.seeds:
            easy.add(judge(corpus(args.work, hard=False, split="", seed=seed, rate=None,
                                  rows=args.rows), encoder, policy))
    print(table(f"Hard demo, {args.split} half: {len(args.seeds)} seeds x rates "
                f"{', '.join(f'{r:g}' for r in args.rates)}, {args.rows} rows each", hard,
                by_rate))
    if args.easy:
        print(table(f"Baseline: easy demo, {len(args.seeds)} seeds, default rates, "
                    f"{args.rows} rows each", easy))
    print(f"\n{time.perf_counter() - started:.0f} s; peak RSS {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
