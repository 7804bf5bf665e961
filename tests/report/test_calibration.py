"""The auditor's calibration as HTML (integrity/report/calibration.py): one estimates table
row per flaw class with the policy's action and the intervals, one precision/recall curve per
signal that has labelled rows of its class, the rest named, and the page attached to each
calibration version with a table per source. The judgements are made by the real estimators
(integrity/decide/calibration.py) from a small labelled sample; and hostile text stays text."""

import base64
import io
from html.parser import HTMLParser

import polars as pl
import pytest
from PIL import Image

from integrity.decide.calibration import (
    design_weights,
    estimate,
    recommended_threshold,
    threshold_curve,
)
from integrity.decide.policy import Policy
from integrity.detect.registry import flaw_classes
from integrity.report.calibration import calibration_section, render_calibration_report
from tests.report.hostile import HOSTILE, assert_inert

LEAK = [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05]


class Tables(HTMLParser):
    """What the estimates tables show: scope -> flaw class (or "any flaw") -> cells, each
    (text, title); and the curve images (signal -> alt, src)."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.scopes: dict[str, dict[str, list[tuple[str, str | None]]]] = {}
        self.curves: dict[str, tuple[str, str]] = {}
        self._row: list | None = None
        self._cell: list | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table" and "data-scope" in found:
            self._scope = self.scopes.setdefault(found["data-scope"], {})
        elif tag == "tr":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ["", found.get("title")]
            self._row.append(self._cell)
        elif tag == "img" and "curve" in (found.get("class") or ""):
            self.curves[found["data-signal"]] = (found["alt"], found["src"])

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[0] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        elif tag == "tr" and self._row:
            cells = [(" ".join(text.split()), title) for text, title in self._row]
            self._scope[cells[0][0]] = cells[1:]
            self._row = None


def _judged(policy: Policy, *, recommended: bool = True) -> dict:
    """What judge_auditor returns, from 12 labelled rows of two sources: caption_derived flagged
    by leak_score >= 0.5 (one flagged row clean, one unflagged row flawed), one duplicate the
    auditor missed, no blind_answerable row (its curve has no recall)."""
    labels = [["caption_derived"]] * 6 + [[], ["caption_derived"], [], ["duplicate"], [], []]
    flagged = [["caption_derived"] if value >= 0.5 else [] for value in LEAK]
    labelled = design_weights(pl.DataFrame({
        "example_id": [f"r{i}" for i in range(len(LEAK))],
        "source": ["b", "a"] * (len(LEAK) // 2),
        "stratum": [classes[0] if classes else "unflagged" for classes in flagged],
        "stratum_rows": [10 if classes else 100 for classes in flagged],
        "labels": labels,
    })).with_columns(flagged=pl.Series(flagged), leak_score=pl.Series(LEAK),
                     blind_prior=pl.Series([0.1 * i for i in range(len(LEAK))]))
    curves = {name: threshold_curve(labelled, name) for name in ("leak_score", "blind_prior")}
    target = policy.calibration.target_precision
    return {"labelled": labelled,
            "estimates": estimate(labelled, confidence=policy.calibration.confidence),
            "curves": curves,
            "recommended": {name: recommended_threshold(curve, target_precision=target)
                            if recommended else None for name, curve in curves.items()}}


def _interval(row: dict | None) -> str:
    if row is None or row["value"] is None:
        return "-"
    return f"{row['value']:.2f} [{row['low']:.2f}, {row['high']:.2f}]"


def _expected_rows(estimates: pl.DataFrame, scope: str, policy: Policy) -> dict[str, list]:
    """The table the section must show for ``scope``, computed from the estimates frame."""
    found = {(row["flaw_class"], row["metric"]): row
             for row in estimates.filter(pl.col("scope") == scope).iter_rows(named=True)}
    actions = policy.audit.actions.model_dump()
    rows = {name: [actions[name], *(_interval(found.get((name, metric)))
                                    for metric in ("precision", "recall", "rate"))]
            for name in flaw_classes()}
    rows["any flaw"] = ["", "", "", _interval(found[("any", "rate")])]
    return rows


def test_the_section_shows_every_flaw_class_with_the_policy_action_and_its_intervals():
    policy = Policy()
    judged = _judged(policy)
    tables = Tables(calibration_section("v1", judged, policy))
    assert list(tables.scopes) == ["all"]
    shown = {name: [text for text, _ in cells] for name, cells in tables.scopes["all"].items()}
    assert list(shown) == [*flaw_classes(), "any flaw"]
    assert shown == _expected_rows(judged["estimates"], "all", policy)
    # Measured cells say what they rest on; a class never flagged has no precision.
    caption = dict(zip(("action", "precision", "recall", "rate"),
                       tables.scopes["all"]["caption_derived"], strict=True))
    assert caption["precision"][1] == "6 of 7 labelled rows"
    assert tables.scopes["all"]["blind_answerable"][1] == ("-", None)


def test_the_section_names_the_version_the_sample_and_the_policy():
    policy = Policy.model_validate({"audit": {"actions": {"contradiction": "drop"}}})
    section = calibration_section("cal-42", _judged(policy), policy)
    assert "calibration <code>cal-42</code> · 12 labelled rows from 2 sources · policy " \
        f"<code>{policy.digest()}</code>" in section
    assert policy.digest() != Policy().digest()
    assert Tables(section).scopes["all"]["contradiction"][0] == ("drop", None)


def test_a_signal_with_labelled_rows_of_its_class_gets_a_curve_and_the_others_are_named():
    policy = Policy()
    judged = _judged(policy)
    judged["curves"]["image_min_side"] = judged["curves"]["leak_score"].clear()
    judged["recommended"]["image_min_side"] = None
    section = calibration_section("v1", judged, policy)
    curves = Tables(section).curves
    assert list(curves) == ["leak_score"]
    alt, src = curves["leak_score"]
    cut = judged["recommended"]["leak_score"]
    assert alt == (f"signals.caption_derived.leak_score_min = 0.5; recommended: precision "
                   f"{cut['precision']:.2f} at {cut['threshold']:.3g} (recall {cut['recall']:.2f})")
    assert src.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100
    assert "No curve for blind_prior (no labelled blind_answerable row), image_min_side (no " \
        "labelled image_defect row)." in section


def test_a_curve_where_no_cut_reaches_the_target_precision_says_so():
    policy = Policy.model_validate({"calibration": {"target_precision": 0.95}})
    alt, _ = Tables(calibration_section("v1", _judged(policy, recommended=False),
                                        policy)).curves["leak_score"]
    assert alt == ("signals.caption_derived.leak_score_min = 0.5; recommended: no cut reaches "
                   "precision 0.95 on this sample")


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_the_page_adds_one_estimates_table_per_source_in_name_order(confidence):
    policy = Policy.model_validate({"calibration": {"confidence": confidence}})
    judged = _judged(policy)
    page = render_calibration_report(version="v7", judged=judged, policy=policy)
    assert page.startswith("<!doctype html>") and "<title>Calibration v7</title>" in page
    tables = Tables(page)
    assert list(tables.scopes) == ["all", "a", "b"]
    for scope in ("a", "b"):
        shown = {name: [text for text, _ in cells]
                 for name, cells in tables.scopes[scope].items()}
        assert shown == _expected_rows(judged["estimates"], scope, policy)
    assert page.count(f"Estimates [{confidence:.0%} interval") == 3


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
    assert_inert(page, shown=[f"Calibration version{HOSTILE}", *sources],
                  in_attributes=sources)
    assert "No curve for grounding_margin (no labelled caption_derived row)." in page
    assert 'data-signal="leak_score"' in page
