"""Scale: ingest -> score -> audit -> mix at 10k, 100k and 1M rows on this machine.

    python bench/scale.py [--sizes 10000 100000 1000000] [--rows-per-image 50] [--work DIR]

Each size runs in a process of its own, so its peak RSS (resource.getrusage) is its own. The
corpus is the demo world (``integrity demo generate``, 32 px images, ``rows / rows-per-image``
distinct images), generated once per size into ``--work`` and reused by later runs.
Stages, each a store version as the Dagster assets write it:

    ingest       parse, map, contracts, resolve + hash + decode every distinct image
    score        every detector with the reference CLIP, cold embedding cache (model stage)
    rescore      the same again on a warm cache: every non-model detector, no model call
    audit        verdicts, checks' tables, review rows, HTML report
    mix          balance, curriculum, LLaVA and LLaMA-Factory exports

Non-model = ingest + rescore + audit + mix; the goal on 1M rows is <= 60 s and <= 4 GB.
Baselines, in the same process: parsing every line of the same file with orjson and nothing
else (ingest does far more, the ratio says how much), and the smallest size (cost per row at each size, relative to
it: 1.0 is linear).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
from pathlib import Path

SIZES = (10_000, 100_000, 1_000_000)
NON_MODEL = ("ingest", "rescore", "audit", "mix")


def corpus(work: Path, rows: int, rows_per_image: int) -> Path:
    """The demo world of ``rows`` llava rows, generated once into ``work``."""
    from integrity.demo.generate import DemoConfig, generate

    folder = work / f"corpus-{rows}-{rows_per_image}"
    if not (folder / "summary.json").is_file():
        generate(folder, DemoConfig(rows=rows, seed=11, images=max(1, rows // rows_per_image),
                                    image_size=32, sharegpt_rows=0, preference_pairs=0))
    return folder


def _parses(line: bytes) -> bool:
    import orjson

    try:
        orjson.loads(line)
        return True
    except orjson.JSONDecodeError:
        return False


def run_size(rows: int, rows_per_image: int, work: str, queue) -> None:
    """One size end to end in this (child) process; puts its figures on ``queue``."""
    import torch

    from integrity.demo.reference import REFERENCE_WEIGHTS
    from integrity.encoder import EncoderConfig
    from integrity.ingest import SourceConfig
    from integrity.policy import load_policy
    from integrity.stages import (
        audit_to_store,
        ingest_to_store,
        make_encoder,
        mix_to_store,
        score_to_store,
    )
    from integrity.store import VersionStore

    torch.set_num_threads(2)
    folder = corpus(Path(work), rows, rows_per_image)
    data = folder / "llava.jsonl"
    store = VersionStore(str(Path(work) / f"store-{rows}-{time.time_ns()}"))
    source = SourceConfig(name="scale", uri=str(data), image_root=str(folder))
    policy = load_policy()
    seconds: dict[str, float] = {}

    def timed(name: str, step):
        started = time.perf_counter()
        value = step()
        seconds[name] = time.perf_counter() - started
        print(f"  {rows:>9,} {name:8} {seconds[name]:8.1f} s  peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB", flush=True)
        return value

    def parse_only() -> int:  # the baseline: every line parsed, nothing else
        with data.open("rb") as lines:
            return sum(1 for line in lines if _parses(line))

    timed("parse", parse_only)
    result, raw = timed("ingest", lambda: ingest_to_store(source, store))
    encoder = make_encoder(EncoderConfig(model="shapes-clip", pretrained=str(REFERENCE_WEIGHTS),
                                         workers=1, batch_size=256), store)
    timed("score", lambda: score_to_store(source, raw.version, store, encoder=encoder))
    encodes = encoder.images_encoded + encoder.texts_encoded
    warm = make_encoder(encoder.config, store)  # a fresh process's view: cache read from disk
    _, scored, _ = timed("rescore", lambda: score_to_store(source, raw.version, store,
                                                           encoder=warm))
    audited = timed("audit", lambda: audit_to_store(source.name, scored.version, store,
                                                    policy))[1]
    mix = timed("mix", lambda: mix_to_store({source.name: audited.version}, store, policy))[0]
    queue.put({
        "rows": rows, "images": max(1, rows // rows_per_image), "seconds": seconds,
        "accepted": result.accepted.height, "encodes": encodes,
        "rescore_model_calls": warm.images_encoded + warm.texts_encoded,
        "verdicts": audited.extra["counts"], "mix_rows": mix.height,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--rows-per-image", type=int, default=50)
    parser.add_argument("--work", default="data/bench/scale")
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    results = []
    for rows in sorted(args.sizes):
        queue = context.Queue()
        child = context.Process(target=run_size, args=(rows, args.rows_per_image, args.work,
                                                        queue))
        child.start()
        child.join()  # the figures are small: the queue never blocks the child's exit
        if child.exitcode != 0:
            raise SystemExit(f"the {rows:,}-row run failed (exit code {child.exitcode})")
        results.append(queue.get())

    base = results[0]
    per_row = {name: base["seconds"][name] / base["rows"] for name in base["seconds"]}
    against = f"cost/row vs {base['rows']:,}"
    print(f"\n{'rows':>10} {'stage':>12} {'seconds':>9} {'rows/s':>10} {against:>18}")
    for result in results:
        stages = {**result["seconds"],
                  "non-model": sum(result["seconds"][name] for name in NON_MODEL)}
        for name, value in stages.items():
            reference = sum(per_row[n] for n in NON_MODEL) if name == "non-model" \
                else per_row[name]
            print(f"{result['rows']:>10,} {name:>12} {value:9.1f} {result['rows'] / value:10,.0f}"
                  f" {value / result['rows'] / reference:18.2f}")
        ratio = result["seconds"]["ingest"] / result["seconds"]["parse"]
        print(f"{'':>10} {'':>12} ingest / parse-only {ratio:.1f}x; peak RSS "
              f"{result['peak_rss_mb']:,.0f} MB; {result['images']:,} images, "
              f"{result['encodes']:,} model encodes, rescore model calls "
              f"{result['rescore_model_calls']}; verdicts {result['verdicts']}; "
              f"mix {result['mix_rows']:,} rows")
    Path(args.work, "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
