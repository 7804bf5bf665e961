"""Format mappers: one source record (a dict) -> canonical rows, or a RecordError.

Each mapper knows one family of real SFT formats:
- ``llava``: LLaVA / original ShareGPT: ``id``, ``image`` (str or list) and ``conversations``
  of ``{from, value}``; text-only rows have no ``image``.
- ``sharegpt``: LLaMA-Factory's ShareGPT/OpenAI style: ``messages`` of ``{role, content}``,
  ``images`` (list), optional ``system``.
- ``hf_parquet``: HF datasets exported to parquet: either of the two conversation shapes, with
  images as embedded ``{bytes, path}`` structs or raw bytes.
- ``preference``: chosen/rejected pairs (LLaMA-Factory dpo, RLAIF-V, TRL prompt/chosen/rejected),
  mapped to two rows that share ``pref_group`` and carry ``pref_role``.
Fields a mapper does not consume go to ``metadata`` untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from integrity.schema import IMAGE_TOKEN, QuarantineReason

ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                "system": "system"}
PROMPT_KEYS = ("conversations", "messages", "prompt", "question", "instruction")


class RecordError(Exception):
    """A record that cannot become a row; carries the quarantine reason."""

    def __init__(self, reason: QuarantineReason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class MappedRow:
    """A row before validation. ``images`` holds refs (str) or embedded bytes."""

    example_id: str | None
    turns: list[dict]
    images: list[str | bytes] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    pref_role: str | None = None
    pref_group: str | None = None


def _missing(detail: str) -> RecordError:
    return RecordError(QuarantineReason.MISSING_FIELD, detail)


def _turns(items: Any, where: str, role_key: str, content_key: str) -> list[dict]:
    if not isinstance(items, list) or not items:
        raise _missing(f"'{where}' must be a non-empty list of turns")
    try:  # the common shape, at a fraction of the cost: string roles and string contents
        turns = [{"role": ROLE_ALIASES.get(item[role_key].lower(), item[role_key]),
                  "content": item[content_key]} for item in items]
        if all(type(turn["content"]) is str for turn in turns):
            return turns
    except (TypeError, KeyError, AttributeError):
        pass  # anything else: item by item below, which names what is wrong
    turns = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or role_key not in item or content_key not in item:
            raise _missing(f"{where}[{position}] needs '{role_key}' and '{content_key}'")
        content = _text(item[content_key])
        if content is None:
            raise _missing(f"{where}[{position}].{content_key} is not a string or a list of parts")
        role = str(item[role_key])
        turns.append({"role": ROLE_ALIASES.get(role.lower(), role), "content": content})
    return turns


def _text(content: Any) -> str | None:
    """Turn content as text; OpenAI-style part lists (``[{type: text|image, ...}]``, as in HF's
    llava-instruct-mix-vsft) become their text with one ``<image>`` token per image part."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        pieces = []
        for part in content:
            if part.get("type") == "image":
                pieces.append(IMAGE_TOKEN)
            elif part.get("type") == "text" and isinstance(part.get("text"), str):
                pieces.append(part["text"])
            else:
                return None
        return "\n".join(pieces)
    return None


def _any_turns(items: Any, where: str) -> list[dict]:
    """Turns in either shape: ``{from, value}`` or ``{role, content}``."""
    first = items[0] if isinstance(items, list) and items else None
    if isinstance(first, dict) and "from" in first:
        return _turns(items, where, "from", "value")
    return _turns(items, where, "role", "content")


def _images(value: Any, where: str) -> list[str | bytes]:
    """Image refs in every shape real files use: str, list, HF ``{bytes, path}`` struct, bytes."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [image for item in value for image in _images(item, where)]
    if isinstance(value, bytes | bytearray):
        return [bytes(value)]
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        if value.get("bytes"):
            return [bytes(value["bytes"])]
        if value.get("path"):
            return [str(value["path"])]
        raise RecordError(QuarantineReason.MISSING_IMAGE, f"'{where}' has neither bytes nor path")
    if isinstance(value, str) and value.strip():
        return [value]
    raise RecordError(QuarantineReason.MISSING_IMAGE, f"'{where}' is not an image ref: {value!r}")


def _rest(record: dict, used: tuple[str, ...]) -> dict:
    return {key: value for key, value in record.items() if key not in used}


def _id(record: dict, *keys: str) -> str | None:
    for key in keys:
        if record.get(key) is not None:
            return str(record[key])
    return None


def map_llava(record: dict) -> list[MappedRow]:
    if "conversations" not in record:
        raise _missing("missing 'conversations'")
    image_key = "image" if "image" in record else "images"
    return [
        MappedRow(
            example_id=_id(record, "id"),
            turns=_turns(record["conversations"], "conversations", "from", "value"),
            images=_images(record.get(image_key), image_key),
            metadata=_rest(record, ("id", "image", "images", "conversations")),
        )
    ]


def map_sharegpt(record: dict) -> list[MappedRow]:
    if "messages" not in record:
        raise _missing("missing 'messages'")
    turns = _turns(record["messages"], "messages", "role", "content")
    if isinstance(record.get("system"), str) and record["system"]:
        turns.insert(0, {"role": "system", "content": record["system"]})
    return [
        MappedRow(
            example_id=_id(record, "id"),
            turns=turns,
            images=_images(record.get("images", record.get("image")), "images"),
            metadata=_rest(record, ("id", "image", "images", "messages", "system")),
        )
    ]


def map_hf_parquet(record: dict) -> list[MappedRow]:
    return map_sharegpt(record) if "messages" in record else map_llava(record)


def _response(value: Any, where: str) -> list[dict]:
    """A chosen/rejected response: a string, one turn, or a list of turns."""
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if isinstance(value, dict):
        return _any_turns([value], where)
    if isinstance(value, list) and value:
        return _any_turns(value, where)
    raise _missing(f"'{where}' is missing or empty")


def _prompt(record: dict) -> tuple[list[dict], bool]:
    """The prompt turns, and whether the format puts images implicitly (no <image> token)."""
    for key in ("conversations", "messages"):
        if key in record:
            return _any_turns(record[key], key), False
    if isinstance(record.get("prompt"), list):
        return _any_turns(record["prompt"], "prompt"), False
    for key in ("prompt", "question", "instruction"):
        if isinstance(record.get(key), str):
            text = record[key]
            if key == "instruction" and record.get("input"):
                text = f"{text}\n{record['input']}"
            return [{"role": "user", "content": text}], True
    raise _missing(f"a preference record needs one of {', '.join(PROMPT_KEYS)}")


def map_preference(record: dict) -> list[MappedRow]:
    prompt, implicit_images = _prompt(record)
    images = _images(record.get("images", record.get("image")), "images")
    if implicit_images and images and IMAGE_TOKEN not in prompt[0]["content"]:
        # RLAIF-V style rows attach the image without a token; LLaVA puts it first.
        prompt[0] = {**prompt[0], "content": IMAGE_TOKEN * len(images) + "\n" + prompt[0]["content"]}
    group = _id(record, "id", "idx")
    used = ("id", "idx", "image", "images", "conversations", "messages", "prompt", "question",
            "instruction", "input", "chosen", "rejected", "system")
    metadata = _rest(record, used)
    responses = {role: _response(record.get(role), role) for role in ("chosen", "rejected")}
    if isinstance(record.get("system"), str) and record["system"]:
        prompt.insert(0, {"role": "system", "content": record["system"]})
    return [
        MappedRow(
            example_id=None if group is None else f"{group}#{role}",
            turns=prompt + response,
            images=images,
            metadata=metadata,
            pref_role=role,
            pref_group=group,
        )
        for role, response in responses.items()
    ]


MAPPERS = {
    "llava": map_llava,
    "sharegpt": map_sharegpt,
    "hf_parquet": map_hf_parquet,
    "preference": map_preference,
}


def detect_format(record: dict, container: str) -> str:
    """Guess the format from one record's keys (and the container, for parquet)."""
    if "chosen" in record and "rejected" in record:
        return "preference"
    if container == "parquet":
        return "hf_parquet"
    if "messages" in record:
        return "sharegpt"
    if "conversations" in record:
        return "llava"
    raise RecordError(
        QuarantineReason.MISSING_FIELD,
        f"cannot tell the format from keys {sorted(record)}; set 'format' in the sources file",
    )
