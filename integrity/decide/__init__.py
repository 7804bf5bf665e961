"""Decide: what the evidence means under a policy. ``policy`` (the YAML thresholds, validated, and
the evaluators checks call), ``audit`` (every scored row's verdict, keep, review or drop, with
its reasons), ``review`` (human verdicts in and out), ``calibration`` (the auditor's own
precision and recall from a labelled sample), ``fairness`` (what an audit removes, slice by
slice) and ``gate`` (the blocking checks as plain functions, which Dagster and the CLI both run).
Decisions read detector columns; they never compute evidence themselves.
"""
