"""The one Jinja2 environment every report renders through (integrity/report/render.py): its
templates are found and ship with the package, every value is escaped unless the code made it
Markup, a misspelt name fails the render, ``clip`` cuts text before the template escapes it; and
no module of integrity/ builds HTML outside the templates."""

import ast
import re
from pathlib import Path

import jinja2
import pytest
from markupsafe import Markup

from integrity.report.render import ENVIRONMENT, clip, render

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "integrity" / "report" / "templates"


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

    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["integrity"]
    templates = sorted((REPO / "integrity" / "report" / "templates").iterdir())
    assert templates
    for template in templates:
        relative = template.relative_to(REPO / "integrity")
        assert any(relative.match(pattern) for pattern in patterns), relative
        assert ENVIRONMENT.autoescape(template.name) is True
    assert ENVIRONMENT.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"


# --- the environment ---------------------------------------------------------------------------


def test_every_template_in_the_folder_is_found_through_the_package_and_compiles():
    names = sorted(path.name for path in TEMPLATES.glob("*.html"))
    assert {"page.html", "audit.html", "calibration.html", "fairness.html"} <= set(names)
    assert sorted(ENVIRONMENT.list_templates()) == names
    for name in names:
        assert ENVIRONMENT.get_template(name).name == name


def test_an_unknown_template_is_an_error_naming_it():
    with pytest.raises(jinja2.TemplateNotFound, match="nowhere.html"):
        render("nowhere.html")


def test_a_value_reaches_the_page_as_text_and_a_rendered_section_as_html():
    page = render("page.html", title="<b>T&C</b>")
    assert isinstance(page, Markup)
    assert "<title>&lt;b&gt;T&amp;C&lt;/b&gt;</title>" in page
    assert page.startswith("<!doctype html>")
    embed = ENVIRONMENT.from_string("<main>{{ section }}</main>")
    # What render returned is embedded as it is; the same text as a plain string is escaped.
    assert embed.render(section=page) == f"<main>{page}</main>"
    assert embed.render(section=str(page)).startswith("<main>&lt;!doctype html&gt;")


def test_a_misspelt_name_fails_the_render_instead_of_printing_nothing():
    with pytest.raises(jinja2.UndefinedError, match="title"):
        render("page.html", titel="forgot the name")


def test_clip_shows_none_as_nothing_and_cuts_long_text_with_an_ellipsis():
    assert clip(None) == "" and clip(None, 3) == ""
    assert clip("abcdef") == "abcdef"
    assert clip("abc", 3) == "abc"
    assert clip("abcd", 3) == "abc…"
    assert clip(1234.5, 4) == "1234…"  # any value, as its text
    assert not isinstance(clip("<b>"), Markup)  # plain text: the template escapes it


def test_clip_cuts_the_text_before_the_template_escapes_it():
    """Cutting the escaped text could leave half an entity (``&am``) on the page."""
    template = ENVIRONMENT.from_string("{{ value|clip(2) }}")
    assert template.render(value="&amp;") == "&amp;a…"
    assert template.render(value="<script>") == "&lt;s…"
