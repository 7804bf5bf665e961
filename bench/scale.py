"""Scale: ingest -> score -> audit -> mix at 10k, 100k and 1M rows on this machine.

    python -m bench.scale [--sizes 10000 100000 1000000] [--rows-per-image 50] [--work DIR]

The corpus is the demo world (``integrity-demo generate``, 32 px images, ``rows /
rows-per-image`` distinct images), generated once per size into ``--work`` and reused. Each
size runs twice, each run in a process of its own so that its peak RSS (resource.getrusage)
is its own, both on one store:

    model run      ingest, then score with the reference CLIP on a cold embedding cache
    non-model run  ingest, score again on the warm cache (every detector, no model call),
                   index (duplicate_index: nothing to compare with one source), audit
                   (verdicts, review rows, HTML report), mix (balance, curriculum, LLaVA and
                   LLaMA-Factory exports)

The goal on 1M rows: the non-model run in <= 60 s and <= 4 GB. Baselines, in the same
processes: parsing every line of the file with orjson and nothing else (ingest does far more;
the ratio says how much), and the smallest size (cost per row at each size relative to it:
1.0 is linear).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
from pathlib import Path

SIZES = (10_000, 100_000, 1_000_000)
NON_MODEL = ("ingest", "rescore", "index", "audit", "mix")  # the non-model run's stages


def corpus(work: Path, rows: int, rows_per_image: int) -> Path:
    """The demo world of ``rows`` llava rows, generated once into ``work``."""
    from demo.generate import DemoConfig, generate

    folder = work / f"corpus-{rows}-{rows_per_image}"
    if not (folder / "summary.json").is_file():
        generate(folder, DemoConfig(rows=rows, seed=11, images=max(1, rows // rows_per_image),
                                    image_size=32, sharegpt_rows=0, preference_pairs=0))
    return folder


def stage_timer(seconds: dict[str, float], label: str):
    """``timed(name, step)``: runs ``step``, records its seconds under ``name`` and prints them
    after ``label`` with the peak RSS so far."""
    def timed(name: str, step):
        started = time.perf_counter()
        value = step()
        seconds[name] = time.perf_counter() - started
        print(f"  {label} {name:8} {seconds[name]:7.1f} s   peak RSS so far "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB", flush=True)
        return value
    return timed


def _parses(line: bytes) -> bool:
    import orjson

    try:
        orjson.loads(line)
        return True
    except orjson.JSONDecodeError:
        return False


def run_size(rows: int, rows_per_image: int, work: str, phase: str, queue) -> None:
    """One run (``phase``: "model" or "non-model") of one size in this (child) process; puts
    its figures on ``queue``."""
    from demo.model import demo_encoder_config
    from integrity.ingest import SourceConfig
    from integrity.decide.policy import load_policy
    from integrity.stages import (
        audit_to_store,
        index_to_store,
        ingest_to_store,
        make_encoder,
        mix_to_store,
        score_to_store,
    )
    from integrity.store.versions import VersionStore

    if phase == "model":  # the non-model run never imports torch (a warm cache needs no model)
        import torch

        torch.set_num_threads(2)
    folder = corpus(Path(work), rows, rows_per_image)
    data = folder / "llava.jsonl"
    store = VersionStore(str(Path(work) / f"store-{rows}-{rows_per_image}"))
    source = SourceConfig(name="scale", uri=str(data), image_root=str(folder))
    seconds: dict[str, float] = {}
    timed = stage_timer(seconds, f"{rows:>9,} {phase:9}")

    def parse_only() -> int:  # the baseline: every line parsed, nothing else
        with data.open("rb") as lines:
            return sum(1 for line in lines if _parses(line))

    timed("parse", parse_only)
    result, raw = timed("ingest", lambda: ingest_to_store(source, store))
    encoder = make_encoder(demo_encoder_config(workers=1, batch_size=256), store)
    figures = {"rows": rows, "images": max(1, rows // rows_per_image), "phase": phase,
               "accepted": result.accepted.height}
    del result  # the rows are in the store; a pipeline does not hold them after ingest either
    if phase == "model":
        timed("score", lambda: score_to_store(source, raw.version, store, encoder=encoder))
        figures["encodes"] = encoder.images_encoded + encoder.texts_encoded
    else:
        policy = load_policy()
        _, scored, _ = timed("rescore", lambda: score_to_store(source, raw.version, store,
                                                               encoder=encoder))
        # One source: its index compares it with nothing, but the mix reads it (as in a run).
        timed("index", lambda: index_to_store(source.name, scored.version, store, {}))
        audited = timed("audit", lambda: audit_to_store(source.name, scored.version, store,
                                                        policy))[1]
        mix = timed("mix", lambda: mix_to_store({source.name: audited.version}, store,
                                                policy))[0]
        figures |= {"model_calls": encoder.images_encoded + encoder.texts_encoded,
                    "verdicts": audited.extra["counts"], "mix_rows": mix.height}
    queue.put({**figures, "seconds": seconds,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def in_child(target, *args) -> dict:
    """``target(*args, queue)`` in a spawned process of its own (so its peak RSS is its own);
    returns what it put on the queue."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=target, args=(*args, queue))
    child.start()
    child.join()  # the figures are small: the queue never blocks the child's exit
    if child.exitcode != 0:
        raise SystemExit(f"the run {args} failed (exit code {child.exitcode})")
    return queue.get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--rows-per-image", type=int, default=50)
    parser.add_argument("--work", default="data/bench/scale")
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    runs = [(in_child(run_size, rows, args.rows_per_image, args.work, "model"),
             in_child(run_size, rows, args.rows_per_image, args.work, "non-model"))
            for rows in sorted(args.sizes)]

    base_model, base = runs[0]
    per_row = {name: value / base["rows"] for name, value in
               {**base_model["seconds"], **base["seconds"]}.items()}
    per_row["non-model"] = sum(per_row[name] for name in NON_MODEL)
    against = f"cost/row vs {base['rows']:,}"
    print(f"\n{'rows':>10} {'stage':>10} {'seconds':>8} {'rows/s':>9} {against:>18}")
    for model, plain in runs:
        stages = {"score (model)": model["seconds"]["score"], **plain["seconds"],
                  "non-model": sum(plain["seconds"][name] for name in NON_MODEL)}
        for name, value in stages.items():
            key = "score" if name == "score (model)" else name
            print(f"{plain['rows']:>10,} {name:>13} {value:8.1f} {plain['rows'] / value:9,.0f}"
                  f" {value / plain['rows'] / per_row[key]:15.2f}")
        ratio = plain["seconds"]["ingest"] / plain["seconds"]["parse"]
        print(f"{'':>10} ingest / parse-only {ratio:.1f}x; peak RSS: non-model run "
              f"{plain['peak_rss_mb']:,.0f} MB, model run {model['peak_rss_mb']:,.0f} MB; "
              f"{plain['images']:,} images, {model['encodes']:,} model encodes, "
              f"{plain['model_calls']} in the non-model run; verdicts {plain['verdicts']}; "
              f"mix {plain['mix_rows']:,} rows")
    Path(args.work, "results.json").write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
