"""Format mappers: one source record (a dict) -> canonical rows, or a RecordError.

Each mapper knows one family of real SFT formats:
- ``llava``: LLaVA / original ShareGPT: ``id``, ``image`` (str or list) and ``conversations``
  of ``{from, value}``; text-only rows have no ``image``.
- ``sharegpt``: LLaMA-Factory's ShareGPT/OpenAI style: ``messages`` of ``{role, content}``,
  ``images`` (list), optional ``system``; content may be a list of parts (OpenAI
  ``{type: text|image, text}``, LLaMA-Factory v1 ``{type: text|image_url, value}``), and image
  parts that carry their ref (or a ``data:`` URL) bring the image with them.
- ``hf_parquet``: HF datasets exported to parquet: either of the two conversation shapes, with
  images as embedded ``{bytes, path}`` structs or raw bytes.
- ``data_juicer``: Data-Juicer's intermediate format: ``text`` with ``[[human]]: ... [[gpt]]: ...``
  role markers (or a caption with no roles), ``<__dj__image>`` or ``<image>`` tokens, chunks ended
  by ``<|__dj__eoc|>``, an ``images`` list and optionally the same images as ``image_bytes``.
- ``preference``: chosen/rejected pairs (LLaMA-Factory dpo and v1 ``chosen_messages`` /
  ``rejected_messages``, RLAIF-V, TRL prompt/chosen/rejected, Data-Juicer's preference
  annotation ``prompt``/``answer1``/``answer2``), mapped to two rows that share ``pref_group``
  and carry ``pref_role`` (``unranked`` for a pair no one has judged yet).
- ``mmmu``: multiple-choice eval sets (MMMU and its kind): ``question``, ``options``, ``answer``
  and images in ``image`` or ``image_1`` ... ``image_N``.
Fields a mapper does not consume go to ``metadata`` untouched (bytes never: they are images).
"""

from __future__ import annotations

import ast
import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from integrity.errors import redact
from integrity.ingest.schema import IMAGE_TOKEN, QuarantineReason

ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                "system": "system"}
PROMPT_KEYS = ("conversations", "messages", "prompt", "question", "instruction")


class RecordError(Exception):
    """A record that cannot become a row; carries the quarantine reason."""

    def __init__(self, reason: QuarantineReason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = redact(detail)


@dataclass
class MappedRow:
    """A row before validation. ``images`` holds refs (str) or embedded bytes."""

    example_id: str | None
    turns: list[dict]
    images: list[str | bytes] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    pref_role: str | None = None
    pref_group: str | None = None
    variant: str | None = None  # tells apart rows of one record: the id's suffix (or pref_role)


def _missing(detail: str) -> RecordError:
    return RecordError(QuarantineReason.MISSING_FIELD, detail)


def _turns(items: Any, where: str, role_key: str, content_key: str,
           images: list | None = None) -> list[dict]:
    """Turns as ``{role, content}`` text; refs of image parts are appended to ``images``."""
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
        content = _text(item[content_key], images, f"{where}[{position}].{content_key}")
        if content is None:
            raise _missing(f"{where}[{position}].{content_key} is not a string or a list of parts")
        role = str(item[role_key])
        turns.append({"role": ROLE_ALIASES.get(role.lower(), role), "content": content})
    return turns


TEXT_PARTS = ("text", "reasoning", "tool_call")
IMAGE_PARTS = ("image", "image_url")


def _text(content: Any, images: list | None = None, where: str = "content") -> str | None:
    """Turn content as text. Part lists (OpenAI ``[{type: text|image, text}]`` as in HF's
    llava-instruct-mix-vsft, LLaMA-Factory v1 ``[{type: text|image_url, value}]``) become their
    text with one ``<image>`` token per image part; an image part's own ref goes to ``images``."""
    if isinstance(content, str):
        return content
    if not (isinstance(content, list) and all(isinstance(part, dict) for part in content)):
        return None
    pieces = []
    for part in content:
        kind = part.get("type")
        if kind in IMAGE_PARTS:
            pieces.append(IMAGE_TOKEN)
            ref = _part_image(part, where)
            if ref is not None and images is not None:
                images.append(ref)
        elif kind in TEXT_PARTS:
            text = part["text"] if part.get("text") is not None else part.get("value")
            if not isinstance(text, str):
                return None
            pieces.append(text)
        elif isinstance(kind, str) and kind.endswith(("video", "video_url", "audio", "audio_url")):
            raise RecordError(QuarantineReason.UNSUPPORTED_CONTENT,
                              f"{where} has a {kind} part: only text and images are audited")
        else:
            return None
    return "\n".join(pieces)


def _part_image(part: dict, where: str) -> str | bytes | None:
    """The image an image part carries: a path or URL, or the bytes of a ``data:`` URL; None
    when the part only marks where a separately listed image goes."""
    value = next((part[key] for key in ("value", "image_url", "image", "url") if part.get(key)),
                 None)
    if isinstance(value, dict):
        value = value.get("url") or value.get("bytes") or value.get("path")
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str):
        return None
    if value.startswith("data:"):
        return _base64(value.split(",", 1)[-1], where)
    return value


def _base64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise RecordError(QuarantineReason.CORRUPT_IMAGE,
                          f"{where}: image data is not base64: {error}") from error


def _any_turns(items: Any, where: str, images: list | None = None) -> list[dict]:
    """Turns in either shape: ``{from, value}`` or ``{role, content}``."""
    first = items[0] if isinstance(items, list) and items else None
    if isinstance(first, dict) and "from" in first:
        return _turns(items, where, "from", "value", images)
    return _turns(items, where, "role", "content", images)


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
    part_images: list = []
    turns = _turns(record["messages"], "messages", "role", "content", part_images)
    if isinstance(record.get("system"), str) and record["system"]:
        turns.insert(0, {"role": "system", "content": record["system"]})
    return [
        MappedRow(
            example_id=_id(record, "id"),
            turns=turns,
            images=_images(record.get("images", record.get("image")), "images") + part_images,
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


PREFERENCE_USED = ("id", "idx", "image", "images", "conversations", "messages", "prompt",
                   "question", "instruction", "input", "chosen", "rejected", "system")


def _prompt_turns(record: dict, images: list) -> list[dict]:
    """The prompt turns, the system text first, an implicit image's token in front."""
    prompt, implicit_images = _prompt(record)
    if implicit_images and images and IMAGE_TOKEN not in prompt[0]["content"]:
        # RLAIF-V style rows attach the image without a token; LLaVA puts it first.
        prompt[0] = {**prompt[0], "content": IMAGE_TOKEN * len(images) + "\n" + prompt[0]["content"]}
    if isinstance(record.get("system"), str) and record["system"]:
        prompt.insert(0, {"role": "system", "content": record["system"]})
    return prompt


def map_preference(record: dict) -> list[MappedRow]:
    if "chosen_messages" in record or "rejected_messages" in record:
        return _whole_dialog_pair(record)
    if "answer1" in record or "answer2" in record:
        return _answer_pair(record)
    images = _images(record.get("images", record.get("image")), "images")
    prompt = _prompt_turns(record, images)
    group = _id(record, "id", "idx")
    metadata = _rest(record, PREFERENCE_USED)
    responses = {role: _response(record.get(role), role) for role in ("chosen", "rejected")}
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


def _whole_dialog_pair(record: dict) -> list[MappedRow]:
    """LLaMA-Factory v1 dpo: ``chosen_messages`` and ``rejected_messages`` are each a whole
    dialog (prompt included) of v1 messages; images travel inside image_url parts."""
    group = _id(record, "id", "idx")
    rows = []
    for role in ("chosen", "rejected"):
        key = f"{role}_messages"
        if key not in record:
            raise _missing(f"'{key}' is missing")
        part_images: list = []
        turns = _any_turns(record[key], key, part_images)
        rows.append(MappedRow(
            example_id=None if group is None else f"{group}#{role}",
            turns=turns,
            images=_images(record.get("images"), "images") + part_images,
            metadata=_rest(record, ("id", "idx", "images", "chosen_messages", "rejected_messages")),
            pref_role=role, pref_group=group))
    return rows


UNRANKED = "unranked"  # pref_role of a candidate pair no judge has ranked yet


def _answer_pair(record: dict) -> list[MappedRow]:
    """Data-Juicer's preference annotation rows: ``prompt`` with ``answer1`` and ``answer2``;
    once annotated, ``chosen`` and ``rejected`` repeat the winning and losing answer."""
    images = _images(record.get("images", record.get("image")), "images")
    prompt = _prompt_turns(record, images)
    answers = {key: _response(record.get(key), key) for key in ("answer1", "answer2")}
    chosen = record.get("chosen")
    roles = {"answer1": UNRANKED, "answer2": UNRANKED}
    if chosen is not None and chosen == record.get("answer1"):
        roles = {"answer1": "chosen", "answer2": "rejected"}
    elif chosen is not None and chosen == record.get("answer2"):
        roles = {"answer1": "rejected", "answer2": "chosen"}
    group = _id(record, "id", "idx")
    metadata = _rest(record, PREFERENCE_USED + ("answer1", "answer2"))
    if roles["answer1"] == UNRANKED:  # chosen/rejected that repeat no answer are kept as written
        metadata |= {key: record[key] for key in ("chosen", "rejected") if key in record}
    return [
        MappedRow(
            example_id=None if group is None else f"{group}#{key}",
            turns=prompt + response, images=images, metadata=metadata,
            pref_role=roles[key], pref_group=group, variant=key)
        for key, response in answers.items()
    ]


DJ_IMAGE_TOKEN = "<__dj__image>"
DJ_END_OF_CHUNK = "<|__dj__eoc|>"
_DJ_ROLE = re.compile(r"\[\[([A-Za-z_]+)\]\]:[ \t]?")


def map_data_juicer(record: dict) -> list[MappedRow]:
    """A Data-Juicer row. Dialogs (as ``llava_to_dj`` writes them) have ``[[human]]:`` and
    ``[[gpt]]:`` markers; a row without markers is a caption: the images, then the text."""
    text = record.get("text")
    if not isinstance(text, str):
        raise _missing("a Data-Juicer record needs a 'text' string")
    text = text.replace(DJ_IMAGE_TOKEN, IMAGE_TOKEN)
    text = "\n".join(chunk.strip() for chunk in text.split(DJ_END_OF_CHUNK) if chunk.strip())
    pieces = _DJ_ROLE.split(text)
    if len(pieces) > 1:
        lead = pieces[0].strip()
        turns = [{"role": ROLE_ALIASES.get(role.lower(), role), "content": content.strip()}
                 for role, content in zip(pieces[1::2], pieces[2::2], strict=True)]
        if lead:  # an image token before the first marker belongs to the first turn
            turns[0]["content"] = f"{lead}\n{turns[0]['content']}"
    else:
        tokens = text.count(IMAGE_TOKEN)
        turns = [{"role": "user", "content": "\n".join([IMAGE_TOKEN] * tokens)},
                 {"role": "assistant", "content": text.replace(IMAGE_TOKEN, " ").strip()}]
    metadata = _rest(record, ("id", "text", "images", "image_bytes"))
    embedded = record.get("image_bytes")
    if embedded:  # the pixels travel in the row: they are the images, the paths are metadata
        images = [_embedded(item, f"image_bytes[{i}]") for i, item in enumerate(embedded)]
        if record.get("images"):
            metadata["images"] = record["images"]
    else:
        images = _images(record.get("images"), "images")
    return [MappedRow(example_id=_id(record, "id"), turns=turns, images=images,
                      metadata=metadata)]


def _embedded(item: Any, where: str) -> bytes:
    """Image bytes as a column holds them: bytes, an HF ``{bytes, path}`` struct, or base64."""
    if isinstance(item, dict):
        item = item.get("bytes")
    if isinstance(item, bytes | bytearray):
        return bytes(item)
    if isinstance(item, str):
        return _base64(item.split(",", 1)[-1] if item.startswith("data:") else item, where)
    raise RecordError(QuarantineReason.MISSING_IMAGE, f"'{where}' holds no image bytes")


_IMAGE_COLUMN = re.compile(r"image(?:_(\d+))?")


def map_mmmu(record: dict) -> list[MappedRow]:
    """A multiple-choice eval row: the images, the question and its lettered options, then the
    answer as written (a letter, or free text for open questions)."""
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _missing("an eval record needs a 'question' string")
    answer = record.get("answer")
    if answer is None or not str(answer).strip():
        raise _missing("an eval record needs an 'answer'")
    columns = sorted((key for key in record if _IMAGE_COLUMN.fullmatch(key)),
                     key=lambda key: int(_IMAGE_COLUMN.fullmatch(key).group(1) or 0))
    images = [image for key in columns if record[key] not in (None, "", [])
              for image in _images(record[key], key)]
    options = _options(record.get("options"))
    lines = [*([IMAGE_TOKEN] * len(images)), question.strip(),
             *(f"{chr(ord('A') + i)}. {option}" for i, option in enumerate(options))]
    return [MappedRow(
        example_id=_id(record, "id"),
        turns=[{"role": "user", "content": "\n".join(lines)},
               {"role": "assistant", "content": str(answer).strip()}],
        images=images,
        metadata=_rest(record, ("id", "question", "options", "answer", *columns)))]


def _options(value: Any) -> list[str]:
    """Options as a list; MMMU's parquet holds the list's Python repr as a string."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError) as error:
                raise _missing(f"'options' is not a list: {value[:80]!r}") from error
    if not isinstance(value, list | tuple):
        raise _missing("'options' is not a list")
    return [str(option) for option in value]


MAPPERS = {
    "llava": map_llava,
    "sharegpt": map_sharegpt,
    "hf_parquet": map_hf_parquet,
    "preference": map_preference,
    "data_juicer": map_data_juicer,
    "mmmu": map_mmmu,
}


def detect_format(record: dict, container: str) -> str:
    """Guess the format from one record's keys (and the container, for parquet)."""
    if ("chosen" in record and "rejected" in record) or "chosen_messages" in record \
            or ("answer1" in record and "answer2" in record):
        return "preference"
    if "messages" not in record and "conversations" not in record:
        if isinstance(record.get("text"), str):
            return "data_juicer"
        if "question" in record and ("options" in record or "answer" in record):
            return "mmmu"
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
