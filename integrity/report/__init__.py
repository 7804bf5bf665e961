"""Report: what a stage did, for people. ``summaries`` (markdown for Dagster metadata and the
CLI), ``audit_html`` (one source's audit, flagged examples shown with their images),
``calibration`` and ``fairness`` (the auditor's precision and the over-audit sections). Reports
read the store's versions and never change them. The HTML is Jinja2 templates in ``templates/``
(package data), rendered through the one autoescaping environment of ``render``.
"""
