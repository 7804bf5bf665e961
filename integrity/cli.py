"""`integrity ...`: the pipeline from the command line, without Dagster.

    integrity ingest SOURCES_FILE [--store DIR] [--source NAME ...]
    integrity summary SOURCES_FILE [--store DIR]
    integrity demo generate --out DIR [--rows N] [--seed S] [--images K] [--text-only-share F]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from integrity.images import ImageRefused
from integrity.ingest import IngestError, SourcesFileError, load_sources
from integrity.policy import PolicyError
from integrity.report import ingest_summary_text
from integrity.stages import ingest_to_store, latest_raw_summaries
from integrity.store import StoreError, VersionStore

DEFAULT_STORE = "data/store"
USER_ERRORS = (IngestError, SourcesFileError, PolicyError, StoreError, ImageRefused, ValueError)


def _selected(sources_file: str, names: list[str] | None):
    sources = load_sources(sources_file)
    if names:
        unknown = sorted(set(names) - {source.name for source in sources})
        if unknown:
            raise SourcesFileError(f"{sources_file} has no source named {', '.join(unknown)}")
        sources = [source for source in sources if source.name in names]
    return sources


def cmd_ingest(args: argparse.Namespace) -> int:
    store = VersionStore(args.store)
    summaries = []
    for source in _selected(args.sources_file, args.source):
        result, manifest = ingest_to_store(source, store)
        summaries.append({**result.summary(), "version": manifest.version,
                          "uri": store.uri("raw_sft", manifest.version)})
    print(json.dumps(summaries, indent=2) if args.json else ingest_summary_text(summaries))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    sources = _selected(args.sources_file, args.source)
    summaries = latest_raw_summaries(VersionStore(args.store), sources)
    missing = sorted({s.name for s in sources} - {s["source"] for s in summaries})
    print(json.dumps(summaries, indent=2) if args.json else ingest_summary_text(summaries))
    if missing:
        print(f"\nnot ingested yet: {', '.join(missing)}")
    return 0


def cmd_demo_generate(args: argparse.Namespace) -> int:
    from integrity.demo.generate import DemoConfig, generate

    options = {field.name: getattr(args, field.name) for field in fields(DemoConfig)
               if getattr(args, field.name, None) is not None}
    summary = generate(Path(args.out), DemoConfig(**options))
    print(json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="integrity", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="ingest sources into raw_sft versions")
    ingest.add_argument("sources_file")
    ingest.add_argument("--store", default=DEFAULT_STORE, help="store root (folder or s3://)")
    ingest.add_argument("--source", action="append", help="only this source (repeatable)")
    ingest.add_argument("--json", action="store_true", help="print JSON")
    ingest.set_defaults(run=cmd_ingest)

    summary = commands.add_parser("summary", help="summarise the latest raw_sft versions")
    summary.add_argument("sources_file")
    summary.add_argument("--store", default=DEFAULT_STORE)
    summary.add_argument("--source", action="append")
    summary.add_argument("--json", action="store_true")
    summary.set_defaults(run=cmd_summary)

    demo = commands.add_parser("demo", help="the synthetic shapes world")
    demo_commands = demo.add_subparsers(dest="demo_command", required=True)
    generate = demo_commands.add_parser("generate", help="write the demo corpus")
    generate.add_argument("--out", required=True)
    generate.add_argument("--rows", type=int)
    generate.add_argument("--seed", type=int)
    generate.add_argument("--images", type=int)
    generate.add_argument("--image-size", dest="image_size", type=int)
    for rate in ("text_only_share", "caption_derived_rate", "blind_rate", "preference_rate",
                 "contradiction_rate", "broken_rate"):
        generate.add_argument(f"--{rate.replace('_', '-')}", dest=rate, type=float)
    generate.set_defaults(run=cmd_demo_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as error:
        print(f"integrity: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
