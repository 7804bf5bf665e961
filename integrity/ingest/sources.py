"""The sources file: which datasets to audit, where they are, and in which format.

```yaml
storage_options: {}            # optional, for s3:// (key, secret, client_kwargs.endpoint_url)
model:                         # the open_clip model that scores every source (no default)
  name: ViT-L-14               # an open_clip model name
  pretrained: openai           # an open_clip tag, or a local weights file (relative to this file)
  device: auto                 # auto | cpu | cuda | cuda:N | mps
  precision: fp32              # fp32 | fp16 | bf16 | amp | amp_bf16 | pure_fp16 | pure_bf16
sources:
  - name: llava_mix            # also the Dagster partition key
    uri: data/llava_v1_5_mix665k.json   # local path (relative to this file) or s3://bucket/key
    format: auto               # auto | llava | sharegpt | hf_parquet | data_juicer |
                               # preference | mmmu
    image_root: data/images    # where relative image refs point; default: the data file's folder
    model: {...}               # optional: another model for this source (same keys)
eval_sets:                     # optional held-out eval data (same keys): overlap is flagged
  - name: my_eval
    uri: data/eval.jsonl
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from integrity import yaml_files
from integrity.errors import UserError

FORMATS = ("auto", "llava", "sharegpt", "hf_parquet", "data_juicer", "preference", "mmmu")
Format = Literal["auto", "llava", "sharegpt", "hf_parquet", "data_juicer", "preference", "mmmu"]


class SourcesFileError(UserError, ValueError):
    """The sources file is missing or invalid; the message names the file and the bad key."""


PRECISIONS = ("fp32", "fp16", "bf16", "amp", "amp_bf16", "pure_fp16", "pure_bf16")
RANDOM_WEIGHTS = "random"  # pretrained: random = an untrained model (tests; never real data)


class ModelConfig(BaseModel):
    """The open_clip model that scores a source. There is no default model: a sources file that
    scores with a model names it (``integrity score --no-model`` runs without one)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(min_length=1, description="An open_clip model name, e.g. ViT-L-14.")
    pretrained: str = Field(
        min_length=1, description="An open_clip pretrained tag (openai, laion2b_s34b_b79k ...), "
        "a local weights file (relative to the sources file), or 'random' (untrained).")
    config: str | None = Field(
        None, description="An open_clip model config file (JSON) for a model open_clip does not "
        "know, registered under its file name (relative to the sources file).")
    device: str = "auto"
    precision: Literal[PRECISIONS] = "fp32"  # type: ignore[valid-type]


class SourceConfig(BaseModel):
    """One dataset to ingest."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(description="Unique name; the Dagster partition key.")
    uri: str = Field(description="Local path or s3:// URI of a .json, .jsonl or .parquet file, "
                                 "or a glob or folder of such shards (read as one source).")
    format: Format = "auto"
    image_root: str | None = None
    storage_options: dict = Field(default_factory=dict)
    model: ModelConfig | None = Field(None, description="The model for this source (default: "
                                                        "the sources file's).")

    @field_validator("name")
    @classmethod
    def _name_is_a_key(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"name {name!r} may hold only letters, digits, '_', '.', '-'")
        return name

    @property
    def effective_image_root(self) -> str:
        """image_root, or the data file's own folder when none is given (LLaVA's layout)."""
        if self.image_root:
            return self.image_root
        if "://" not in self.uri and Path(self.uri).is_dir():
            return self.uri  # a folder of shards
        return self.uri.rsplit("/", 1)[0] if "://" in self.uri else str(Path(self.uri).parent)


class SourcesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    storage_options: dict = Field(default_factory=dict)
    model: ModelConfig | None = None
    sources: list[SourceConfig]
    # Held-out evaluation data: training rows sharing an image or a question with it are flagged.
    eval_sets: list[SourceConfig] = Field(default_factory=list)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        names = [source.name for source in sources]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique; repeated: {', '.join(duplicates)}")
        return sources


def _absolute(value: str | None, base: Path) -> str | None:
    if value is None or "://" in value or Path(value).is_absolute():
        return value
    return str((base / value).resolve())


def _weights(pretrained: str, base: Path) -> str:
    """A pretrained value relative to the sources file when it names a file there; a tag (or
    an s3:// or absolute path) stays as written."""
    local = base / pretrained
    return str(local.resolve()) if "://" not in pretrained and local.is_file() else pretrained


def load_sources(path: str | Path) -> list[SourceConfig]:
    """Read and validate a sources file; local paths become absolute (relative to the file)."""
    return _load(path).sources


def load_eval_sets(path: str | Path) -> list[SourceConfig]:
    """The ``eval_sets`` of a sources file (same shape as sources), paths made absolute."""
    return _load(path).eval_sets


def _load(path: str | Path) -> SourcesFile:
    path = Path(path)
    if not path.is_file():
        raise SourcesFileError(f"sources file {path} does not exist")
    parsed = yaml_files.load_model(path, SourcesFile, SourcesFileError)
    base = path.resolve().parent

    def resolved(source: SourceConfig) -> SourceConfig:
        model = source.model or parsed.model
        return source.model_copy(update={
            "uri": _absolute(source.uri, base),
            "image_root": _absolute(source.image_root, base),
            "storage_options": {**parsed.storage_options, **source.storage_options},
            "model": None if model is None else model.model_copy(update={
                "pretrained": _weights(model.pretrained, base),
                "config": _absolute(model.config, base)}),
        })

    return parsed.model_copy(update={"sources": [resolved(s) for s in parsed.sources],
                                     "eval_sets": [resolved(s) for s in parsed.eval_sets]})


def model_for(source: SourceConfig, sources_file: str | Path, *, name: str | None = None,
              pretrained: str | None = None) -> ModelConfig:
    """The model that scores ``source``: ``name`` and ``pretrained`` when given (together),
    else the source's or the sources file's ``model``. No silent default: none is an error."""
    if name or pretrained:
        if not (name and pretrained):
            raise SourcesFileError(
                "a model and its weights go together: an open_clip model name and a pretrained "
                "tag (such as openai) or a weights file; one of the two is missing")
        return ModelConfig(name=name, pretrained=pretrained)
    if source.model is None:
        raise SourcesFileError(
            f"{sources_file} names no model for source {source.name!r}: add `model: {{name: "
            "ViT-L-14, pretrained: openai}` (any open_clip model and its weights), or score "
            "without one (integrity score --no-model)")
    return source.model
