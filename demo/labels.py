"""The demo's ground truth as reviewers' labels: what a human would say of each sampled row.

On the demo world the injected flaws are known, so the ground truth can stand in for reviewers
when calibrating the auditor (``python -m demo label``), and the true precision and recall of
every detector can be computed over the whole corpus to check the sampled estimates against.
"""

from __future__ import annotations

import json
from pathlib import Path

from integrity.decide.calibration import CLEAN

# The flaw class of the audit policy behind each flaw the generator injects. Broken rows are
# quarantined at ingest and never reach a sample.
GROUND_TRUTH_CLASSES: dict[str, str] = {
    "caption_derived": "caption_derived",
    "blind_answer_in_question": "blind_answerable",
    "blind_constant_prior": "blind_answerable",
    "pref_flattened_marker": "preference_pollution",
    "pref_flattened_plain": "preference_pollution",
    "preference_pair": "preference_pollution",
    "contradictory_duplicate": "contradiction",
    "exact_duplicate": "duplicate",
    "templated_copy": "duplicate",
    "near_duplicate_image": "duplicate",
}


def truth_classes(ground_truth: Path) -> dict[str, list[str]]:
    """example_id (as the demo file writes it) -> the flaw classes of its injected flaws."""
    classes = {}
    with ground_truth.open() as handle:
        for line in handle:
            record = json.loads(line)
            classes[record["example_id"]] = sorted(
                {GROUND_TRUTH_CLASSES[f] for f in record["flaws"] if f in GROUND_TRUTH_CLASSES})
    return classes


def label_of(example_id: str, classes: dict[str, list[str]]) -> list[str] | str:
    """The reviewer's label of one raw_sft row: its classes, or ``clean``. Preference rows
    (``<id>#chosen``) carry their record's flaws."""
    found = classes.get(example_id, classes.get(example_id.split("#", 1)[0]))
    if found is None:
        raise KeyError(f"{example_id} is not in the demo's ground truth")
    return found or CLEAN


def label_sample(sample: Path, ground_truth: Path, out: Path) -> int:
    """Copy the sample file to ``out`` with every ``label`` filled in from the ground truth;
    returns the number of rows labelled."""
    classes = truth_classes(ground_truth)
    lines = []
    for line in sample.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            record["label"] = label_of(record["example_id"], classes)
            lines.append(json.dumps(record))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(line + "\n" for line in lines))
    return len(lines)
