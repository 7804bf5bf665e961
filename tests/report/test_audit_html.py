"""The HTML audit report, rendered from a real audit of a small demo corpus.

The corpus is generated, ingested, scored with the shipped reference CLIP (and once without a
model) and audited in a temporary store once per module; the page is parsed for its structure
and opened in headless Chromium to prove every image actually renders. Each of the three reports
is also rendered from hostile text, and no module of integrity/ may build HTML outside the
templates.
"""

import ast
import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
import torch
from PIL import Image, ImageStat

from demo.model import demo_encoder_config
from demo.generate import DemoConfig, generate
from integrity.ingest import SourceConfig
from integrity.decide.policy import Policy, load_policy
from integrity.decide.fairness import (
    MIN_SLICE_ROWS,
    diversity_change,
    removal_by_slice,
    slice_rows,
)
from integrity.report.calibration import render_calibration_report
from integrity.report.fairness import fairness_section
from integrity.report.audit_html import render_audit_report
from integrity.report.render import clip
from integrity.ingest.schema import RAW_SFT_SCHEMA
from integrity.names import AUDITED_SFT, RAW_SFT, SCORED_SFT
from integrity.stages import audit_to_store, ingest_to_store, make_encoder, score_to_store
from integrity.store.versions import VersionStore
from tests.browser import headless_chromium, require_browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "test-artifacts" / "report"
SOURCE = "demo"
PER_REASON = 5  # below some reasons' row counts and above others' in this corpus
MEDIA = {"thumb", "image-unavailable", "no-image"}  # what a card shows in place of the image


class ReportPage(HTMLParser):
    """What a rendered report holds: reason sections with their cards, and histograms."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: dict[str, list[dict]] = {}
        self.histograms: dict[str, str] = {}  # signal -> alt text
        self._section: str | None = None
        self._card: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = set((found.get("class") or "").split())
        if tag == "section" and "reason" in classes:
            self._section = found["id"].removeprefix("reason-")
            self.sections[self._section] = []
        elif tag == "article" and "card" in classes:
            self._card = {"example_id": found["data-example-id"], "media": []}
            self.sections[self._section].append(self._card)
        elif tag == "img" and "histogram" in classes:
            self.histograms[found["data-signal"]] = found["alt"]
        elif self._card is not None and classes & MEDIA:
            self._card["media"].extend(classes & MEDIA)


def _audit(source: SourceConfig, raw_version: str, store: VersionStore, policy: Policy,
           encoder=None) -> dict:
    """Score and audit one raw version; the frames and versions render_audit_report needs."""
    _, scored_manifest, _ = score_to_store(source, raw_version, store, encoder=encoder)
    audit_manifest = audit_to_store(SOURCE, scored_manifest.version, store, policy,
                                    report=False)[1]
    return {
        "version": audit_manifest.version,
        "raw": store.read(RAW_SFT, raw_version),
        "scored": store.read(SCORED_SFT, scored_manifest.version),
        "verdicts": store.read(AUDITED_SFT, audit_manifest.version, "verdicts"),
        "policy": policy,
        "model": scored_manifest.extra,
    }, {"pairs": store.read(SCORED_SFT, scored_manifest.version, "pairs"),
        "extra": audit_manifest.extra}


@pytest.fixture(scope="module")
def audits(tmp_path_factory) -> dict:
    """A 300-row demo corpus audited with the reference CLIP ("model") and without ("plain")."""
    root = tmp_path_factory.mktemp("report")
    generate(root / "demo", DemoConfig(rows=300, seed=31))
    store = VersionStore(str(root / "store"))
    source = SourceConfig(name=SOURCE, uri=str(root / "demo" / "llava.jsonl"))
    _, raw_manifest = ingest_to_store(source, store)
    policy = load_policy()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        config = demo_encoder_config(workers=0)
        encoder = make_encoder(config, store)
        model, model_audit = _audit(source, raw_manifest.version, store, policy, encoder)
    finally:
        torch.set_num_threads(threads)
    plain, _ = _audit(source, raw_manifest.version, store, policy)
    return {"model": model, "plain": plain, "model_audit": model_audit}


def _render(audit: dict, **options) -> str:
    return render_audit_report(source=SOURCE, **audit, **options)


def _fairness(audits) -> str:
    audit, facts = audits["model"], audits["model_audit"]
    sliced = slice_rows(facts["pairs"], audit["verdicts"])
    return fairness_section(
        source=SOURCE, raw=audit["raw"], verdicts=audit["verdicts"], sliced=sliced,
        slices=removal_by_slice(sliced),
        audits={SOURCE: facts["extra"], "other": {"counts": {"keep": 9, "drop": 1, "review": 0}}},
        diversity=facts["extra"]["diversity"])


@pytest.fixture(scope="module")
def report(audits) -> str:
    return _render(audits["model"], examples_per_reason=PER_REASON, sections=[_fairness(audits)])


def _flagged_by_reason(verdicts: pl.DataFrame) -> dict[str, list[str]]:
    """reason -> example_ids of its dropped or review rows, in example_id order."""
    flagged = verdicts.filter(pl.col("verdict").is_in(["drop", "review"])).explode("reasons")
    return {reason: sorted(group["example_id"]) for (reason,), group
            in flagged.drop_nulls("reasons").group_by("reasons")}


def _modality(audit: dict) -> dict[str, str]:
    return dict(audit["raw"].select("example_id", "modality").iter_rows())


def test_header_names_source_version_policy_and_counts(audits, report):
    audit = audits["model"]
    assert f"Audit report: {SOURCE}" in report
    assert audit["version"] in report and audit["policy"].digest() in report
    for verdict, count in audit["verdicts"].group_by("verdict").len().iter_rows():
        assert f"<tr><td>{verdict}</td><td>{count}</td></tr>" in report
    # The model that scored the rows is named, with its fit to them.
    assert '<code class="model">shapes-clip@' in report
    assert "(fit: matched vs shuffled AUC 0." in report


def _by_evidence(reason: str, ids: list[str], scored: pl.DataFrame) -> list[str]:
    """``ids`` strongest evidence first: by the signal the policy cuts for ``reason`` (the
    flagged side first), then by id; id order for reasons no signal cuts."""
    from integrity.detect.registry import thresholds

    cut = next((t for t in thresholds().values()
                if t.flaw_class == reason and t.signal in scored.columns), None)
    if cut is None:
        return sorted(ids)
    values = dict(scored.select("example_id", cut.signal).iter_rows())

    def key(example_id: str):
        value = values.get(example_id)
        if value is None:
            return (1, 0.0, example_id)
        return (0, -value if cut.side == ">=" else value, example_id)

    return sorted(ids, key=key)


def _assert_first_rows_per_reason(page: ReportPage, audit: dict, per_reason: int):
    """One section per reason of dropped or review rows, holding its strongest rows first."""
    expected = _flagged_by_reason(audit["verdicts"])
    assert set(page.sections) == set(expected)
    for reason, ids in expected.items():
        ranked = _by_evidence(reason, ids, audit["scored"])
        assert [card["example_id"] for card in page.sections[reason]] == \
            ranked[:per_reason], reason


def test_one_section_per_flagged_reason_with_its_first_rows(audits, report):
    verdicts = audits["model"]["verdicts"]
    sizes = [len(ids) for ids in _flagged_by_reason(verdicts).values()]
    assert len(sizes) >= 4  # the demo plants several flaw classes
    assert min(sizes) < PER_REASON < max(sizes)  # both a capped and an uncapped section
    _assert_first_rows_per_reason(ReportPage(report), audits["model"], PER_REASON)


def test_image_cards_have_a_thumbnail_and_text_cards_none(audits, report):
    modality = _modality(audits["model"])
    cards = [card for section in ReportPage(report).sections.values() for card in section]
    assert "image-text" in {modality[card["example_id"]] for card in cards}
    for card in cards:
        expected = "thumb" if modality[card["example_id"]] == "image-text" else "no-image"
        assert card["media"] == [expected], card
    flagged = report[report.index('<section class="flagged">'):]
    assert flagged.count('<img class="thumb"') == sum(card["media"] == ["thumb"] for card in cards)


def test_histograms_mark_the_policy_thresholds(audits, report):
    policy = audits["model"]["policy"]
    histograms = ReportPage(report).histograms
    assert {"grounding_margin", "grounding_cos", "leak_score", "image_pixel_std"} <= set(histograms)
    margin = f"audit.weak_grounding_margin = {policy.audit.weak_grounding_margin:g}"
    leak_min = policy.signals.caption_derived.leak_score_min
    leak = f"signals.caption_derived.leak_score_min = {leak_min:g}"
    assert margin in histograms["grounding_margin"]
    assert leak in histograms["leak_score"]
    assert "threshold" not in histograms["grounding_cos"]


def test_scored_without_a_model_renders_without_model_signals(audits):
    audit = audits["plain"]
    assert "grounding_margin" not in audit["scored"].columns
    page = ReportPage(_render(audit))  # the default: 12 examples per reason
    assert not {"grounding_margin", "grounding_cos", "answer_support_prob", "leak_score"} \
        & set(page.histograms)
    assert {"blind_prior", "image_pixel_std", "image_min_side"} <= set(page.histograms)
    _assert_first_rows_per_reason(page, audit, 12)


def test_a_missing_image_shows_a_placeholder(audits, report, tmp_path):
    audit = audits["model"]
    modality = _modality(audit)
    first = next(card["example_id"] for section in ReportPage(report).sections.values()
                 for card in section if modality[card["example_id"]] == "image-text")
    uri = audit["raw"].filter(pl.col("example_id") == first)["image_uris"][0][0]
    moved = tmp_path / "moved"
    shutil.move(uri, moved)
    try:
        page_text = _render(audit)
    finally:
        shutil.move(moved, uri)
    image_uri = dict(audit["raw"].select("example_id", pl.col("image_uris").list.first())
                     .iter_rows())
    cards = [card for section in ReportPage(page_text).sections.values() for card in section]
    unavailable = [card for card in cards if image_uri[card["example_id"]] == uri]
    assert first in {card["example_id"] for card in unavailable}
    for card in cards:
        if card in unavailable:
            assert card["media"] == ["image-unavailable"]
        elif modality[card["example_id"]] == "image-text":
            assert card["media"] == ["thumb"]
    assert page_text.count(">image unavailable</div>") == len(unavailable)


def test_untrusted_text_is_escaped(tmp_path):
    image = tmp_path / "red.png"
    Image.new("RGB", (40, 30), (220, 30, 30)).save(image)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    raw = pl.DataFrame({
        "example_id": ['x"><script>alert(1)</script>', "t-1"],
        "source": ["hostile", "hostile"],
        "origin_format": ["llava", "llava"],
        "row_index": [0, 1],
        "images": [["red.png"], []],
        "image_uris": [[str(image)], []],
        "image_sha256": [[digest], []],
        "turns": [[{"role": "user", "content": "<image>\n<script>alert('q')</script>?"},
                   {"role": "assistant", "content": "<img src=x onerror=alert(2)>"}],
                  [{"role": "user", "content": "a & b < c?"},
                   {"role": "assistant", "content": "yes"}]],
        "metadata": ['{"caption": "<b>bold</b>"}', "{}"],
        "pref_role": [None, None],
        "pref_group": [None, None],
        "modality": ["image-text", "text"],
    }, schema=RAW_SFT_SCHEMA)
    ids = raw["example_id"]
    scored = pl.DataFrame({"example_id": ids, "leak_score": [0.9, None],
                           "pref_marker": ["<i>Response A</i>", None]})
    verdicts = pl.DataFrame({"example_id": ids, "verdict": ["drop", "drop"],
                             "reasons": [["caption_derived"], ["<reason>"]],
                             "modality": raw["modality"]})
    policy = Policy.model_validate({"signals": {"caption_derived": {"leak_score_min": 0.65}}})
    page_text = render_audit_report(source="<src>", version="v&1", raw=raw, scored=scored,
                                    verdicts=verdicts, policy=policy)
    for hostile in ("<script>", "<b>bold", "<img src=x", "<i>Response", "<src>", "<reason>"):
        assert hostile not in page_text
    for escaped in ("&lt;script&gt;alert(&#39;q&#39;)", "&lt;b&gt;bold&lt;/b&gt;",
                    "&lt;img src=x onerror=alert(2)&gt;", "a &amp; b &lt; c?", "&lt;src&gt;",
                    "v&amp;1", 'id="reason-&lt;reason&gt;"'):
        assert escaped in page_text
    page = ReportPage(page_text)
    assert set(page.sections) == {"caption_derived", "<reason>"}
    assert page.sections["caption_derived"][0]["example_id"] == ids[0]
    assert page.sections["caption_derived"][0]["media"] == ["thumb"]
    assert page.sections["<reason>"][0]["media"] == ["no-image"]
    assert "signals.caption_derived.leak_score_min = 0.65" in page.histograms["leak_score"]


# --- a real browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Selenium, never letting Selenium Manager download.

    Skips when Chromium or its driver is missing, unless INTEGRITY_REQUIRE_BROWSER=1 (CI).
    """
    require_browser()
    yield from headless_chromium(1400, 2000)


_IMAGES_JS = """return Array.from(document.images).map(i => {
  const r = i.getBoundingClientRect();
  return {cls: i.className, complete: i.complete, natural: i.naturalWidth,
          width: r.width, height: r.height};
});"""
_FIRST_THUMB_JS = """const t = document.querySelector('img.thumb');
t.scrollIntoView({block: 'center'});
const r = t.getBoundingClientRect();
return [r.left, r.top, r.width, r.height, window.devicePixelRatio];"""


def _coloured_pixels(image: Image.Image) -> int:
    """Pixels of a saturated colour: the demo's shapes, not page white or grey text."""
    saturation = image.convert("RGB").convert("HSV").getchannel("S")
    return sum(saturation.histogram()[64:])


def test_report_renders_in_headless_chromium(browser, report):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = ARTIFACTS / "report.html"
    page.write_text(report, encoding="utf-8")
    browser.get(page.as_uri())
    images = browser.execute_script(_IMAGES_JS)
    thumbs = [image for image in images if image["cls"] == "thumb"]
    histograms = [image for image in images if image["cls"] == "histogram"]
    assert len(thumbs) == report.count('<img class="thumb"') > 0
    assert len(histograms) == report.count('<img class="histogram"') > 0
    assert all(image["complete"] and image["natural"] > 0 for image in images), images
    assert all(image["width"] > 0 and image["height"] > 0 for image in thumbs)

    browser.save_screenshot(str(ARTIFACTS / "report.png"))
    with Image.open(ARTIFACTS / "report.png") as top:
        assert ImageStat.Stat(top.convert("L")).stddev[0] > 20  # not a blank page

    left, top_edge, width, height, scale = browser.execute_script(_FIRST_THUMB_JS)
    browser.save_screenshot(str(ARTIFACTS / "report-thumbnail.png"))
    with Image.open(ARTIFACTS / "report-thumbnail.png") as shot:
        box = tuple(round(v * scale) for v in (left, top_edge, left + width, top_edge + height))
        thumb = shot.crop(box)
    assert thumb.width > 0 and thumb.height > 0
    assert _coloured_pixels(thumb) >= 20  # the demo's coloured shapes were painted


def test_the_over_audit_section_ranks_slices_and_shows_what_they_lost(audits, report):
    audit, facts = audits["model"], audits["model_audit"]
    slices = removal_by_slice(slice_rows(facts["pairs"], audit["verdicts"]))
    assert set(slices["kind"]) == {"question_template", "image_cluster"}
    # The rates agree with the verdicts: a template's removed rows are its rows not kept.
    templates = facts["pairs"].select("example_id", key="div_question_template").unique()
    joined = templates.join(audit["verdicts"], on="example_id")
    for row in slices.filter(pl.col("kind") == "question_template").head(5).iter_rows(named=True):
        members = joined.filter(pl.col("key") == row["key"])
        assert row["rows"] == members.height
        assert row["kept"] == (members["verdict"] == "keep").sum()
    section = report[report.index('<section class="fairness">'):]
    section = section[:section.index("</section>")]
    assert f'<tr class="this" data-source="{SOURCE}"><td><b>{SOURCE}</b></td>' in section
    assert '<tr data-source="other"><td>other</td><td>10</td><td>9</td><td>1</td>' in section
    top = facts["extra"]["most_removed"]
    assert top and all(row["rows"] >= MIN_SLICE_ROWS for row in top)
    first = top[0]
    assert f"{first['rows'] - first['kept']} of {first['rows']} removed" in section
    # Each most removed slice shows its removed rows, image ones with a thumbnail.
    assert section.count('<figure class="slice-example"') > 0
    assert '<img class="thumb"' in section
    diversity = facts["extra"]["diversity"]
    assert f"<td>{diversity['question_templates']}</td>" in section
    assert 0 < diversity["cluster_coverage"] <= 1


def test_scores_read_as_numbers_and_hashes_short():
    """The report printed values like 2.39e-07 and full 64-character hashes."""
    from integrity.report.audit_html import _format

    assert _format(2.39e-07) == "0.000" and _format(0.12345) == "0.123"
    assert _format(12345.678) == "12,345.678"
    digest = "ab" * 32
    assert _format(digest) == "abababababab…"
    assert _format(True) == "yes" and _format(None) is None


# --- hostile data on every report --------------------------------------------------------------

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


def _assert_inert(page: str, shown: list[str], in_attributes: list[str] = ()) -> None:
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


def _raw(rows: list[dict]) -> pl.DataFrame:
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


def _hostile_image(folder: Path) -> tuple[str, str]:
    """A readable image whose file name is hostile (a name holds no '/'), and its sha256."""
    image = folder / ('x"><img src=x onerror=alert(1)>&amp;' + ".png")
    Image.new("RGB", (40, 30), (220, 30, 30)).save(image)
    return str(image), hashlib.sha256(image.read_bytes()).hexdigest()


def test_hostile_text_everywhere_stays_text_in_the_audit_report(tmp_path):
    readable, digest = _hostile_image(tmp_path)
    missing = str(tmp_path / "gone" / (HOSTILE + ".png"))  # its '/' make folders: never read
    rows = [{"example_id": f"id-{n}{HOSTILE}", "question": f"question-{n}{HOSTILE}",
             "answer": f"answer-{n}{HOSTILE}", "caption": f"caption-{n}{HOSTILE}",
             "image_uri": uri, "image_sha256": sha}
            for n, (uri, sha) in enumerate([(readable, digest), (missing, None), (None, None)])]
    raw = _raw(rows)
    ids = raw["example_id"]
    scored = pl.DataFrame({"example_id": ids, "leak_score": [0.9, 0.8, None],
                           f"note{HOSTILE}": [f"score{HOSTILE}"] * 3})
    verdicts = pl.DataFrame({"example_id": ids, "verdict": ["drop", "review", "keep"],
                             "reasons": [[f"reason{HOSTILE}"], ["caption_derived"], []],
                             "modality": raw["modality"]})
    page = render_audit_report(
        source=f"source{HOSTILE}", version=f"version{HOSTILE}", raw=raw, scored=scored,
        verdicts=verdicts, policy=Policy(), model={"model_id": f"model{HOSTILE}",
                                                    "model_fit_auc": 0.91})
    flagged = rows[:2]
    _assert_inert(
        page,
        shown=[f"source{HOSTILE}", f"version{HOSTILE}", f"model{HOSTILE}", f"reason{HOSTILE}",
               f"note{HOSTILE}", f"score{HOSTILE}",
               *(row[field] for row in flagged
                 for field in ("example_id", "question", "answer", "caption"))],
        in_attributes=[readable, missing, f"id-0{HOSTILE}", f"id-1{HOSTILE}",
                       f"reason-reason{HOSTILE}"])
    sections = ReportPage(page).sections
    assert sections[f"reason{HOSTILE}"][0]["media"] == ["thumb"]
    assert sections["caption_derived"][0]["media"] == ["image-unavailable"]


def test_hostile_text_everywhere_stays_text_in_the_calibration_report():
    sources = [f"source-a{HOSTILE}", f"source-b{HOSTILE}"]
    estimates = pl.DataFrame([
        {"scope": scope, "flaw_class": flaw_class, "metric": metric, "value": 0.8, "low": 0.6,
         "high": 0.9, "labelled": 10, "labelled_hits": 8}
        for scope in ["all", *sources]
        for flaw_class, metric in [("caption_derived", "precision"), ("any", "rate")]])
    curve = pl.DataFrame({"threshold": [0.9, 0.7, 0.5], "precision": [1.0, 0.9, 0.6],
                          "recall": [0.2, 0.6, 1.0]})
    judged = {
        "labelled": pl.DataFrame({"source": sources * 2}),
        "estimates": estimates,
        "curves": {"leak_score": curve, "grounding_margin": curve.clear()},
        "recommended": {"leak_score": {"threshold": 0.7, "precision": 0.9, "recall": 0.6},
                        "grounding_margin": None},
    }
    page = render_calibration_report(version=f"version{HOSTILE}", judged=judged,
                                     policy=Policy())
    _assert_inert(page, shown=[f"Calibration version{HOSTILE}", *sources],
                  in_attributes=sources)
    assert "No curve for grounding_margin (no labelled caption_derived row)." in page
    assert 'data-signal="leak_score"' in page


def test_hostile_text_everywhere_stays_text_in_the_fairness_section(tmp_path):
    readable, digest = _hostile_image(tmp_path)
    missing = str(tmp_path / "gone" / (HOSTILE + ".png"))
    images = [(readable, digest), (missing, None)] + [(None, None)] * (MIN_SLICE_ROWS - 1)
    rows = [{"example_id": f"id-{n}{HOSTILE}", "question": f"q-{n}{HOSTILE}",
             "answer": f"a-{n}{HOSTILE}", "image_uri": uri, "image_sha256": sha}
            for n, (uri, sha) in enumerate(images)]
    raw = _raw(rows)
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
    _assert_inert(
        section,
        shown=[f"this{HOSTILE}", f"other{HOSTILE}", clip(template, 60), clip(cluster, 60),
               f"reason{HOSTILE}", clip(f"q-0{HOSTILE}", 120), clip(f"q-1{HOSTILE}", 120)],
        in_attributes=[readable, missing, f"id-0{HOSTILE}", f"id-1{HOSTILE}",
                       f"this{HOSTILE}", f"other{HOSTILE}"])
    assert section.count('<img class="thumb"') == 2  # one slice example per kind
    assert section.count(">image unavailable</div>") == 2


# --- no HTML outside the templates -------------------------------------------------------------

HTML_ELEMENTS = frozenset(
    "a abbr article aside b body br button caption code col dd details div dl dt em fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 head header hr html i iframe img input "
    "label li link main meta nav ol option p pre script section select small span strong style "
    "sub summary sup svg table tbody td textarea tfoot th thead title tr u ul video".split())
_TAG = re.compile(r"<(?:!doctype|/?([A-Za-z][A-Za-z0-9]*))", re.IGNORECASE)


def html_tags(text: str) -> list[str]:
    """The HTML tags ``text`` holds; not LLaVA's ``<image>`` token nor ``a < b``."""
    return [match.group(0) for match in _TAG.finditer(text)
            if match.group(1) is None or match.group(1).lower() in HTML_ELEMENTS]


def html_building(source: str, filename: str = "<string>") -> list[str]:
    """``line: how`` for every place ``source`` formats a string holding an HTML tag (f-string,
    str.format, %) or escapes by hand with html.escape: what the templates are for."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.JoinedStr):
            literal = "".join(part.value for part in node.values
                              if isinstance(part, ast.Constant))
            how = "f-string"
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "format" and isinstance(node.func.value, ast.Constant)):
            literal, how = str(node.func.value.value), "str.format"
        elif (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod)
              and isinstance(node.left, ast.Constant)):
            literal, how = str(node.left.value), "%"
        elif (isinstance(node, ast.Attribute) and node.attr == "escape"
              and isinstance(node.value, ast.Name) and node.value.id == "html"):
            found.append(f"{node.lineno}: html.escape")
            continue
        elif isinstance(node, ast.ImportFrom) and node.module == "html":
            found += [f"{node.lineno}: from html import {alias.name}" for alias in node.names
                      if alias.name == "escape"]
            continue
        else:
            continue
        if html_tags(literal):
            found.append(f"{node.lineno}: {how} {html_tags(literal)[0]}")
    return sorted(found, key=lambda hit: int(hit.split(":")[0]))


def test_the_html_finder_sees_every_form():
    source = (
        "import html\n"
        "from html import escape\n"
        "a = f'<td>{x}</td>'\n"
        "b = '<p>{}</p>'.format(x)\n"
        "c = '<b>%s' % x\n"
        "d = html.escape(x)\n"
        "e = f'{prefix}<image>\\n{question}'\n"  # LLaVA's image token is not HTML
        "f = f'{a} < {b}'\n"
        "g = f'<!doctype html>{x}'\n"
    )
    assert html_building(source) == ["2: from html import escape", "3: f-string <td",
                                     "4: str.format <p", "5: % <b", "6: html.escape",
                                     "9: f-string <!doctype"]


def test_no_module_builds_html_outside_the_templates():
    files = sorted((REPO / "integrity").rglob("*.py"))
    assert len(files) > 10
    offenders = {str(path.relative_to(REPO)): hits for path in files
                 if (hits := html_building(path.read_text(), str(path)))}
    assert offenders == {}


def test_the_templates_ship_with_the_package():
    """An installed wheel renders reports only if pyproject lists the templates as package data
    and the environment escapes them."""
    import tomllib

    from integrity.report.render import ENVIRONMENT

    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["integrity"]
    templates = sorted((REPO / "integrity" / "report" / "templates").iterdir())
    assert templates
    for template in templates:
        relative = template.relative_to(REPO / "integrity")
        assert any(relative.match(pattern) for pattern in patterns), relative
        assert ENVIRONMENT.autoescape(template.name) is True
    assert ENVIRONMENT.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
