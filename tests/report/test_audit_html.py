"""The HTML audit report, rendered from a real audit of a small demo corpus.

The corpus is generated, ingested, scored with the shipped reference CLIP (and once without a
model) and audited in a temporary store once per module; the page is parsed for its structure
and opened in headless Chromium to prove every image actually renders. Each of the three reports
is also rendered from hostile text (the calibration report and the fairness section in their
own test modules; the templates and the rule that no module builds HTML outside them in
test_render.py).
"""

import hashlib
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
    removal_by_slice,
    slice_rows,
)
from integrity.report.fairness import fairness_section
from integrity.report.audit_html import render_audit_report
from integrity.ingest.schema import RAW_SFT_SCHEMA
from integrity.names import AUDITED_SFT, RAW_SFT, SCORED_SFT
from integrity.stages import audit_to_store, ingest_to_store, make_encoder, score_to_store
from integrity.store.versions import VersionStore
from tests.browser import headless_chromium, require_browser
from tests.report.hostile import HOSTILE, assert_inert, hostile_image, raw_frame

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


# --- hostile data -----------------------------------------------------------------------------


def test_hostile_text_everywhere_stays_text_in_the_audit_report(tmp_path):
    readable, digest = hostile_image(tmp_path)
    missing = str(tmp_path / "gone" / (HOSTILE + ".png"))  # its '/' make folders: never read
    rows = [{"example_id": f"id-{n}{HOSTILE}", "question": f"question-{n}{HOSTILE}",
             "answer": f"answer-{n}{HOSTILE}", "caption": f"caption-{n}{HOSTILE}",
             "image_uri": uri, "image_sha256": sha}
            for n, (uri, sha) in enumerate([(readable, digest), (missing, None), (None, None)])]
    raw = raw_frame(rows)
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
    assert_inert(
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
