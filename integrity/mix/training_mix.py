"""Training mixes: the kept rows of every audited source, balanced, ordered and exported.

``build_mix`` turns the kept rows of each audited source into one frame in training order:

1. Source weights (``MixPolicy.source_weights``, default 1.0): a source of weight w gets
   floor(w) copies of every row, plus one more copy for round(frac(w) x rows) of its rows chosen
   by a seeded draw; w < 1 therefore keeps exactly round(w x rows) of its rows, w = 0 none.
2. Modality band: the abundant modality is down-sampled so that the image-text share of the
   mix is as close to ``image_share`` as integer counts allow; every row (and every copy) of the
   scarce modality is kept. The abundant modality keeps the same fraction of each source (a
   stratified draw, to within one row), so the weights of step 1 still hold among sources.
   When a modality has no rows at all and the target needs it, nothing is down-sampled: the
   mix is built, its share is 0 or 1, and ``modality_band_verdict`` fails. An empty mix is
   better found by the check than by an exception deep inside the asset.
3. Curriculum: every row goes to the first stage that takes it (same modality, difficulty <=
   ``max_difficulty`` or no bound); stages follow each other in policy order and rows are
   shuffled by the seed within a stage (not sorted by difficulty).

Difficulty (0 easy .. 1 hard) of an image-text row is 1 - the mean of its mid-rank percentiles
((rank - 0.5) / n) of ``grounding_margin`` and ``answer_support_prob`` among all image-text rows
of all sources of the mix (one encoder scores every source, so the scales agree). A signal
that is absent (scored without a model) or null for a row is left out of the mean; with no
signal at all the row's difficulty is 0.5, so without a model every image row lands in the
first image stage whose bound is >= 0.5 (or has none). Text rows have difficulty 0.0.

Randomness: one ``numpy.random.default_rng(seed)`` drawn in a canonical row order (source,
example_id, replica), never Python's ``hash()``: the same inputs and policy give the same frame.

Exports write what the trainers' own loaders accept: LLaVA json (``export_llava``: human/gpt
turns, system text folded into the first human turn, one image per row unless the policy asks
for LLaVA-NeXT's image lists), LLaMA-Factory ShareGPT json with its ``dataset_info.json``
(``export_sharegpt``) and parquet (``export_parquet``). The ``<image>`` tokens stay where the
source put them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from integrity.detect.pairs import qa_pairs
from integrity.errors import UserError
from integrity.decide.policy import CurriculumStage, MixPolicy, Verdict
from integrity.ingest.schema import MODALITIES, RAW_SFT_SCHEMA

# Bump when a change here changes the mix for the same inputs and policy (Dagster code_version).
CODE_VERSION = "mix-2"

IMAGE_TEXT = "image-text"
# Scored signals that make up difficulty: higher = the row's answer is better grounded = easier.
DIFFICULTY_SIGNALS = ("grounding_margin", "answer_support_prob")
# Difficulty of an image row whose signals were not measured (scored without a model).
UNMEASURED_DIFFICULTY = 0.5

MIX_SCHEMA = pl.Schema({
    **RAW_SFT_SCHEMA,
    "audited_version": pl.String,
    "stage": pl.String,
    "stage_index": pl.Int32,
    "difficulty": pl.Float64,
    "replica": pl.Int32,
    "position": pl.Int64,
})

LLAVA_ROLES = {"user": "human", "assistant": "gpt"}


class MixError(UserError, ValueError):
    """The inputs or the policy cannot make a mix; the message says which input or key."""


@dataclass(frozen=True)
class MixInput:
    """One audited source: its audited_sft version, kept raw_sft rows and scored_sft rows."""

    source: str
    audited_version: str
    kept: pl.DataFrame
    scored: pl.DataFrame


# -- building ---------------------------------------------------------------------------------


def _prepared(item: MixInput) -> pl.DataFrame:
    """The kept rows of one source with audited_version and the difficulty signals joined."""
    missing = [name for name in RAW_SFT_SCHEMA if name not in item.kept.columns]
    if missing:
        raise MixError(f"kept rows of {item.source} lack raw_sft columns {missing}")
    if "example_id" not in item.scored.columns:
        raise MixError(f"scored rows of {item.source} have no example_id column")
    other = item.kept.filter(pl.col("source") != item.source)
    if other.height:
        raise MixError(f"kept rows of {item.source} include {other.height} rows of source "
                       f"{other['source'][0]}")
    if item.scored["example_id"].is_duplicated().any():
        raise MixError(f"scored rows of {item.source} repeat an example_id (expected one each)")
    signals = item.scored.select(
        "example_id",
        *(pl.col(name).cast(pl.Float64).fill_nan(None) if name in item.scored.columns
          else pl.lit(None, dtype=pl.Float64).alias(name) for name in DIFFICULTY_SIGNALS),
    )
    return (
        item.kept.select(pl.col(name).cast(dtype) for name, dtype in RAW_SFT_SCHEMA.items())
        .join(signals, on="example_id", how="left", maintain_order="left")
        .with_columns(audited_version=pl.lit(item.audited_version, dtype=pl.String))
    )


def _difficulty() -> pl.Expr:
    """1 - mean mid-rank percentile of the signals over image rows; 0.5 unmeasured; text 0."""
    is_image = pl.col("modality") == IMAGE_TEXT
    percentiles = []
    for name in DIFFICULTY_SIGNALS:
        value = pl.when(is_image).then(pl.col(name))
        percentiles.append((value.rank("average") - 0.5) / value.count())
    return (
        pl.when(is_image)
        .then((1.0 - pl.mean_horizontal(percentiles)).fill_null(UNMEASURED_DIFFICULTY))
        .otherwise(0.0)
        .cast(pl.Float64)
    )


def stage_index_expr(curriculum: list[CurriculumStage]) -> pl.Expr:
    """Index of the first stage that takes the row (modality, difficulty), null for none."""
    chain = None
    for index, stage in enumerate(curriculum):
        takes = pl.col("modality") == stage.modality
        if stage.max_difficulty is not None:
            takes = takes & (pl.col("difficulty") <= stage.max_difficulty)
        chain = (pl.when(takes) if chain is None else chain.when(takes)).then(pl.lit(index))
    return chain.otherwise(pl.lit(None)).cast(pl.Int32)


def _band_counts(images: int, texts: int, target: float) -> tuple[int, int]:
    """(images, texts) to keep: the abundant side trimmed to the share nearest the target."""
    if images == 0 or texts == 0:  # the band cannot be met by down-sampling: keep everything
        return images, texts
    share = images / (images + texts)
    if share > target:  # images abundant (target < 1 here)
        ideal = target * texts / (1 - target)
        options = {min(images, int(np.floor(ideal))), min(images, int(np.ceil(ideal)))}
        return min(options, key=lambda kept: (abs(kept / (kept + texts) - target), kept)), texts
    if share < target:  # texts abundant (target > 0 here)
        ideal = (1 - target) * images / target
        options = {min(texts, int(np.floor(ideal))), min(texts, int(np.ceil(ideal)))}
        return images, min(options, key=lambda kept: (abs(images / (images + kept) - target),
                                                      kept))
    return images, texts


def _weighted(frame: pl.DataFrame, weights: dict[str, float],
              rng: np.random.Generator) -> pl.DataFrame:
    """Rows replicated by their source's weight; the fractional part by a seeded draw."""
    weight = pl.col("source").replace_strict(weights, default=1.0, return_dtype=pl.Float64)
    extra = (pl.col("draw").rank("ordinal").over("source")
             <= ((weight - weight.floor()) * pl.len().over("source") + 0.5).floor())
    return (
        frame.with_columns(draw=pl.Series(rng.random(frame.height)))
        .with_columns(copies=(weight.floor() + extra.cast(pl.Float64)).cast(pl.Int64))
        .filter(pl.col("copies") > 0)
        .with_columns(replica=pl.int_ranges(pl.col("copies")).cast(pl.List(pl.Int32)))
        .explode("replica")
        .drop("draw", "copies")
    )


def _banded(frame: pl.DataFrame, target: float, rng: np.random.Generator) -> pl.DataFrame:
    """The abundant modality down-sampled (stratified by source) to the target image share."""
    counts = dict(frame.group_by("modality").len().iter_rows())
    keep_images, keep_texts = _band_counts(counts.get(IMAGE_TEXT, 0),
                                           frame.height - counts.get(IMAGE_TEXT, 0), target)
    keep = pl.when(pl.col("modality") == IMAGE_TEXT).then(keep_images).otherwise(keep_texts)
    # slot: where the row falls in its (modality, source) in draw order, as a fraction, so
    # taking the lowest slots first takes the same fraction of every source.
    slot = ((pl.col("draw").rank("ordinal").over("modality", "source") - 0.5)
            / pl.len().over("modality", "source"))
    frame = frame.with_columns(draw=pl.Series(rng.random(frame.height))).with_row_index("row")
    kept_rows = (  # sorted on a narrow frame: moving the nested columns around is the cost
        frame.select("row", "modality", "source", "draw")
        .with_columns(slot=slot, is_image=pl.col("modality") == IMAGE_TEXT)
        .sort("is_image", "slot", "draw")  # a boolean key sorts much faster than a string
        .filter(pl.int_range(pl.len()).over("is_image") < keep)["row"]
    )
    return (
        frame.filter(pl.col("row").is_in(kept_rows.implode()))
        .with_columns(replica=(pl.col("replica").rank("ordinal").over("unit") - 1)
                      .cast(pl.Int32))
        .drop("row", "draw")
    )


def build_mix(sources: list[MixInput], policy: MixPolicy) -> pl.DataFrame:
    """One row per training example, in training order (``MIX_SCHEMA``).

    Columns: the raw_sft columns, ``audited_version`` (where the row was kept), ``stage`` and
    ``stage_index`` (its curriculum stage), ``difficulty`` (0 easy .. 1 hard), ``replica`` (0
    for the first copy of an example, 1.. for up-sampled copies) and ``position`` (0..n-1).
    Raises MixError for a source named twice, rows without the raw_sft
    columns or rows that no curriculum stage takes.
    """
    names = [item.source for item in sources]
    if len(set(names)) != len(names):
        raise MixError(f"a source is given twice: {sorted(names)}")
    if not sources:
        return pl.DataFrame(schema=MIX_SCHEMA)
    rng = np.random.default_rng(policy.seed)
    frame = (
        pl.concat([_prepared(item) for item in sources], how="vertical")
        .with_columns(difficulty=_difficulty())
        .drop(*DIFFICULTY_SIGNALS)
        .sort("source", "example_id", maintain_order=True)  # canonical order for the draws
        .with_row_index("unit")  # one id per kept row, shared by its copies
    )
    frame = _banded(_weighted(frame, policy.source_weights, rng), policy.image_share, rng)
    frame = frame.with_columns(stage_index=stage_index_expr(policy.curriculum))
    unstaged = frame.filter(pl.col("stage_index").is_null())
    if unstaged.height:
        first = unstaged.row(0, named=True)
        raise MixError(f"no mix.curriculum stage takes {unstaged.height} rows, e.g. "
                       f"{first['example_id']} ({first['modality']}, difficulty "
                       f"{first['difficulty']:.2f}); end each modality with an unbounded stage")
    stage_names = [stage.name for stage in policy.curriculum]
    return (
        frame.with_columns(draw=pl.Series(rng.random(frame.height)))
        .sort("stage_index", "draw")
        .with_columns(
            stage=pl.col("stage_index").replace_strict(
                list(range(len(stage_names))), stage_names, return_dtype=pl.String),
            position=pl.int_range(pl.len(), dtype=pl.Int64),
        )
        .select(MIX_SCHEMA.names())
        .cast(dict(MIX_SCHEMA))
    )


# -- exports ----------------------------------------------------------------------------------


def _in_order(mix: pl.DataFrame) -> pl.DataFrame:
    return mix.sort("position") if "position" in mix.columns else mix


@dataclass(frozen=True)
class Export:
    """One export: its files (the data first), the rows written, the rows left out by reason."""

    files: tuple[Path, ...]
    rows: int
    left_out: dict[str, int]

    @property
    def path(self) -> Path:
        return self.files[0]

    def facts(self) -> dict:
        return {"rows": self.rows, "left_out": self.left_out}


LLAVA_MULTI_IMAGE = "multi_image"  # the reason a row with several images leaves llava.json


def llava_conversations() -> pl.Expr:
    """Turns as LLaVA's ``conversations``: only ``human`` and ``gpt``. Its ``preprocess_v1``
    looks every turn's role up in {human, gpt} (a ``system`` turn raises KeyError), so system
    text is folded into the first human turn, ahead of the question."""
    role = pl.element().struct.field("role")
    system = pl.col("turns").list.eval(
        pl.element().filter(role == "system").struct.field("content")).list.join("\n")
    dialog = pl.col("turns").list.eval(pl.element().filter(role != "system"))
    first = dialog.list.first().struct
    folded = pl.struct(
        role=first.field("role"),
        content=pl.when(system.str.len_chars() > 0)
        .then(pl.concat_str(system, pl.lit("\n\n"), first.field("content")))
        .otherwise(first.field("content")))
    turns = pl.concat_list(folded, dialog.list.slice(1))
    return turns.list.eval(pl.struct(
        **{"from": pl.element().struct.field("role").replace_strict(LLAVA_ROLES)},
        value=pl.element().struct.field("content"),
    ))


def export_llava(mix: pl.DataFrame, path: str | Path, *,
                 multi_image: str = "leave_out") -> Export:
    """LLaVA json: a JSON array of {"id", "image"?, "conversations": [{"from", "value"}]} that
    LLaVA's own ``LazySupervisedDataset`` and ``preprocess_v1`` load.

    ``id`` is the example_id (up-sampled copies repeat it). ``image`` is image_uris[0] as stored
    (an absolute path, which LLaVA's ``os.path.join(image_folder, image)`` keeps) and absent for
    text rows. Roles are human / gpt only, system text folded into the first human turn.
    LLaVA-1.5 opens one image per row (a list makes ``os.path.join`` raise TypeError): rows with
    several images are left out and counted (``multi_image="leave_out"``), or written with the
    image list LLaVA-NeXT / OneVision read (``multi_image="list"``).
    """
    if multi_image not in ("leave_out", "list"):
        raise MixError(f"multi_image must be leave_out or list, not {multi_image!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = pl.col("image_uris")
    rows = _in_order(mix)
    left_out = {}
    if multi_image == "leave_out":
        several = rows.filter(images.list.len() > 1).height
        rows = rows.filter(images.list.len() <= 1)
        left_out = {LLAVA_MULTI_IMAGE: several} if several else {}

    def item(**image: pl.Expr) -> pl.Expr:
        return pl.struct(id="example_id", **image, conversations="conversations")

    # One JSON object per row, encoded by polars; "image" is left out, a string, or a list.
    items = rows.with_columns(conversations=llava_conversations()).select(
        pl.when(images.list.len() == 0).then(item().struct.json_encode())
        .when(images.list.len() == 1).then(item(image=images.list.first()).struct.json_encode())
        .otherwise(item(image=images).struct.json_encode())
        .str.join(",\n")
    ).item()
    path.write_text(f"[{items or ''}]\n", encoding="utf-8")
    return Export((path,), rows.height, left_out)


def sharegpt_dataset_info(file_name: str) -> dict:
    """The dataset_info.json entry LLaMA-Factory needs for a ShareGPT file with images."""
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"},
    }


def export_sharegpt(mix: pl.DataFrame, directory: str | Path, name: str) -> Export:
    """LLaMA-Factory ShareGPT json ``<directory>/<name>.json`` and its ``dataset_info.json``.

    Each item is {"messages": [{"role", "content"}], "images": image_uris} (an empty list for
    text rows, which LLaMA-Factory reads as no images). The entry ``name`` is added to an
    existing dataset_info.json (replacing one of that name) so mixes can share a dataset_dir.
    Every row is written (LLaMA-Factory takes any number of images per row).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / f"{name}.json"
    _in_order(mix).select(messages="turns", images="image_uris").write_json(data)
    info_path = directory / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    info[name] = sharegpt_dataset_info(data.name)
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return Export((data, info_path), mix.height, {})


def export_parquet(mix: pl.DataFrame, path: str | Path) -> Path:
    """The mix as parquet, every column, in training order. Returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _in_order(mix).write_parquet(path)
    return path


# -- verdicts for the training_mix checks -----------------------------------------------------


def modality_band_verdict(mix: pl.DataFrame, policy: MixPolicy) -> Verdict:
    """Pass when the image-text share of the mix lies in image_share +/- tolerance."""
    images = mix.filter(pl.col("modality") == IMAGE_TEXT).height
    share = images / mix.height if mix.height else 0.0
    lower = max(0.0, policy.image_share - policy.image_share_tolerance)
    upper = min(1.0, policy.image_share + policy.image_share_tolerance)
    passed = mix.height > 0 and lower - 1e-9 <= share <= upper + 1e-9
    return Verdict(
        passed=passed,
        description=(f"image-text share {share:.1%} ({images}/{mix.height} rows), band "
                     f"[{lower:.1%}, {upper:.1%}]" + ("" if mix.height else ": the mix is empty")),
        figures={"image_share": share, "image_share_target": policy.image_share,
                 "image_share_min": lower, "image_share_max": upper, "image_rows": images,
                 "text_rows": mix.height - images, "rows": mix.height},
    )


def curriculum_order_verdict(mix: pl.DataFrame, policy: MixPolicy) -> Verdict:
    """Pass when stage_index never decreases along position, positions are 0..n-1, and every
    row's stage is the first curriculum stage that takes its modality and difficulty."""
    names = [stage.name for stage in policy.curriculum]
    ordered = mix.sort("position")
    facts = ordered.select(
        backwards=(pl.col("stage_index").diff() < 0).sum(),
        positions_ok=(pl.col("position") == pl.int_range(pl.len())).all(),
        misplaced=(stage_index_expr(policy.curriculum).ne_missing(pl.col("stage_index"))
                   | pl.col("stage").ne_missing(pl.col("stage_index").replace_strict(
                       list(range(len(names))), names, default=None,
                       return_dtype=pl.String))).sum(),
    ).row(0, named=True)
    backwards, misplaced = int(facts["backwards"] or 0), int(facts["misplaced"] or 0)
    positions_ok = bool(facts["positions_ok"]) or mix.height == 0
    problems = [f"stage goes back {backwards} times along position"] if backwards else []
    problems += [f"{misplaced} rows in the wrong stage"] if misplaced else []
    problems += ["positions are not 0..n-1"] if not positions_ok else []
    return Verdict(
        passed=not problems,
        description="; ".join(problems) or f"{mix.height} rows in curriculum order over "
                                            f"{len(names)} stages",
        figures={"rows": mix.height, "stage_reversals": backwards, "misplaced_rows": misplaced,
                 "stages": len(names), "max_stage_reversals": 0, "max_misplaced_rows": 0},
    )


def traceable_verdict(mix: pl.DataFrame,
                      kept: dict[str, set[str]] | pl.DataFrame) -> Verdict:
    """Pass when every mix row's (audited_version, example_id) is a kept row of that version.

    ``kept``: audited_version -> kept example_ids, or a frame with those two columns.
    """
    if isinstance(kept, dict):
        kept = pl.DataFrame(
            [(version, example_id) for version, ids in kept.items() for example_id in ids],
            schema={"audited_version": pl.String, "example_id": pl.String}, orient="row",
        )
    keys = kept.select(pl.col("audited_version").cast(pl.String),
                       pl.col("example_id").cast(pl.String)).unique()
    stray = mix.join(keys, on=["audited_version", "example_id"], how="anti")
    example = "" if stray.is_empty() else (f", e.g. {stray['example_id'][0]} of "
                                           f"{stray['audited_version'][0]}")
    return Verdict(
        passed=stray.is_empty(),
        description=f"{stray.height}/{mix.height} mix rows not among the kept rows of their "
                    f"audited version{example}",
        figures={"rows": mix.height, "untraceable_rows": stray.height,
                 "audited_versions": mix["audited_version"].n_unique(),
                 "max_untraceable_rows": 0},
    )


def eval_overlap_verdict(mix: pl.DataFrame, eval_images: set[str],
                         eval_questions: set[str]) -> Verdict:
    """Pass when no mix row shares an image (sha256) or a normalised question with an eval set.

    Keyed as the duplicates detector keys ``dup_eval_overlap``: eval_questions are
    ``qa_pairs(...)["question_norm"]`` (``pairs.normalise`` of a user turn) and are matched
    against every question of a row; eval_images are sha256s, matched against every image of
    a row (the detector looks at the first; a later image is no less a leak).
    """
    images = pl.Series(sorted(eval_images), dtype=pl.String).implode()
    questions = pl.Series(sorted(eval_questions), dtype=pl.String).implode()
    keyed = mix.with_columns(example_id=pl.int_range(pl.len()).cast(pl.String))
    # Splitting the mix into QA pairs is its costliest step (2.3 s at 160k rows): only with
    # questions to look for.
    asked = qa_pairs(keyed).filter(pl.col("question_norm").is_in(questions))["example_id"] \
        if eval_questions else pl.Series([], dtype=pl.String)
    flags = keyed.select(
        image=pl.col("image_sha256").list.eval(pl.element().is_in(images)).list.any()
        .fill_null(False),
        question=pl.col("example_id").is_in(asked.implode()),
    )
    by_image, by_question = int(flags["image"].sum()), int(flags["question"].sum())
    overlap = int((flags["image"] | flags["question"]).sum())
    return Verdict(
        passed=overlap == 0,
        description=f"{overlap}/{mix.height} mix rows overlap the eval sets ({by_image} by "
                    f"image, {by_question} by question)",
        figures={"rows": mix.height, "eval_overlap_rows": overlap,
                 "image_overlap_rows": by_image, "question_overlap_rows": by_question,
                 "eval_images": len(eval_images), "eval_questions": len(eval_questions),
                 "max_eval_overlap_rows": 0},
    )


def mix_summary(mix: pl.DataFrame) -> dict:
    """Counts for metadata and reports: rows, per source / modality / stage, image share,
    up-sampled copies, and the audited version each source came from."""
    def counts(column: str) -> dict[str, int]:
        return dict(mix.group_by(column).len().sort(column).iter_rows())

    stages = mix.group_by("stage_index", "stage").len().sort("stage_index")
    images = mix.filter(pl.col("modality") == IMAGE_TEXT).height
    modality = counts("modality")
    return {
        "rows": mix.height,
        "per_source": counts("source"),
        "per_modality": {name: modality.get(name, 0) for name in MODALITIES},
        "per_stage": dict(zip(stages["stage"].to_list(), stages["len"].to_list(), strict=True)),
        "image_share": images / mix.height if mix.height else 0.0,
        "upsampled_copies": mix.filter(pl.col("replica") > 0).height,
        "audited_versions": dict(mix.select("source", "audited_version").unique()
                                 .sort("source").iter_rows()),
    }


def no_duplicates_verdict(mix: pl.DataFrame, keys: pl.DataFrame, copies: pl.DataFrame) -> Verdict:
    """Pass when no two distinct mix rows (source, example_id) share an exact key or are copies.

    ``keys``: source, example_id, exact_key of every mix row's example (empty to skip exact
    keys); ``copies``: the counted cross-source matches (source, example_id, other_source,
    other_example_id). Upsampled repeats of one row are the same example, not copies.
    """
    rows = mix.select("source", "example_id").unique()
    exact = rows.join(keys, on=["source", "example_id"]).group_by("exact_key").agg(
        pl.col("source"), rows=pl.len()).filter(pl.col("rows") > 1)
    near = copies.join(rows, on=["source", "example_id"], how="semi").join(
        rows.rename({"source": "other_source", "example_id": "other_example_id"}),
        on=["other_source", "other_example_id"], how="semi")
    repeated = int((exact["rows"] - 1).sum() or 0)
    copied = near.select("source", "example_id").unique().height
    involved = sorted(set(exact["source"].explode()) | set(near["source"])
                      | set(near["other_source"]))
    example = "" if near.is_empty() else (
        f", e.g. {near['source'][0]}/{near['example_id'][0]} copies "
        f"{near['other_source'][0]}/{near['other_example_id'][0]}")
    return Verdict(
        passed=repeated == 0 and copied == 0,
        description=f"{repeated} mix rows repeat another row's images and dialog, {copied} copy "
                    f"a row of another source{example}"
                    + (f" (sources: {', '.join(involved)})" if involved else ""),
        figures={"rows": rows.height, "exact_repeats": repeated, "cross_source_copies": copied,
                 "sources_involved": ", ".join(involved) or "none"},
    )
