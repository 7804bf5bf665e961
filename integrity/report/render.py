"""The one Jinja2 environment the HTML reports render through.

Templates live in ``integrity/report/templates`` (package data, so an installed wheel renders
too). Autoescape is on for every ``.html`` template: a value reaches the page as text unless the
code made it ``Markup``, and only rendered templates are (a section handed to a page).
"""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup


def clip(value: object, limit: int | None = None) -> str:
    """``value`` as text ("" for None), cut to ``limit`` characters; the template escapes it."""
    shown = "" if value is None else str(value)
    if limit is not None and len(shown) > limit:
        shown = shown[:limit] + "…"
    return shown


ENVIRONMENT = Environment(
    loader=PackageLoader("integrity.report", "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    undefined=StrictUndefined,  # a misspelt name fails the render instead of printing nothing
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.filters["clip"] = clip


def render(template: str, **context: object) -> Markup:
    """``template`` rendered with ``context``, as HTML another template may embed."""
    return Markup(ENVIRONMENT.get_template(template).render(**context))
