"""Duplicate index: updating it for one new shard, against rebuilding it whole.

    python -m bench.duplicate_index [--sizes 100000 1000000] [--shards 10]
                                    [--work data/bench/scale]

The corpus is bench.scale's (the demo world, 32 px images, 50 rows an image, generated once
into ``--work``; its store's raw_sft is reused when bench.scale already ingested it). It is cut
into ``--shards`` equal shards (100k rows each at 1M), registered as sources ``shard_00``, ...,
as the landing sensor registers the shards of one dataset: they share images and repeat rows,
so every pair of shards has copies to find.

Each size runs in two processes, so each peak RSS (resource.getrusage) is its own:

    keys     scoring's share: each shard's copy keys and thumbnails
    rebuild  the baseline: every shard's index version made again, each against every other
             shard (what re-materializing duplicate_index for every partition does)
    update   (a process of its own) the last shard indexed against the others, as the audit
             job does when a shard lands; it reads their keys, never their rows

The figures: seconds, update / rebuild, and the update's cost per 100k new rows.
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

from bench.scale import in_child, stage_timer

SIZES = (100_000, 1_000_000)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_size(rows: int, shard_count: int, work: str, phase: str, queue) -> None:
    """``phase`` "build" (keys and rebuild) or "update" for one corpus size, in this child."""
    import polars as pl

    from bench.scale import corpus
    from integrity.detect.context import ScoringContext
    from integrity.detect.cross_source import source_images, source_keys
    from integrity.detect.pairs import qa_pairs
    from integrity.ingest import SourceConfig
    from integrity.names import DUPLICATE_INDEX, RAW_SFT, SCORED_SFT
    from integrity.stages import index_to_store, ingest_to_store
    from integrity.store.versions import VersionStore

    folder = corpus(Path(work), rows, 50)
    store = VersionStore(str(Path(work) / f"store-{rows}-50"))
    shards = [f"shard_{number:02d}" for number in range(shard_count)]
    seconds: dict[str, float] = {}
    timed = stage_timer(seconds, f"{rows:>9,}")

    if phase == "update":
        scored = {shard: store.latest(SCORED_SFT, shard) for shard in shards}
        new = shards[-1]
        others = {shard: version for shard, version in scored.items() if shard != new}
        update = timed("update", lambda: index_to_store(new, scored[new], store, others))
        matches = store.read(DUPLICATE_INDEX, update.version, "matches")
        queue.put({"seconds": seconds, "peak_rss_mb": _peak_mb(),
                   "new_rows": store.read(SCORED_SFT, scored[new], "keys").height,
                   "copied_rows_of_new_shard": matches.filter(
                       pl.col("source") == new)["example_id"].n_unique(),
                   "matches": update.extra["matches"]})
        return

    source = SourceConfig(name="scale", uri=str(folder / "llava.jsonl"), image_root=str(folder))
    raw_version = store.latest(RAW_SFT, source.name) or ingest_to_store(source, store)[1].version
    raw = store.read(RAW_SFT, raw_version)
    shard_rows = -(-raw.height // shard_count)

    def keys() -> dict[str, str]:
        scored = {}
        for number, shard in enumerate(shards):
            part = raw.slice(number * shard_rows, shard_rows)
            context = ScoringContext(qa_pairs(part))
            tables = {"keys": source_keys(context.pairs),
                      "images": source_images(context.pairs, context.image_stats())}
            scored[shard] = store.write(SCORED_SFT, tables, partition=shard,
                                        upstream={RAW_SFT: raw_version},
                                        code_version="bench-keys",
                                        params={"rows": [number * shard_rows, shard_rows]}).version
        return scored

    scored = timed("keys", keys)
    timed("rebuild", lambda: [index_to_store(shard, scored[shard], store, scored)
                              for shard in shards])
    queue.put({"rows": raw.height, "shards": len(shards), "seconds": seconds,
               "peak_rss_mb": _peak_mb()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--work", default="data/bench/scale")
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    runs = []
    for rows in sorted(args.sizes):
        build = in_child(run_size, rows, args.shards, args.work, "build")
        update = in_child(run_size, rows, args.shards, args.work, "update")
        runs.append({**build, **update, "build_rss_mb": build["peak_rss_mb"],
                     "seconds": {**build["seconds"], **update["seconds"]}})
    print(f"\n{'rows':>10} {'shards':>6} {'keys s':>7} {'rebuild s':>9} {'update s':>8} "
          f"{'update/rebuild':>14} {'update s/100k new':>17} {'RSS build':>9} "
          f"{'RSS update':>10}")
    for run in runs:
        s = run["seconds"]
        print(f"{run['rows']:>10,} {run['shards']:>6} {s['keys']:>7.1f} {s['rebuild']:>9.1f} "
              f"{s['update']:>8.1f} {s['update'] / s['rebuild']:>14.2f} "
              f"{s['update'] / run['new_rows'] * 100_000:>17.1f} "
              f"{run['build_rss_mb']:>7,.0f}MB {run['peak_rss_mb']:>8,.0f}MB")
    for run in runs:
        print(f"{run['rows']:,} rows: the new shard ({run['new_rows']:,} rows) copies "
              f"{run['copied_rows_of_new_shard']:,} rows of the others; matches by shard and "
              f"kind: {run['matches']}")
    print("baseline: rebuild (every shard indexed again against every other), same process")


if __name__ == "__main__":
    main()
