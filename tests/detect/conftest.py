"""Build raw_sft frames by hand for detector tests (detectors take frames, not files)."""

import json

import polars as pl
import pytest

from integrity.ingest.schema import RAW_SFT_SCHEMA
from integrity.detect.pairs import qa_pairs


def make_raw(rows: list[dict]) -> pl.DataFrame:
    """rows: dicts with id, qa [(question, answer), ...], and optional image (sha), uri, name
    (the image file name), caption (or a whole metadata dict), system, pref_role, pref_group."""
    records = []
    for index, row in enumerate(rows):
        image = row.get("image")
        turns = [{"role": "system", "content": row["system"]}] if "system" in row else []
        for position, (question, answer) in enumerate(row["qa"]):
            prefix = "<image>\n" if image and position == 0 else ""
            turns += [{"role": "user", "content": prefix + question},
                      {"role": "assistant", "content": answer}]
        metadata = row.get("metadata", {"caption": row["caption"]} if "caption" in row else {})
        records.append({
            "example_id": row["id"], "source": "t", "origin_format": "llava", "row_index": index,
            "images": [row.get("name", f"{image}.png")] if image else [],
            "image_uris": [row.get("uri", f"/x/{image}.png")] if image else [],
            "image_sha256": [image] if image else [],
            "turns": turns, "metadata": json.dumps(metadata),
            "pref_role": row.get("pref_role"), "pref_group": row.get("pref_group"),
            "modality": "image-text" if image else "text",
        })
    return pl.DataFrame(records, schema=RAW_SFT_SCHEMA)


@pytest.fixture
def pairs_of():
    return lambda rows: qa_pairs(make_raw(rows))
