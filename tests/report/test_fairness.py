"""The over-audit section of the audit report (integrity/report/fairness.py): removal per
source, diversity before and after, the slices with enough rows to tell, and the most removed
slices shown with the rows they lost; measured by the real slicing (integrity/decide/fairness.py)
over a small audited corpus with images on disk. And hostile text stays text."""

import hashlib
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
from PIL import Image

from integrity.decide.fairness import (
    MIN_SLICE_ROWS,
    diversity_change,
    removal_by_slice,
    slice_rows,
)
from integrity.report.fairness import EXAMPLES_PER_SLICE, SLICE_ROWS_LISTED, fairness_section
from integrity.report.render import clip
from tests.report.hostile import HOSTILE, assert_inert, hostile_image, raw_frame

ROWS = 24


class Section(HTMLParser):
    """What the section shows: table rows by table class (a slice table by its kind), each a
    list of cell texts; the most removed slices, each its heading and its examples (example_id,
    what shows in place of the image, caption)."""

    def __init__(self, section: str):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.slices: list[dict] = []
        self.paragraphs: list[str] = []
        self._rows: list | None = None
        self._in_cell = False
        self._text: list[str] | None = None
        self._figure: dict | None = None
        self.feed(str(section))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        if tag == "table":
            self._rows = self.tables.setdefault(found.get("data-kind") or classes[-1], [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag == "td" and self._rows is not None:
            self._rows[-1].append("")
            self._in_cell = True
        elif tag == "div" and "slice" in classes:
            self.slices.append({"kind": found["data-kind"], "heading": "", "examples": []})
        elif tag == "h3" and self.slices and not self.slices[-1]["heading"]:
            self._text = []
        elif tag == "p":
            self._text = []
        elif tag == "figure" and "slice-example" in classes:
            self._figure = {"example_id": found["data-example-id"], "media": None, "caption": ""}
            self.slices[-1]["examples"].append(self._figure)
        elif self._figure is not None and self._figure["media"] is None:
            self._figure["media"] = classes[0]
        if tag == "figcaption":
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)
        elif self._in_cell:
            self._rows[-1][-1] += data

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._text or [])
        if tag == "td":
            self._in_cell = False
        elif tag == "table":
            self._rows = None
        elif tag == "h3" and self._text is not None:
            self.slices[-1]["heading"] = text
            self._text = None
        elif tag == "p" and self._text is not None:
            self.paragraphs.append(text)
            self._text = None
        elif tag == "figcaption":
            self._figure["caption"] = text
            self._text = None
        elif tag == "figure":
            self._figure = None


def _image(folder: Path, n: int) -> tuple[str, str]:
    path = folder / f"{n}.png"
    Image.new("RGB", (20, 16), (10 * n, 120, 60)).save(path)
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest()


def _audited(folder: Path) -> dict:
    """24 rows, two question templates of 12 rows: "how many" (even rows) loses 9 (8 dropped,
    one held for review), "what color" (odd rows) loses none; every fourth row is text only,
    the others in three image clusters of 6 rows (too few to rank)."""
    rows, verdict = [], []
    for n in range(ROWS):
        uri, sha = _image(folder, n) if n % 4 != 3 else (None, None)
        question = "How many shapes are there?" if n % 2 == 0 else "What color is the shape?"
        rows.append({"example_id": f"r{n:02d}", "question": question, "answer": "Two.",
                     "image_uri": uri, "image_sha256": sha})
        verdict.append("keep" if n % 2 or n > 16 else "review" if n == 16 else "drop")
    raw = raw_frame(rows)
    verdicts = pl.DataFrame({
        "example_id": raw["example_id"], "verdict": verdict,
        "reasons": [{"drop": ["duplicate"], "review": ["contradiction"]}.get(v, [])
                    for v in verdict]})
    pairs = pl.DataFrame({
        "example_id": raw["example_id"],
        "div_question_template": ["how many" if n % 2 == 0 else "what color"
                                  for n in range(ROWS)],
        "div_image_cluster": [None if n % 4 == 3 else f"k{n % 3}" for n in range(ROWS)]})
    sliced = slice_rows(pairs, verdicts)
    slices = removal_by_slice(sliced)
    return {"raw": raw, "verdicts": verdicts, "sliced": sliced, "slices": slices,
            "diversity": diversity_change(slices)}


def _section(audited: dict, audits: dict | None = None, **options) -> Section:
    counts = dict(audited["verdicts"]["verdict"].value_counts().iter_rows())
    audits = audits or {"this": {"counts": {verdict: counts.get(verdict, 0)
                                            for verdict in ("keep", "drop", "review")}}}
    return Section(fairness_section(source="this", audits=audits, **audited, **options))


def test_each_source_shows_its_removal_and_this_source_stands_out(tmp_path):
    audited = _audited(tmp_path)
    audits = {"this": {"counts": {"keep": 15, "drop": 8, "review": 1}},
              "another": {"counts": {"keep": 3, "drop": 0, "review": 1}},
              "never-kept-a-row": {"counts": {"keep": 0, "drop": 0, "review": 0}}}
    page = fairness_section(source="this", audits=audits, **audited)
    assert Section(page).tables["per-source"][1:] == [
        ["another", "4", "3", "0", "1", "25.0%"],
        ["never-kept-a-row", "0", "0", "0", "0", "0.0%"],  # nothing audited: nothing removed
        ["this", "24", "15", "8", "1", "37.5%"]]
    assert '<tr class="this" data-source="this"><td><b>this</b></td>' in page
    assert '<tr data-source="another"><td>another</td>' in page


def test_diversity_before_and_after_comes_with_the_cluster_coverage(tmp_path):
    section = _section(_audited(tmp_path))
    assert section.tables["diversity"][1:] == [
        ["question templates", "2", "2", "1.00", "0.72"],
        ["image clusters", "3", "3", "1.58", "1.58"],
        ["image rows whose cluster keeps a row", "100.0%"]]


def test_without_diversity_keys_the_section_says_so(tmp_path):
    audited = _audited(tmp_path)
    audited["sliced"] = slice_rows(pl.DataFrame({"example_id": audited["raw"]["example_id"]}),
                                   audited["verdicts"])
    audited["slices"] = removal_by_slice(audited["sliced"])
    audited["diversity"] = diversity_change(audited["slices"])
    section = _section(audited)
    assert "diversity" not in section.tables
    assert "No diversity keys (scored without questions or images)." in section.paragraphs
    assert "No question template with 10+ rows." in section.paragraphs
    assert section.slices == [] and "No slice lost rows." in section.paragraphs


def test_only_slices_with_enough_rows_to_tell_are_tabled(tmp_path):
    section = _section(_audited(tmp_path))
    assert section.tables["question_template"][1:] == [
        ["how many", "12", "3", "8", "1", "75.0%"], ["what color", "12", "12", "0", "0", "0.0%"]]
    assert "image_cluster" not in section.tables  # three clusters of 6 rows each
    assert f"No image cluster with {MIN_SLICE_ROWS}+ rows." in section.paragraphs


def test_a_slice_table_lists_at_most_its_most_removed_slices(tmp_path):
    audited = _audited(tmp_path)
    rows = 2 * MIN_SLICE_ROWS
    many = pl.DataFrame({"kind": "question_template", "key": [f"t{n:02d}" for n in range(20)],
                         "rows": rows, "kept": list(range(20))}).with_columns(
        dropped=rows - pl.col("kept"), review=0, removal_rate=1 - pl.col("kept") / rows)
    audited["slices"] = many.cast(audited["slices"].schema)
    listed = _section(audited).tables["question_template"][1:]
    assert [row[0] for row in listed] == [f"t{n:02d}" for n in range(SLICE_ROWS_LISTED)]


def test_the_most_removed_slice_shows_its_first_removed_rows_with_their_images(tmp_path):
    section = _section(_audited(tmp_path))
    [removed] = section.slices  # "what color" lost nothing, the clusters are too small
    assert removed["kind"] == "question_template"
    assert removed["heading"] == "question template how many: 9 of 12 removed (75%)"
    removed_ids = [f"r{n:02d}" for n in range(0, 17, 2)]  # in example_id order
    assert [example["example_id"] for example in removed["examples"]] == \
        removed_ids[:EXAMPLES_PER_SLICE]
    for example in removed["examples"]:
        # The image token is not part of the question a reviewer reads.
        assert example["caption"] == "How many shapes are there?duplicate"
        assert example["media"] == "thumb"


def test_a_removed_row_whose_image_changed_since_ingest_shows_it_unavailable(tmp_path):
    audited = _audited(tmp_path)
    Image.new("RGB", (20, 16), (0, 0, 0)).save(tmp_path / "2.png")  # r02's image, rewritten
    page = fairness_section(source="this", audits={}, thumbnail_px=40, **audited)
    media = {example["example_id"]: example["media"]
             for example in Section(page).slices[0]["examples"]}
    assert media.pop("r02") == "image-unavailable"
    assert media and set(media.values()) == {"thumb"}
    assert "changed since it was ingested" in page
    assert 'style="width:40px;height:40px"' in page


def test_hostile_text_everywhere_stays_text_in_the_fairness_section(tmp_path):
    readable, digest = hostile_image(tmp_path)
    missing = str(tmp_path / "gone" / (HOSTILE + ".png"))
    images = [(readable, digest), (missing, None)] + [(None, None)] * (MIN_SLICE_ROWS - 1)
    rows = [{"example_id": f"id-{n}{HOSTILE}", "question": f"q-{n}{HOSTILE}",
             "answer": f"a-{n}{HOSTILE}", "image_uri": uri, "image_sha256": sha}
            for n, (uri, sha) in enumerate(images)]
    raw = raw_frame(rows)
    ids = raw["example_id"]
    verdicts = pl.DataFrame({"example_id": ids,
                             "verdict": ["drop", "review"] + ["keep"] * (len(rows) - 2),
                             "reasons": [[f"reason{HOSTILE}"], ["caption_derived"]]
                             + [[]] * (len(rows) - 2)})
    template, cluster = f"template{HOSTILE}", f"cluster{HOSTILE}"
    pairs = pl.DataFrame({"example_id": ids, "div_question_template": [template] * len(rows),
                          "div_image_cluster": [cluster] * len(rows)})
    sliced = slice_rows(pairs, verdicts)
    slices = removal_by_slice(sliced)
    counts = {"keep": 9, "drop": 1, "review": 1}
    section = fairness_section(
        source=f"this{HOSTILE}", raw=raw, verdicts=verdicts, sliced=sliced, slices=slices,
        audits={f"this{HOSTILE}": {"counts": counts}, f"other{HOSTILE}": {"counts": counts}},
        diversity=diversity_change(slices))
    assert_inert(
        section,
        shown=[f"this{HOSTILE}", f"other{HOSTILE}", clip(template, 60), clip(cluster, 60),
               f"reason{HOSTILE}", clip(f"q-0{HOSTILE}", 120), clip(f"q-1{HOSTILE}", 120)],
        in_attributes=[readable, missing, f"id-0{HOSTILE}", f"id-1{HOSTILE}",
                       f"this{HOSTILE}", f"other{HOSTILE}"])
    assert section.count('<img class="thumb"') == 2  # one slice example per kind
    assert section.count(">image unavailable</div>") == 2
