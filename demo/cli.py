"""`python -m demo`: generate, label and train the synthetic shapes world.

The product's CLI, `integrity`, never imports the demo; the demo uses the product.

    python -m demo generate --out DIR [--rows N] [--seed S] [--images K] [--text-only-share F]
    python -m demo generate --hard --split tune|heldout --out DIR ...
    python -m demo label SAMPLE_FILE --out FILE [--truth data/demo/ground_truth.jsonl]
    python -m demo train-reference [--out demo/models/shapes-clip.pt] [--minutes 8]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from integrity.cli import run


def cmd_demo_generate(args: argparse.Namespace) -> int:
    from demo.generate import DemoConfig, DemoConfigError, generate

    options = {field.name: getattr(args, field.name) for field in fields(DemoConfig)
               if getattr(args, field.name, None) is not None}
    if args.hard:
        from demo.hard import generate_hard

        summary = generate_hard(Path(args.out), DemoConfig(**options), split=args.split)
    elif args.split:
        raise DemoConfigError("--split is for the hard demo: add --hard")
    else:
        from demo.rl import write_probe_set

        summary = generate(Path(args.out), DemoConfig(**options))
        # The held-back questions training_rl_probe's demo RL runs on (never in the corpus).
        summary["rl_probe_set"] = str(write_probe_set(Path(args.out) / "rl_probe"))
    print(json.dumps(summary, indent=2))
    return 0


def cmd_demo_train_reference(args: argparse.Namespace) -> int:
    from demo.reference import REFERENCE_WEIGHTS, train_reference

    out = Path(args.out) if args.out else REFERENCE_WEIGHTS
    metrics = train_reference(out, seed=args.seed, minutes=args.minutes,
                              log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_demo_label(args: argparse.Namespace) -> int:
    from demo.labels import label_sample

    count = label_sample(Path(args.sample_file), Path(args.truth), Path(args.out))
    print(f"{count} rows labelled from {args.truth} -> {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from demo.generate import RATE_FIELDS

    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    demo_commands = parser.add_subparsers(dest="demo_command", required=True)
    generate = demo_commands.add_parser("generate", help="write the demo corpus")
    generate.add_argument("--out", required=True)
    generate.add_argument("--rows", type=int)
    generate.add_argument("--seed", type=int)
    generate.add_argument("--images", type=int)
    generate.add_argument("--image-size", dest="image_size", type=int)
    for rate in RATE_FIELDS:
        generate.add_argument(f"--{rate.replace('_', '-')}", dest=rate, type=float)
    generate.add_argument("--no-captions", dest="captions", action="store_const", const=False,
                          help="records carry no caption metadata (only the pixels can tell)")
    generate.add_argument("--hard", action="store_true",
                          help="the hard demo: flaws worded from vocabulary pools (llava.jsonl "
                               "only); needs --split")
    generate.add_argument("--split", choices=("tune", "heldout"),
                          help="which half of every vocabulary pool the hard demo draws from")
    generate.set_defaults(run=cmd_demo_generate)
    label = demo_commands.add_parser(
        "label", help="fill in a calibration sample's labels from the demo's ground truth")
    label.add_argument("sample_file")
    label.add_argument("--out", required=True)
    label.add_argument("--truth", default="data/demo/ground_truth.jsonl")
    label.set_defaults(run=cmd_demo_label)
    train_ref = demo_commands.add_parser("train-reference",
                                         help="train the demo's reference CLIP from scratch")
    train_ref.add_argument("--out", help="weights file (default: demo/models/shapes-clip.pt)")
    train_ref.add_argument("--minutes", type=float, default=8.0, help="training wall time")
    train_ref.add_argument("--seed", type=int, default=12345, help=">= 10000")
    train_ref.set_defaults(run=cmd_demo_train_reference)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(list(sys.argv[1:] if argv is None else argv)),
               prog="python -m demo")


if __name__ == "__main__":
    sys.exit(main())
