"""Ingest throughput on a generated LLaVA file, as a ratio to polars' plain read of it.

    python -m bench.ingest [--rows 200000] [--images 4000] [--repeat 3]

Baseline: ``pl.read_ndjson`` of the same file in the same process (parse only: no mapping,
no validation, no image checks). Ours: ``ingest_source`` end to end (parse, map to the
canonical schema, contracts, resolve + hash + decode every distinct image, quarantine), on the
columnar path (``integrity/ingest/columnar.py``) and record by record (``columnar=False``, the
path every line took before it). Peak memory is the process's max RSS (resource.getrusage)
after each phase.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import polars as pl

from demo.generate import DemoConfig, generate
from integrity.ingest.images import ImageResolver
from integrity.ingest import SourceConfig, ingest_source


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(repeat: int, run) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--images", type=int, default=4_000)  # 50 rows an image, as scale.py
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=None, help="corpus folder (default: a temp dir)")
    args = parser.parse_args()

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-ingest-"))
    if not (out / "llava.jsonl").exists():
        # broken_rate 0: polars' reader fails on a bad line, and the baseline must read it all.
        generate(out, DemoConfig(rows=args.rows, images=args.images, seed=1, broken_rate=0.0))
    path = out / "llava.jsonl"
    size_mb = path.stat().st_size / 1e6
    print(f"file: {path} ({size_mb:.1f} MB, {args.rows} rows, {args.images} distinct images)")

    baseline_s, frame = best_of(args.repeat, lambda: pl.read_ndjson(path))
    baseline_peak = peak_rss_mb()
    assert frame.height == args.rows
    source = SourceConfig(name="bench", uri=str(path), image_root=str(out))
    ours_s, result = best_of(args.repeat, lambda: ingest_source(source))
    ours_peak = peak_rss_mb()  # the process's peak so far: each phase's is at most this
    # The share of ours that is image work polars never does: every distinct image read,
    # hashed and decoded, timed alone on a fresh resolver (nothing remembered).
    refs = result.accepted["images"].explode().drop_nulls().unique().to_list()
    images_s, _ = best_of(args.repeat, lambda: ImageResolver(str(out)).check_many(refs))
    records_s, by_record = best_of(args.repeat, lambda: ingest_source(source, columnar=False))
    records_peak = peak_rss_mb()
    assert result.rows_in == args.rows
    assert result.accepted.equals(by_record.accepted)  # the same rows either way

    baseline_rate, ours_rate = args.rows / baseline_s, args.rows / ours_s
    print(f"baseline  polars.read_ndjson  {baseline_s:6.2f} s  {baseline_rate:10,.0f} rows/s"
          f"  peak RSS {baseline_peak:,.0f} MB")
    print(f"before    record by record    {records_s:6.2f} s  {args.rows / records_s:10,.0f} rows/s"
          f"  peak RSS {records_peak:,.0f} MB  ({baseline_s / records_s:.3f}x the baseline)")
    print(f"ours      ingest_source       {ours_s:6.2f} s  {ours_rate:10,.0f} rows/s"
          f"  peak RSS {ours_peak:,.0f} MB  ({result.columnar_rows:,} rows columnar, "
          f"{result.quarantine.height:,} quarantined)")
    print(f"ratio     ours / baseline     {ours_rate / baseline_rate:.3f}x rows/s"
          f"  (best of {args.repeat})")
    print(f"of which  image checks        {images_s:6.2f} s  for {len(refs):,} distinct images; "
          f"the rest (parse, map, contracts) {baseline_s / (ours_s - images_s):.3f}x the baseline")


if __name__ == "__main__":
    main()
