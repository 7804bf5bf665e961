"""Real formats in, trainer-loadable exports out: what each public format's reader accepts, and
how many rows of the LLaVA export LLaVA's own loader takes.

    python -m bench.formats [--rows 240] [--seed 3] [--model-fit]

The demo corpus's LLaVA rows (and its dpo pairs) are rewritten into each public format the way
its own tools write it: Data-Juicer (llava_to_dj's dialog text, caption rows, image_bytes in
parquet), LLaMA-Factory v1 (content parts; dpo whole dialogs), Data-Juicer's preference
annotation, an MMMU-style eval set, and HF parquet shards named by a glob. Baseline: the same
rows read as LLaVA json, in the same process (rows/s ratio). Every format must account for every
record (accepted + quarantined = rows in). Then the LLaVA export of the accepted LLaVA rows is
replayed through LLaVA-1.5's loading rules (tests/loaders.py): rows loaded, rows refused.
``--model-fit`` also scores the LLaVA source with the demo's model and with the same model
untrained, and prints both AUCs of matched vs shuffled pairs. Peak memory: resource.getrusage.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demo.model import demo_encoder_config
from demo.generate import DemoConfig, generate  # noqa: E402
from integrity.ingest import SourceConfig, ingest_source  # noqa: E402

TOKEN = "<image>"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()
            and line.lstrip().startswith("{") and _parses(line)]


def _parses(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except json.JSONDecodeError:
        return False


def _image_of(row: dict) -> str | None:
    image = row.get("image")
    return image[0] if isinstance(image, list) else image


def data_juicer(rows: list[dict]) -> list[dict]:
    """llava_to_dj's output: role markers, one chunk, image paths; caption rows from metadata."""
    out = []
    for row in rows:
        text = "\n".join(f"[[{turn['from']}]]: {turn['value']}" for turn in row["conversations"])
        out.append({"id": row["id"], "text": text + " <|__dj__eoc|>",
                    "images": [row["image"]] if "image" in row else []})
        if "caption" in row and "image" in row:
            out.append({"id": f"{row['id']}-cap", "images": [row["image"]],
                        "text": f"<__dj__image>\n{row['caption']} <|__dj__eoc|>"})
    return out


def llamafactory_v1(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        messages = []
        for turn in row["conversations"]:
            parts = []
            if TOKEN in turn["value"] and "image" in row:
                parts.append({"type": "image_url", "value": _image_of(row)})
            parts.append({"type": "text", "value": turn["value"].replace(TOKEN, "").strip()})
            messages.append({"role": {"human": "user", "gpt": "assistant"}.get(turn["from"],
                                                                               turn["from"]),
                             "content": parts})
        out.append({"messages": messages})
    return out


def v1_dpo(pairs: list[dict]) -> list[dict]:
    out = []
    for pair in pairs:
        image = (pair.get("images") or [None])[0]
        prompt = [{"role": "user", "content": (
            [{"type": "image_url", "value": image}] if image else []) + [
            {"type": "text", "value": pair["conversations"][0]["value"].replace(TOKEN, "").strip()}]}]
        out.append({key: prompt + [{"role": "assistant", "content": [
            {"type": "text", "value": pair[role]["value"]}]}]
            for key, role in (("chosen_messages", "chosen"), ("rejected_messages", "rejected"))})
    return out


def dj_preference(pairs: list[dict]) -> list[dict]:
    out = []
    for index, pair in enumerate(pairs):
        answers = [pair["chosen"]["value"], pair["rejected"]["value"]]
        if index % 2:
            answers.reverse()
        record = {"prompt": pair["conversations"][0]["value"].replace(TOKEN, "").strip(),
                  "images": pair.get("images", []), "answer1": answers[0], "answer2": answers[1]}
        if index % 3:  # two in three judged
            record |= {"chosen": pair["chosen"]["value"], "rejected": pair["rejected"]["value"]}
        out.append(record)
    return out


def image_struct(root: Path, ref: str | None) -> dict | None:
    return None if ref is None else {"bytes": (root / ref).read_bytes(), "path": ref}


def mmmu(rows: list[dict], root: Path) -> pa.Table:
    records = []
    for row in rows:
        if "image" not in row:
            continue
        question, answer = row["conversations"][0]["value"], row["conversations"][1]["value"]
        options = sorted({answer, "red", "blue", "three"})
        records.append({"id": f"validation_{row['id']}",
                        "question": question.replace(TOKEN, "<image 1>").strip(),
                        "options": repr(options),
                        "answer": "ABCD"[options.index(answer)],
                        "image_1": image_struct(root, _image_of(row)), "image_2": None})
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return pa.Table.from_pylist(records, schema=pa.schema(
        [("id", pa.string()), ("question", pa.string()), ("options", pa.string()),
         ("answer", pa.string()), ("image_1", image), ("image_2", image)]))


def dj_parquet(rows: list[dict], root: Path) -> pa.Table:
    records = [{**record, "image_bytes": [(root / ref).read_bytes() for ref in record["images"]]}
               for record in data_juicer(rows)]
    return pa.Table.from_pylist(records)


def write_formats(demo: Path, out: Path) -> dict[str, Path | str]:
    rows = [row for row in _lines(demo / "llava.jsonl") if "conversations" in row]
    readable = [row for row in rows if "image" not in row or (demo / _image_of(row)).is_file()]
    pairs = json.loads((demo / "preference_dpo.json").read_text())
    files: dict[str, Path | str] = {}

    def jsonl(name: str, records: list[dict]) -> None:
        files[name] = out / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(record) + "\n" for record in records))

    jsonl("llava", rows)
    jsonl("data_juicer", data_juicer(rows))
    files["data_juicer_image_bytes"] = out / "dj.parquet"
    pq.write_table(dj_parquet([row for row in readable if not isinstance(row.get("image"), list)],
                              demo), files["data_juicer_image_bytes"])
    jsonl("llamafactory_v1", llamafactory_v1([row for row in rows
                                               if not isinstance(row.get("image"), list)]))
    jsonl("llamafactory_v1_dpo", v1_dpo(pairs))
    jsonl("data_juicer_preference", dj_preference(pairs))
    files["mmmu_eval"] = out / "mmmu" / "validation-00000-of-00001.parquet"
    files["mmmu_eval"].parent.mkdir()
    pq.write_table(mmmu([row for row in readable if not isinstance(row.get("image"), list)],
                        demo), files["mmmu_eval"])
    shards = out / "shards"
    shards.mkdir()
    # No ids (an HF dataset's rows rarely have one); every row has the column, null for text.
    plain = [{"image": row.get("image"), "conversations": row["conversations"]}
             for row in rows if not isinstance(row.get("image"), list)]
    for shard in range(4):
        pq.write_table(pa.Table.from_pylist(plain[shard::4]),
                       shards / f"train-{shard:05d}-of-00004.parquet")
    files["hf_parquet_shards (glob)"] = f"{shards}/train-*.parquet"
    return files


def ingest_all(files: dict[str, Path | str], demo: Path) -> dict[str, dict]:
    results = {}
    for name, path in files.items():
        source = SourceConfig(name=name.split(" ")[0], uri=str(path), image_root=str(demo))
        started = time.perf_counter()
        try:
            result = ingest_source(source, blob_root=str(demo.parent / "blobs"))
        except Exception as error:  # the bench reports what a reader refuses, whatever it is
            results[name] = {"refused": f"{type(error).__name__}: {str(error)[:90]}"}
            continue
        seconds = time.perf_counter() - started
        results[name] = {"format": result.origin_format, "records": result.records_in,
                         "rows_in": result.rows_in, "accepted": result.accepted.height,
                         "quarantined": result.quarantine_by_reason(),
                         "rows_per_s": result.rows_in / seconds, "frame": result.accepted}
    return results


def with_system_turns_and_image_pairs(rows: pl.DataFrame) -> pl.DataFrame:
    """Real mixes carry system prompts (ShareGPT, LLaMA-Factory) and multi-image rows (LLaVA-NeXT
    interleave); the demo has neither, so a share of its rows get them."""
    changed = []
    for position, row in enumerate(rows.to_dicts()):
        if position % 7 == 0:
            row["turns"] = [{"role": "system", "content": "Answer from the image."}] + row["turns"]
        if row["image_uris"] and position % 5 == 4:
            for column in ("images", "image_uris", "image_sha256"):
                row[column] = row[column] * 2
            first = next(i for i, turn in enumerate(row["turns"]) if turn["role"] == "user")
            row["turns"][first] = {**row["turns"][first],
                                   "content": TOKEN + "\n" + row["turns"][first]["content"]}
        changed.append(row)
    return pl.DataFrame(changed, schema=rows.schema)


def llava_export_replay(accepted: pl.DataFrame, out: Path) -> tuple[int, dict[str, int], dict]:
    from integrity.mix.training_mix import export_llava
    from tests import loaders

    export = export_llava(accepted, out / "llava_export.json")
    path = getattr(export, "path", export)
    left_out = getattr(export, "left_out", {})
    loaded, refused = 0, {}
    for item in json.loads(Path(path).read_text()):
        try:
            loaders.llava_v1_5([item], out)
            loaded += 1
        except Exception as error:  # the loader's own error types (KeyError, TypeError, ...)
            refused[type(error).__name__] = refused.get(type(error).__name__, 0) + 1
    return loaded, refused, left_out


def model_fit(demo: Path, store: Path) -> dict[str, float | None]:
    from integrity.detect.encoder import Encoder
    from integrity.decide.policy import model_fit_auc
    from demo.model import REFERENCE_WEIGHTS
    from integrity.detect import score_pairs

    raw = ingest_source(SourceConfig(name="fit", uri=str(demo / "llava.jsonl"),
                                     image_root=str(demo))).accepted
    fits = {}
    for label, weights in (("demo model", str(REFERENCE_WEIGHTS)), ("untrained", None)):
        encoder = Encoder(demo_encoder_config(pretrained=weights, workers=0))
        fits[label] = model_fit_auc(score_pairs(raw, encoder=encoder))[0]
    return fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=240)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--model-fit", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-formats-"))
    demo = work / "demo"
    generate(demo, DemoConfig(rows=args.rows, seed=args.seed))
    (work / "formats").mkdir()
    results = ingest_all(write_formats(demo, work / "formats"), demo)
    baseline = results["llava"]
    print(f"demo corpus: {args.rows} rows, seed {args.seed}; baseline: the LLaVA file at "
          f"{baseline['rows_per_s']:,.0f} rows/s")
    print(f"{'format':28} {'records':>7} {'rows in':>7} {'accepted':>8}  speed vs LLaVA  "
          "quarantined by reason")
    for name, result in results.items():
        if "refused" in result:
            print(f"{name:28} refused: {result['refused']}")
            continue
        assert result["accepted"] + sum(result["quarantined"].values()) == result["rows_in"]
        print(f"{name:28} {result['records']:7} {result['rows_in']:7} {result['accepted']:8}  "
              f"{result['rows_per_s'] / baseline['rows_per_s']:13.2f}x  {result['quarantined']}")
    # What a mix of the demo's three sources exports: LLaVA rows (some with two images), ShareGPT
    # rows (some with a system turn), flattened preference rows.
    mixed = pl.concat([baseline["frame"]] + [
        ingest_source(SourceConfig(name=name, uri=str(demo / file), format=form,
                                   image_root=str(demo))).accepted
        for name, file, form in (("sharegpt", "sharegpt.json", "sharegpt"),
                                 ("preference", "preference_dpo.json", "preference"))])
    mixed = with_system_turns_and_image_pairs(mixed)
    loaded, refused, left_out = llava_export_replay(mixed, demo)
    print(f"LLaVA export of {mixed.height} accepted rows (the demo's 3 sources; every 7th row with "
          f"a system turn, every 5th image row with two images) through LLaVA-1.5's loading "
          f"rules: {loaded} load, refused {refused or 'none'}, left out and counted "
          f"{left_out or 'none'}")
    if args.model_fit:
        fits = model_fit(demo, work / "store")
        print("model fit (AUC matched vs shuffled):",
              ", ".join(f"{label} {auc:.2f}" for label, auc in fits.items()))
    print(f"peak memory: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
