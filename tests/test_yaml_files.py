"""YAML for the files users write (integrity/yaml_files.py): safe loading, a repeated key refused
with both its lines, and a file validated as a model with every problem named with its place."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from integrity.yaml_files import RepeatedKeyError, load_model, safe_load


class Threshold(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    value: float = Field(ge=0.0, le=1.0)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: float = 0.05
    thresholds: list[Threshold] = []


class SettingsError(ValueError):
    pass


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return path


def test_safe_load_reads_plain_yaml():
    assert safe_load("a: 1\nb: [x, {c: true}]\n") == {"a": 1, "b": ["x", {"c": True}]}
    assert safe_load("") is None


def test_a_key_repeated_in_one_mapping_names_the_key_and_both_lines():
    with pytest.raises(RepeatedKeyError,
                       match=r"key 'rate' repeated at line 3 \(first at line 1\): which value "
                             r"was meant\?"):
        safe_load("rate: 0.05\nother: 1\nrate: 0.5\n")


def test_a_key_repeated_in_a_nested_mapping_is_refused_too():
    with pytest.raises(RepeatedKeyError, match=r"key 'value' repeated at line 4 \(first at line 3\)"):
        safe_load("thresholds:\n  - name: a\n    value: 0.1\n    value: 0.9\n")


def test_the_same_key_in_different_mappings_is_no_repeat():
    text = "a: {x: 1}\nb: {x: 2}\nlist:\n  - {name: a}\n  - {name: b}\n"
    assert safe_load(text) == {"a": {"x": 1}, "b": {"x": 2}, "list": [{"name": "a"}, {"name": "b"}]}


def test_a_repeated_key_is_a_yaml_error():
    """So everything that reports bad YAML reports it (load_model below)."""
    assert issubclass(RepeatedKeyError, yaml.YAMLError)


def test_yaml_that_would_build_python_objects_is_refused():
    with pytest.raises(yaml.constructor.ConstructorError):
        safe_load("!!python/object/apply:os.system ['echo pwned']\n")


def test_load_model_validates_the_file_as_the_model(tmp_path):
    path = write(tmp_path, "rate: 0.1\nthresholds:\n  - {name: a, value: 0.5}\n")
    assert load_model(path, Settings, SettingsError) == Settings(
        rate=0.1, thresholds=[Threshold(name="a", value=0.5)])


def test_an_empty_file_is_the_models_defaults(tmp_path):
    assert load_model(write(tmp_path, "# nothing set\n"), Settings, SettingsError) == Settings()


def test_invalid_yaml_is_the_callers_error_naming_the_file(tmp_path):
    path = write(tmp_path, "thresholds: [\n")
    with pytest.raises(SettingsError) as error:
        load_model(path, Settings, SettingsError)
    assert str(error.value).startswith(f"{path} is not valid YAML: ")
    assert isinstance(error.value.__cause__, yaml.YAMLError)


def test_a_repeated_key_in_a_file_is_the_callers_error_naming_the_file_and_lines(tmp_path):
    path = write(tmp_path, "rate: 0.05\nrate: 0.5\n")
    with pytest.raises(SettingsError, match=r"key 'rate' repeated at line 2 \(first at line 1\)") \
            as error:
        load_model(path, Settings, SettingsError)
    assert str(error.value).startswith(f"{path} is not valid YAML: ")


def test_every_problem_of_a_file_is_named_with_where_it_is(tmp_path):
    path = write(tmp_path, "rate: high\ncolour: red\nthresholds:\n  - {name: a, value: 2}\n"
                           "  - {value: 0.1}\n")
    with pytest.raises(SettingsError) as error:
        load_model(path, Settings, SettingsError)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    problems = message.removeprefix(f"{path}: ").split("; ")
    assert problems == [
        "rate: Input should be a valid number, unable to parse string as a number",
        "thresholds.0.value: Input should be less than or equal to 1",
        "thresholds.1.name: Field required",
        "colour: Extra inputs are not permitted",
    ]
