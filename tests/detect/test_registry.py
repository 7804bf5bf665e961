"""The detector registry: a new detector is one registration, and every consumer sees it.

A toy detector (the share of an answer's letters in capitals) is registered for the duration of
each test; policy validation, scoring, row roll-up, audit reasons and actions, report
histograms, calibration curves and the audited checks must all pick it up with no other edit.
"""

import polars as pl
import pytest
from pydantic import BaseModel, ConfigDict, Field

# Imported before any toy registers: the code location lists its blocking checks at import
# (assets.audited.AUDITED_SFT_BLOCKING_CHECKS), and a toy seen then would stay in the list.
from checks.audited import none_kept_check
from integrity.decide.audit import audit_rows, blocking_check_names
from integrity.decide.calibration import estimate, threshold_curve
from integrity.detect import score_pairs, score_rows
from integrity.detect.registry import (
    Detector,
    Flaw,
    Threshold,
    flaw_classes,
    histogram_signals,
    register,
    registered,
    thresholds,
)
from integrity.decide.policy import Policy, PolicyError, load_policy
from integrity.report.audit_html import signal_histograms
from tests.detect.conftest import COLORS, make_raw, shape_row


class Shouting(BaseModel):
    model_config = ConfigDict(extra="forbid")
    caps_share_min: float = Field(0.8, ge=0.0, le=1.0)


def _caps_share(context) -> pl.DataFrame:
    letters = pl.col("answer").str.count_matches(r"\p{L}")
    capitals = pl.col("answer").str.count_matches(r"\p{Lu}")
    return context.pairs.select(shout_caps_share=(capitals / letters).cast(pl.Float64))


TOY = Detector(
    name="shout",
    description="answers written in capitals",
    columns={"shout_caps_share": "higher"},
    score=_caps_share,
    flaws=(Flaw("shouting", Shouting, description="an answer in capitals", action="review",
                blocking_none_kept=True,
                flag=lambda s, col: col("shout_caps_share") >= s.caps_share_min),),
    thresholds=(Threshold("shout_caps_share", "signals.shouting.caps_share_min", ">=",
                          "shouting"),),
)
ROWS = [
    {"id": "calm", "qa": [("What is 2 plus 2?", "Four.")]},
    {"id": "loud", "qa": [("What is 2 plus 3?", "Five."), ("Sure?", "YES, FIVE!")]},
]


@pytest.fixture
def toy():
    with registered(TOY) as detector:
        yield detector


def test_the_policy_validates_the_new_section_and_action(toy, tmp_path):
    assert "shouting" in flaw_classes() and Policy().signals.shouting.caps_share_min == 0.8
    good = tmp_path / "good.yaml"
    good.write_text("signals:\n  shouting:\n    caps_share_min: 0.5\n"
                    "audit:\n  actions:\n    shouting: drop\n")
    policy = load_policy(good)
    assert policy.signals.shouting.caps_share_min == 0.5
    assert policy.audit.actions.shouting == "drop"
    bad = tmp_path / "bad.yaml"
    bad.write_text("signals:\n  shouting:\n    caps_share_min: 3\n")
    with pytest.raises(PolicyError, match=r"signals\.shouting\.caps_share_min"):
        load_policy(bad)
    bad.write_text("audit:\n  actions:\n    shouting: shout\n")
    with pytest.raises(PolicyError, match=r"audit\.actions\.shouting"):
        load_policy(bad)


def test_an_unregistered_section_is_named_as_unknown(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("signals:\n  shouting:\n    caps_share_min: 0.5\n")
    with pytest.raises(PolicyError, match=r"signals\.shouting: no registered detector"):
        load_policy(path)


def test_scores_roll_up_and_the_audit_acts_on_the_new_class(toy):
    pairs = score_pairs(make_raw(ROWS))
    assert pairs["shout_caps_share"].to_list() == [0.25, 0.25, 1.0]
    rows = score_rows(pairs)
    assert dict(zip(rows["example_id"], rows["shout_caps_share"], strict=True)) == {
        "calm": 0.25, "loud": 1.0}
    result = audit_rows(pairs, Policy(), rows_in=2, quarantined=0)
    verdicts = {r["example_id"]: (r["verdict"], r["reasons"])
                for r in result.verdicts.iter_rows(named=True)}
    assert verdicts == {"calm": ("keep", []), "loud": ("review", ["shouting"])}
    dropping = Policy.model_validate({"audit": {"actions": {"shouting": "drop"}}})
    assert audit_rows(pairs, dropping, rows_in=2, quarantined=0).counts()["drop"] == 1


def test_the_report_and_calibration_see_the_new_signal(toy):
    assert thresholds()["shout_caps_share"].value(Policy()) == 0.8
    assert "shout_caps_share" in histogram_signals()
    pairs = score_pairs(make_raw(ROWS))
    rows = score_rows(pairs)
    verdicts = audit_rows(pairs, Policy(), rows_in=2, quarantined=0).verdicts
    assert 'data-signal="shout_caps_share"' in signal_histograms(rows, verdicts, Policy())
    labelled = rows.select("example_id", "shout_caps_share").with_columns(
        source=pl.lit("t"), stratum=pl.lit("all"), weight=pl.lit(1.0),
        labels=pl.Series([[], ["shouting"]], dtype=pl.List(pl.String)),
        flagged=pl.Series([[], ["shouting"]], dtype=pl.List(pl.String)))
    curve = threshold_curve(labelled, "shout_caps_share")
    assert curve.row(0, named=True)["precision"] == 1.0
    precision = estimate(labelled, confidence=0.95).filter(
        (pl.col("flaw_class") == "shouting") & (pl.col("metric") == "precision")
        & (pl.col("scope") == "all"))
    assert precision["value"].to_list() == [1.0]


def test_a_blocking_none_kept_check_is_built_for_the_new_class(toy):
    assert "audited_sft_no_shouting" in blocking_check_names()
    check = none_kept_check(TOY.flaws[0])
    assert [key.name for key in check.check_keys] == ["audited_sft_no_shouting"]
    assert check.get_spec_for_check_key(next(iter(check.check_keys))).blocking


def test_registration_refuses_clashes_and_unknown_dependencies(toy):
    with pytest.raises(ValueError, match="registered already"):
        register(TOY)
    with pytest.raises(ValueError, match="belong to another detector"):
        register(Detector(name="other", description="", columns={"shout_caps_share": "higher"},
                          score=_caps_share))
    with pytest.raises(ValueError, match="register those first"):
        register(Detector(name="late", description="", columns={"late_x": "higher"},
                          score=_caps_share, after=("nope",)))


def _rich_rows(images) -> list[dict]:
    """Image rows with captions, systems and a contradiction, text rows, a copy: every
    detector has something to read."""
    rows = [shape_row(images, color, f"{color.capitalize()}.", layout=layout,
                      caption=f"two {color} circles") for color in COLORS for layout in (0, 1)]
    rows.append(shape_row(images, "red", "Blue.", row_id="contra"))
    rows.append({**rows[0], "id": "copy"})
    return rows + [{"id": "text", "system": "Be brief.", "qa": [("What is 2 plus 2?", "Four.")]}]


def test_scoring_lets_each_column_go_once_no_detector_left_reads_it(encoder, images,
                                                                     monkeypatch):
    """At 1M rows the QA pairs' prompts, captions, contexts and their words (0.6 GB) were held
    to the end of scoring, at its peak. Each is let go after its last reader, and the scores
    are those of a run that holds every column."""
    import dataclasses

    import integrity.detect as detect
    from integrity.detect.pairs import qa_pairs
    from integrity.detect.registry import detectors

    raw = make_raw(_rich_rows(images))
    context = detect.scoring_context(qa_pairs(raw), encoder=encoder)
    scored = detect._run_detectors(context)
    assert set(context.pairs.columns) == set(detect.PAIR_KEYS)

    every_column = tuple(dataclasses.replace(d, reads=None) for d in detectors())
    monkeypatch.setattr(detect, "detectors", lambda: every_column)
    holding = detect.scoring_context(qa_pairs(raw), encoder=encoder)
    assert detect._run_detectors(holding).equals(scored)


def test_every_detector_names_the_columns_it_reads():
    from integrity.detect.pairs import qa_pairs
    from integrity.detect.registry import detectors

    columns = set(qa_pairs(make_raw(ROWS)).columns)
    for detector in detectors():
        assert detector.reads is not None, detector.name
        assert set(detector.reads) <= columns, (detector.name, set(detector.reads) - columns)


def test_a_detector_that_reads_a_column_it_did_not_name_fails_loudly():
    """A column is let go after the last detector that names it: reading it later is an
    error, never a silently different score."""
    sneaky = Detector(name="sneaky", description="", columns={"sneaky_caption": "first"},
                      score=lambda context: context.pairs.select(sneaky_caption="caption"),
                      reads=("answer",))
    with registered(sneaky), pytest.raises(pl.exceptions.ColumnNotFoundError, match="caption"):
        score_pairs(make_raw(ROWS))
