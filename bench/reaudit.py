"""Re-audit after a policy change: no model work, a small fraction of the first audit's time.

    python bench/reaudit.py [--rows 200000] [--images 2000] [--corpus DIR]

Baseline: the first pass over a generated LLaVA corpus: ingest, score with the reference CLIP
(every image and text encoded), audit. Then a stricter policy (a different threshold) is
audited again from the stored scored_sft version: zero model calls, and the time as a share
of the first scoring + audit. Peak memory from resource.getrusage.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from integrity.demo.generate import DemoConfig, generate
from integrity.demo.reference import REFERENCE_WEIGHTS
from integrity.encoder import EncoderConfig
from integrity.ingest import SourceConfig
from integrity.policy import Policy
from integrity.stages import audit_to_store, ingest_to_store, make_encoder, score_to_store
from integrity.store import VersionStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--images", type=int, default=2_000)
    parser.add_argument("--corpus", type=Path,
                        help="generate the corpus here, or reuse the one already there (20k "
                             "images take ~25 min to draw)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="bench-reaudit-"))
    corpus = args.corpus or work / "demo"
    config = DemoConfig(rows=args.rows, images=args.images, seed=5)
    if not _generated(corpus, config):
        generate(corpus, config)
    source = SourceConfig(name="bench", uri=str(corpus / "llava.jsonl"))
    store = VersionStore(str(work / "store"))
    _, raw = ingest_to_store(source, store)

    encoder = make_encoder(EncoderConfig(model="shapes-clip", pretrained=str(REFERENCE_WEIGHTS),
                                         workers=1), store)
    started = time.perf_counter()
    _, scored, _ = score_to_store(source, raw.version, store, encoder=encoder)
    audit_to_store(source.name, scored.version, store, Policy())
    first = time.perf_counter() - started
    calls = encoder.images_encoded + encoder.texts_encoded

    stricter = Policy.model_validate({"signals": {"caption_derived": {"leak_score_min": 0.3}},
                                      "audit": {"actions": {"contradiction": "drop"}}})
    started = time.perf_counter()
    result, _, _ = audit_to_store(source.name, scored.version, store, stricter)
    again = time.perf_counter() - started
    extra_calls = encoder.images_encoded + encoder.texts_encoded - calls

    print(f"{args.rows} rows, {args.images} distinct images, scored version {scored.version}")
    print(f"baseline  score + audit (cold)         {first:8.2f} s  ({calls} model encodes)")
    print(f"ours      re-audit, changed policy     {again:8.2f} s  ({extra_calls} model calls)")
    print(f"ratio     re-audit / first             {again / first:8.2%}  (target <= 5%)")
    print(f"verdicts  {result.counts()}")
    print(f"peak RSS  {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


def _generated(corpus: Path, config: DemoConfig) -> bool:
    """Whether ``corpus`` holds a finished demo corpus of ``config`` (summary.json comes last)."""
    summary = corpus / "summary.json"
    return summary.exists() and json.loads(summary.read_text())["config"] == asdict(config.resolved())


if __name__ == "__main__":
    main()
