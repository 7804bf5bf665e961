"""The data contracts: column names and polars schemas of every stage.

raw_sft is one row per SFT example in a single canonical shape, whatever format the source
file had. Columns:

- ``example_id``: stable id. The source's own id when it has one (preference rows append
  ``#chosen`` / ``#rejected``), otherwise ``<source>:<row_index>``: its position, never its content.
- ``source``: name of the source in the sources file (also the Dagster partition key).
- ``origin_format``: the reader that produced the row: llava, sharegpt, hf_parquet, preference.
- ``row_index``: 0-based position of the record in its file (the line for JSONL), to find it again.
- ``images``: image refs as the source wrote them (for embedded bytes: ``embedded:<index>``).
- ``image_uris``: where each image was read from: an absolute path, an ``s3://`` URI, or the
  content-addressed blob the embedded bytes were written to.
- ``image_sha256``: sha256 of each image's bytes, in the order of ``images``.
- ``turns``: the conversation as a list of ``{role, content}``; role is one of ``ROLES``.
  ``<image>`` tokens stay in the content, where the source put them.
- ``metadata``: JSON text of every field of the record that is not mapped above (caption,
  generator, ratings, ...), so nothing the source carried is lost.
- ``pref_role``: ``chosen`` / ``rejected`` for rows that came from preference data, else null.
- ``pref_group``: id shared by the rows of one preference pair, else null.
- ``modality``: ``image-text`` when the row has at least one image, else ``text``.

Rows that cannot be accepted go to the quarantine table (``QUARANTINE_SCHEMA``) with a reason
from ``QuarantineReason`` and their raw text.
"""

from __future__ import annotations

from enum import StrEnum

import polars as pl

IMAGE_TOKEN = "<image>"
ROLES = ("system", "user", "assistant")
PREF_ROLES = ("chosen", "rejected")
MODALITIES = ("text", "image-text")

TURN = pl.Struct({"role": pl.String, "content": pl.String})

RAW_SFT_SCHEMA = pl.Schema(
    {
        "example_id": pl.String,
        "source": pl.String,
        "origin_format": pl.String,
        "row_index": pl.Int64,
        "images": pl.List(pl.String),
        "image_uris": pl.List(pl.String),
        "image_sha256": pl.List(pl.String),
        "turns": pl.List(TURN),
        "metadata": pl.String,
        "pref_role": pl.String,
        "pref_group": pl.String,
        "modality": pl.String,
    }
)


class QuarantineReason(StrEnum):
    """Why a record was not accepted. Values are stable: reports and policies key on them."""

    MALFORMED_JSON = "malformed_json"
    MISSING_FIELD = "missing_field"
    UNKNOWN_ROLE = "unknown_role"
    ROLES_NOT_ALTERNATING = "roles_not_alternating"
    IMAGE_TOKEN_MISMATCH = "image_token_mismatch"
    EMPTY_ANSWER = "empty_answer"
    IMAGE_OUTSIDE_ROOT = "image_outside_root"
    MISSING_IMAGE = "missing_image"
    CORRUPT_IMAGE = "corrupt_image"
    IMAGE_TOO_LARGE = "image_too_large"
    UNSUPPORTED_IMAGE = "unsupported_image"
    UNSUPPORTED_CONTENT = "unsupported_content"  # video or audio parts: not auditable here
    NOT_A_FILE = "not_a_regular_file"  # a FIFO, device or socket where an image should be
    DUPLICATE_KEY = "duplicate_key"  # an object repeats a key: which value was meant?
    TOO_DEEP = "too_deeply_nested"  # nested past what JSON serialisers handle (254 levels)
    IMAGE_CHANGED = "image_changed"  # after ingest: the bytes no longer hash to what it checked


QUARANTINE_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "origin_format": pl.String,
        "row_index": pl.Int64,
        "example_id": pl.String,
        "reason": pl.String,
        "detail": pl.String,
        "raw": pl.String,
    }
)
