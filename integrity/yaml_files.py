"""YAML for the files users write (policies, sources): safe, and a repeated key is an error
(PyYAML's default silently keeps the last value, so a threshold set twice is set by accident)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class RepeatedKeyError(yaml.YAMLError):
    """A mapping of the file names one key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise RepeatedKeyError(f"key {key!r} repeated at line {line} (first at line "
                                       f"{seen[key]}): which value was meant?")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` that raises RepeatedKeyError for a key repeated in one mapping."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_model(path: Path, model: type[Model], error: type[Exception]) -> Model:
    """The YAML file at ``path`` validated as ``model``; ``error`` naming the file and every
    problem (with where it is) otherwise."""
    try:
        return model.model_validate(safe_load(path.read_text()) or {})
    except yaml.YAMLError as problem:
        raise error(f"{path} is not valid YAML: {problem}") from problem
    except ValidationError as problem:
        problems = "; ".join(f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
                             for item in problem.errors())
        raise error(f"{path}: {problems}") from problem
