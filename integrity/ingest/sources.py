"""The sources file: which datasets to audit, where they are, and in which format.

```yaml
storage_options: {}            # optional, for s3:// (key, secret, client_kwargs.endpoint_url)
sources:
  - name: llava_mix            # also the Dagster partition key
    uri: data/llava_v1_5_mix665k.json   # local path (relative to this file) or s3://bucket/key
    format: auto               # auto | llava | sharegpt | hf_parquet | preference
    image_root: data/images    # where relative image refs point; default: the data file's folder
eval_sets:                     # optional held-out eval data (same keys): overlap is flagged
  - name: my_eval
    uri: data/eval.jsonl
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

FORMATS = ("auto", "llava", "sharegpt", "hf_parquet", "preference")
Format = Literal["auto", "llava", "sharegpt", "hf_parquet", "preference"]


class SourcesFileError(ValueError):
    """The sources file is missing or invalid; the message names the file and the bad key."""


class SourceConfig(BaseModel):
    """One dataset to ingest."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Unique name; the Dagster partition key.")
    uri: str = Field(description="Local path or s3:// URI of a .json, .jsonl or .parquet file.")
    format: Format = "auto"
    image_root: str | None = None
    storage_options: dict = Field(default_factory=dict)

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
        return self.uri.rsplit("/", 1)[0] if "://" in self.uri else str(Path(self.uri).parent)


class SourcesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    storage_options: dict = Field(default_factory=dict)
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
    try:
        document = yaml.safe_load(path.read_text()) or {}
        parsed = SourcesFile.model_validate(document)
    except yaml.YAMLError as error:
        raise SourcesFileError(f"{path} is not valid YAML: {error}") from error
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()
        )
        raise SourcesFileError(f"{path}: {problems}") from error
    base = path.resolve().parent

    def resolved(source: SourceConfig) -> SourceConfig:
        return source.model_copy(update={
            "uri": _absolute(source.uri, base),
            "image_root": _absolute(source.image_root, base),
            "storage_options": {**parsed.storage_options, **source.storage_options},
        })

    return parsed.model_copy(update={"sources": [resolved(s) for s in parsed.sources],
                                     "eval_sets": [resolved(s) for s in parsed.eval_sets]})
