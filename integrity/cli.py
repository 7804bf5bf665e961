"""`integrity ...`: the pipeline from the command line, without Dagster.

    integrity ingest SOURCES_FILE [--store DIR] [--source NAME ...]
    integrity summary SOURCES_FILE [--store DIR]
    integrity score SOURCES_FILE [--store DIR] [--source NAME] [--model M] [--pretrained P]
    integrity audit SOURCES_FILE [--store DIR] [--source NAME] [--policy FILE] [--gate] [--json]
    integrity check SOURCES_FILE [--store DIR] [--source NAME] [--policy FILE] [--json]
    integrity review export SOURCES_FILE --out DIR [--store DIR]
    integrity review import FILE [--store DIR]
    integrity calibrate sample SOURCES_FILE --n N --out FILE [--store DIR] [--seed S]
    integrity calibrate LABELS_FILE [--store DIR] [--policy FILE]
    integrity lineage checkpoint ID|latest [--store DIR] [--json]
    integrity lineage taint (--source S | --version V) [--store DIR] [--json]
    integrity verify [--store DIR] [--asset A]

The demo world has its own command, ``python -m demo`` (demo/cli.py): the product
never imports the demo.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

from integrity.errors import redact, user_message
from integrity.ingest import SourcesFileError, load_eval_sets, load_sources
from integrity.ingest.sources import PRECISIONS, model_for
from integrity.report.summaries import ingest_summary_text
from integrity.names import RAW_SFT, TRAINING_CHECKPOINT
from integrity.stages import ingest_to_store, latest_raw_summaries
from integrity.store.versions import StoreError, VersionStore

DEFAULT_STORE = "data/store"
# Exit codes: 0 success, 1 a blocking check failed (the gate is closed), 2 a usage or data error.
GATE_FAILED = 1
LABELS_COMMAND = "labels"  # `integrity calibrate labels FILE`, also spelt `calibrate FILE`

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
        if result.records_in == 0:
            print(f"integrity: warning: source {source.name} holds no records ({source.uri} is "
                  "empty or blank)", file=sys.stderr)
        summaries.append({**result.summary(), "version": manifest.version,
                          "uri": store.uri(RAW_SFT, manifest.version)})
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


def cmd_score(args: argparse.Namespace) -> int:

    from integrity.detect.encoder_config import encoder_config
    from integrity.report.summaries import signal_table
    from integrity.stages import make_encoder, score_to_store

    store = VersionStore(args.store)
    sources = _selected(args.sources_file, args.source)
    encoders: dict[str, object] = {}

    def encoder_of(source):
        if args.no_model:
            return None
        config = encoder_config(model_for(source, args.sources_file, name=args.model,
                                          pretrained=args.pretrained),
                                batch_size=args.batch_size, workers=args.workers,
                                device=args.device, precision=args.precision)
        key = config.model_dump_json()
        if key not in encoders:
            # EncoderError is a user error; the bar counts images, on a terminal only
            encoders[key] = make_encoder(config, store, progress=not args.json
                                         and sys.stderr.isatty())
        return encoders[key]

    scored = []
    for position, source in enumerate(sources, 1):
        if not args.json:
            print(f"scoring {source.name} ({position} of {len(sources)})", file=sys.stderr,
                  flush=True)
        raw_version = store.latest(RAW_SFT, source.name)
        if raw_version is None:
            raise StoreError(f"{source.name} has no raw_sft version yet: run `integrity ingest`")
        rows, manifest, extra = score_to_store(source, raw_version, store,
                                               encoder=encoder_of(source),
                                               eval_sets=load_eval_sets(args.sources_file))
        scored.append({"source": source.name, "version": manifest.version, **extra})
        if args.json:
            continue
        hit_rate = extra["cache_hit_rate"]
        print(f"{source.name}: {rows.height} rows scored ({extra['rows_per_second']:.0f}/s,"
                   f" cache hit rate {'-' if hit_rate is None else f'{hit_rate:.0%}'}),"
                   f" version {manifest.version}\n{signal_table(extra['signals'])}\n")
    if args.json:
        print(json.dumps(scored, indent=2, default=str))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from integrity.decide.policy import DEFAULT_POLICY, load_policy
    from integrity.report.summaries import audit_markdown
    from integrity.names import REPORT_FILE, REVIEW_FILE, SCORED_SFT
    from integrity.stages import audit_to_store, current_calibration, latest_audits
    from integrity.stages.audit import cross_source_copies
    from integrity.stages.index import update_index

    store = VersionStore(args.store)
    policy = load_policy(args.policy or DEFAULT_POLICY)
    selected = _selected(args.sources_file, args.source)
    calibration = current_calibration(store, policy)
    registered = load_sources(args.sources_file)
    every_source = [other.name for other in registered]
    # Copies across sources: every scored source's keys against every other's, first.
    update_index(store, {other.name: other.storage_options for other in registered})
    audited = []
    for source in selected:
        scored_version = store.latest(SCORED_SFT, source.name)
        if scored_version is None:
            raise StoreError(f"{source.name} has no scored_sft version yet: run `integrity score`")
        peers = latest_audits(store, [name for name in every_source if name != source.name])
        copies = cross_source_copies(store, source.name, scored_version, every_source, policy)
        _, manifest, files = audit_to_store(source.name, scored_version, store, policy,
                                            storage_options=source.storage_options,
                                            calibration=calibration, peers=peers, copies=copies)
        all_audits = {**peers, source.name: {"version": manifest.version, **manifest.extra}}
        audited.append({"source": source.name, "version": manifest.version,
                        "counts": manifest.extra["counts"], "reasons": manifest.extra["reasons"],
                        "rows_in": manifest.extra["rows_in"],
                        "quarantined": manifest.extra["quarantined"], **files})
        if not args.json:
            print(f"{source.name}: audited {manifest.version}\n"
                  f"{audit_markdown(source.name, manifest.extra, all_audits, policy)}\n"
                  f"report: {files[REPORT_FILE]}\nreview rows: {files[REVIEW_FILE]}\n")
    if not args.gate:
        if args.json:
            print(json.dumps(audited, indent=2))
        return 0
    outcomes = _gate(store, [source.name for source in selected], policy)
    if args.json:
        print(json.dumps({"audits": audited, "checks": [vars(o) for o in outcomes]}, indent=2))
    else:
        _print_gate(outcomes)
    return GATE_FAILED if any(not o.passed for o in outcomes) else 0


def _gate(store: VersionStore, sources: list[str], policy) -> list:
    from integrity.decide.gate import gate_source

    return [outcome for source in sources for outcome in gate_source(store, source, policy)]


def _print_gate(outcomes: list) -> None:
    failed = [o for o in outcomes if not o.passed]
    for outcome in outcomes:
        print(outcome.line())
    print(f"gate: {len(outcomes) - len(failed)} of {len(outcomes)} blocking checks passed"
          + (f"; failed: {', '.join(f'{o.source}/{o.check}' for o in failed)}" if failed else ""))


def cmd_check(args: argparse.Namespace) -> int:
    """Every blocking check of each source's latest audited chain; exit 1 when one fails."""
    from integrity.decide.policy import DEFAULT_POLICY, load_policy

    store = VersionStore(args.store)
    policy = load_policy(args.policy or DEFAULT_POLICY)
    outcomes = _gate(store, [s.name for s in _selected(args.sources_file, args.source)], policy)
    if args.json:
        print(json.dumps([vars(o) for o in outcomes], indent=2))
    else:
        _print_gate(outcomes)
    return GATE_FAILED if any(not o.passed for o in outcomes) else 0


def cmd_review_export(args: argparse.Namespace) -> int:
    from integrity.decide.review import export_reviews

    store = VersionStore(args.store)
    for source in _selected(args.sources_file, args.source):
        path = Path(args.out) / f"{source.name}.review.jsonl"
        count = export_reviews(store, source.name, path)
        print(f"{source.name}: {count} rows to review -> {path} (set verdict to keep or drop)")
    return 0


def cmd_review_import(args: argparse.Namespace) -> int:
    from integrity.decide.review import import_reviews

    for source, count in import_reviews(VersionStore(args.store), Path(args.file)).items():
        print(f"{source}: {count} human verdicts recorded; they apply from the next audit")
    return 0


def cmd_calibrate_sample(args: argparse.Namespace) -> int:
    from integrity.decide.policy import DEFAULT_POLICY, load_policy
    from integrity.stages import calibration_sample

    sources = [source.name for source in _selected(args.sources_file, args.source)]
    sample = calibration_sample(VersionStore(args.store), sources,
                                load_policy(args.policy or DEFAULT_POLICY), n=args.n,
                                seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sample.write_ndjson(out)
    strata = sample.group_by("source", "stratum").agg(pl.len(), pl.col("stratum_rows").first())
    print(f"{sample.height} rows to label -> {out} (set label to clean or the flaw classes)")
    for source, stratum, drawn, rows in strata.sort("source", "stratum").iter_rows():
        print(f"  {source:24} {stratum:22} {drawn:5} of {rows}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from integrity.decide.calibration import parse_labels
    from integrity.decide.policy import DEFAULT_POLICY, load_policy
    from integrity.report.summaries import calibration_markdown
    from integrity.stages import calibrate_to_store

    policy = load_policy(args.policy or DEFAULT_POLICY)
    labels = parse_labels(Path(args.labels_file).read_text().splitlines(),
                          name=args.labels_file)
    judged, manifest, report = calibrate_to_store(VersionStore(args.store), labels, policy)
    print(calibration_markdown(manifest.version, judged["estimates"], policy))
    print("\nthreshold reaching precision "
          f"{policy.calibration.target_precision:g} on this sample:")
    for signal, cut in judged["recommended"].items():
        print(f"  {signal:20} " + (f"{cut['threshold']:.4g} (precision {cut['precision']:.2f}, "
                                   f"recall {cut['recall'] or 0:.2f})" if cut else "none"))
    print(f"report: {report}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    store = VersionStore(args.store)
    assets = args.asset or store.assets()
    problems, checked, unverifiable = [], 0, []
    for asset in assets:
        for version in store.versions(asset):
            if not store.checksummed(asset, version):
                unverifiable.append(f"{asset}/{version}")
                continue
            problems += store.verify(asset, version)
            checked += 1
    for problem in problems:
        print(f"FAIL  {problem}")
    for name in unverifiable:
        print(f"SKIP  {name}: written before checksums were recorded (re-run its stage to "
              "replace it)")
    print(f"verify: {checked} versions of {len(assets)} assets in {store.root}: "
          + (f"{len(problems)} problems" if problems else "every file matches its checksum")
          + (f"; {len(unverifiable)} older versions cannot be verified" if unverifiable else ""))
    return GATE_FAILED if problems else 0


def cmd_lineage_checkpoint(args: argparse.Namespace) -> int:
    from integrity.store.lineage import checkpoint_lineage, format_lineage

    store = VersionStore(args.store)
    checkpoint = store.latest(TRAINING_CHECKPOINT) if args.id == "latest" else args.id
    if checkpoint is None:
        raise StoreError(f"{store.root} holds no training checkpoint yet")
    frame = checkpoint_lineage(store, checkpoint)
    print(json.dumps(frame.to_dicts(), indent=2, default=str) if args.json
          else format_lineage(frame))
    return 0


def cmd_lineage_taint(args: argparse.Namespace) -> int:
    from integrity.store.lineage import downstream_of, format_taint

    frame = downstream_of(VersionStore(args.store), version=args.version, source=args.source)
    print(json.dumps(frame.to_dicts(), indent=2, default=str) if args.json
          else format_taint(frame))
    return 0


def _add_sources(command: argparse.ArgumentParser) -> None:
    """The arguments every per-source command takes."""
    command.add_argument("sources_file")
    command.add_argument("--store", default=DEFAULT_STORE, help="store root (folder or s3://)")
    command.add_argument("--source", action="append", help="only this source (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="integrity", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="ingest sources into raw_sft versions")
    _add_sources(ingest)
    ingest.add_argument("--json", action="store_true", help="print JSON")
    ingest.set_defaults(run=cmd_ingest)

    summary = commands.add_parser("summary", help="summarise the latest raw_sft versions")
    _add_sources(summary)
    summary.add_argument("--json", action="store_true")
    summary.set_defaults(run=cmd_summary)

    score = commands.add_parser("score", help="score the latest raw_sft version of each source")
    _add_sources(score)
    score.add_argument("--model", default=None,
                       help="open_clip model name (default: the sources file's model)")
    score.add_argument("--pretrained", default=None,
                       help="open_clip pretrained tag or weights file, with --model")
    score.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N | mps "
                                                      "(default: the sources file's)")
    score.add_argument("--precision", default=None, choices=PRECISIONS,
                       help="default: the sources file's (fp32)")
    score.add_argument("--batch-size", dest="batch_size", type=int, default=64)
    score.add_argument("--workers", type=int, default=1)
    score.add_argument("--no-model", dest="no_model", action="store_true",
                       help="only the detectors that need no model")
    score.add_argument("--json", action="store_true", help="print JSON")
    score.set_defaults(run=cmd_score)

    audit = commands.add_parser("audit", help="verdicts for the latest scored_sft of each source")
    _add_sources(audit)
    audit.add_argument("--policy", help="policy file (default: the packaged integrity/policies/default.yaml)")
    audit.add_argument("--gate", action="store_true",
                       help="then run every blocking check (as `integrity check`); exit 1 when "
                            "one fails")
    audit.add_argument("--json", action="store_true", help="print JSON")
    audit.set_defaults(run=cmd_audit)

    check = commands.add_parser(
        "check", help="the gate: every blocking check of each source's latest audit, exit 1 "
                      "naming the failures (the same rules Dagster enforces)")
    _add_sources(check)
    check.add_argument("--policy", help="policy file (default: the packaged integrity/policies/default.yaml)")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(run=cmd_check)

    review = commands.add_parser("review", help="human review of rows an audit sent to review")
    review_commands = review.add_subparsers(dest="review_command", required=True)
    export = review_commands.add_parser("export", help="write review rows as JSONL")
    _add_sources(export)
    export.add_argument("--out", required=True, help="folder for <source>.review.jsonl")
    export.set_defaults(run=cmd_review_export)
    imported = review_commands.add_parser("import", help="record reviewers' keep/drop verdicts")
    imported.add_argument("file")
    imported.add_argument("--store", default=DEFAULT_STORE)
    imported.set_defaults(run=cmd_review_import)

    calibrate = commands.add_parser(
        "calibrate", help="judge the auditor on labelled rows (calibrate LABELS_FILE), or draw "
        "the rows to label (calibrate sample)")
    calibrate_commands = calibrate.add_subparsers(dest="calibrate_command", required=True)
    sample = calibrate_commands.add_parser(
        "sample", help="a stratified sample of every source's scored rows, for reviewers")
    _add_sources(sample)
    sample.add_argument("--n", type=int, required=True, help="rows to draw")
    sample.add_argument("--out", required=True, help="JSONL file to write")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--policy", help="policy file (default: the packaged integrity/policies/default.yaml)")
    sample.set_defaults(run=cmd_calibrate_sample)
    estimate = calibrate_commands.add_parser(
        LABELS_COMMAND, help="precision/recall with intervals from the labelled sample")
    estimate.add_argument("labels_file", help="the sample file with label filled in")
    estimate.add_argument("--store", default=DEFAULT_STORE, help="store root (folder or s3://)")
    estimate.add_argument("--policy", help="policy file (default: the packaged integrity/policies/default.yaml)")
    estimate.set_defaults(run=cmd_calibrate)

    verify = commands.add_parser(
        "verify", help="check every stored file against the sha256 recorded when it was written "
                       "(and each version against its content hash); exit 1 naming each problem")
    verify.add_argument("--store", default=DEFAULT_STORE, help="store root (folder or s3://)")
    verify.add_argument("--asset", action="append", help="only this asset (repeatable)")
    verify.set_defaults(run=cmd_verify)

    lineage = commands.add_parser("lineage", help="what a checkpoint consumed, what a version fed")
    lineage_commands = lineage.add_subparsers(dest="lineage_command", required=True)
    checkpoint = lineage_commands.add_parser(
        "checkpoint", help="every version a training checkpoint consumed, as a tree")
    checkpoint.add_argument("id", help="training_checkpoint version (a unique prefix, or latest)")
    checkpoint.add_argument("--store", default=DEFAULT_STORE, help="store root (folder or s3://)")
    checkpoint.add_argument("--json", action="store_true", help="print JSON")
    checkpoint.set_defaults(run=cmd_lineage_checkpoint)
    taint = lineage_commands.add_parser(
        "taint", help="every mix and checkpoint downstream of a bad version or source")
    tainted = taint.add_mutually_exclusive_group(required=True)
    tainted.add_argument("--source", help="all raw/scored/audited versions of this source")
    tainted.add_argument("--version", help="one version of any asset (a unique prefix will do)")
    taint.add_argument("--store", default=DEFAULT_STORE, help="store root (folder or s3://)")
    taint.add_argument("--json", action="store_true", help="print JSON")
    taint.set_defaults(run=cmd_lineage_taint)

    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `integrity calibrate FILE` judges the labels in FILE: the subcommand is implied.
    if argv[:1] == ["calibrate"] and len(argv) > 1 and argv[1] not in (
            "sample", LABELS_COMMAND, "-h", "--help"):
        argv.insert(1, LABELS_COMMAND)
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace, prog: str = "integrity") -> int:
    """Run a parsed command under the error policy: what the user can fix is one line and exit
    2; anything else is a bug and keeps its traceback (exit 1)."""
    try:
        return args.run(args)
    except Exception as error:
        message = user_message(error)
        if message is None:
            raise
        print(f"{prog}: error: {redact(message)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
