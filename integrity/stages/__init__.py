"""Stages: each pipeline stage as one call, inputs in, one committed store version out, one
module a stage (``ingest``, ``score``, ``index``, ``audit``, ``mix``, ``train``, ``rl_probe``,
``calibrate``). Dagster's
assets and the CLI both call these and nothing else, so a version made from the command line
is the version Dagster makes for the same input. Stages compose the folders below them
(ingest, detect, decide, mix, report, store); nothing below imports a stage.
"""

from integrity.stages.audit import audit_to_store, latest_audits
from integrity.stages.calibrate import (
    CALIBRATION_CODE_VERSION,
    calibrate_to_store,
    calibration_population,
    calibration_sample,
    current_calibration,
    judge_auditor,
    labelled_rows,
)
from integrity.stages.index import index_to_store
from integrity.stages.ingest import ingest_to_store, latest_raw_summaries
from integrity.stages.mix import mix_to_store
from integrity.stages.rl_probe import release_for_rl, rl_probe_to_store
from integrity.stages.score import make_encoder, score_to_store
from integrity.stages.train import checkpoint_to_store

__all__ = [
    "CALIBRATION_CODE_VERSION",
    "audit_to_store",
    "calibrate_to_store",
    "calibration_population",
    "calibration_sample",
    "checkpoint_to_store",
    "current_calibration",
    "index_to_store",
    "ingest_to_store",
    "judge_auditor",
    "labelled_rows",
    "latest_audits",
    "latest_raw_summaries",
    "make_encoder",
    "mix_to_store",
    "release_for_rl",
    "rl_probe_to_store",
    "score_to_store",
]
