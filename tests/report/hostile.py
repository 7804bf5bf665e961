"""Hostile data for the report tests: markup that must reach every page as text, a parser that
sees what a browser would build from a page, and raw_sft rows and images carrying the markup."""

import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
from PIL import Image

from integrity.ingest.schema import RAW_SFT_SCHEMA

# Markup that would run or break the page if any of it reached the HTML unescaped: a script, an
# attribute break-out with an event handler, an entity (shown, never decoded) and a closing tag.
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(1)>&amp;</div>'


class Elements(HTMLParser):
    """Every element, end tag and text of a page, as a browser's tokenizer would split them."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.starts: list[tuple[str, dict]] = []
        self.ends: list[str] = []
        self.texts: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.ends.append(tag)

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    def attribute_values(self) -> list[str]:
        return [value or "" for _, attrs in self.starts for value in attrs.values()]


def assert_inert(page: str, shown: list[str], in_attributes: list[str] = ()) -> None:
    """No element the data could have made (a script, an event handler, its img, a closed div)
    and every hostile value visible as the text it is."""
    elements = Elements(page)
    tags = [tag for tag, _ in elements.starts]
    assert "script" not in tags
    assert not [(tag, name) for tag, attrs in elements.starts for name in attrs
                if name.lower().startswith("on")]
    assert not [attrs for tag, attrs in elements.starts if tag == "img" and attrs.get("src") == "x"]
    assert elements.ends.count("div") == tags.count("div")  # no </div> from the data
    text = "".join(elements.texts)
    for value in shown:
        assert value in text, value
    attributes = elements.attribute_values()
    for value in in_attributes:
        assert any(value in attribute for attribute in attributes), value


def raw_frame(rows: list[dict]) -> pl.DataFrame:
    """raw_sft rows from (example_id, question, answer, caption, image_uri, image_sha256)."""
    return pl.DataFrame({
        "example_id": [row["example_id"] for row in rows],
        "source": ["hostile"] * len(rows),
        "origin_format": ["llava"] * len(rows),
        "row_index": list(range(len(rows))),
        "images": [[Path(row["image_uri"]).name] if row.get("image_uri") else [] for row in rows],
        "image_uris": [[row["image_uri"]] if row.get("image_uri") else [] for row in rows],
        "image_sha256": [[row.get("image_sha256") or "0" * 64] if row.get("image_uri") else []
                         for row in rows],
        "turns": [[{"role": "user", "content": ("<image>\n" if row.get("image_uri") else "")
                    + row["question"]},
                   {"role": "assistant", "content": row["answer"]}] for row in rows],
        "metadata": [json.dumps({"caption": row["caption"]}) if row.get("caption") else "{}"
                     for row in rows],
        "pref_role": [None] * len(rows),
        "pref_group": [None] * len(rows),
        "modality": ["image-text" if row.get("image_uri") else "text" for row in rows],
    }, schema=RAW_SFT_SCHEMA)


def hostile_image(folder: Path) -> tuple[str, str]:
    """A readable image whose file name is hostile (a name holds no '/'), and its sha256."""
    image = folder / ('x"><img src=x onerror=alert(1)>&amp;' + ".png")
    Image.new("RGB", (40, 30), (220, 30, 30)).save(image)
    return str(image), hashlib.sha256(image.read_bytes()).hexdigest()
