"""HTML pages from the package's Jinja2 templates, and the package's own CSS and JavaScript.

Nothing is fetched from anywhere else: no CDN, no web font, no image. Charts are inline SVG
(`scoring.svg_charts`). The Content-Security-Policy says so to the browser, too.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from scoring.svg_charts import STATUS_COLOURS

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make form posts say Origin: null
    "Cache-Control": "no-store",
}
STATIC_FILES = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript"}


def _finite(value: object) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _datanum(value: object) -> str:
    """A number for a data-* attribute, in full (what a test compares with the API's JSON)."""
    number = _finite(value)
    return "" if number is None else repr(number)


def _shown(template: str) -> Callable[[object], str]:
    def show(value: object) -> str:
        number = _finite(value)
        return "–" if number is None else template.format(number)

    return show


@functools.cache
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("serve.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        datanum=_datanum,
        pct=_shown("{:.1%}"),
        pct0=_shown("{:.0%}"),
        amount=_shown("{:,.0f}"),
        metric=_shown("{:.4g}"),
    )
    return environment


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A rendered page with the dashboard's security headers."""
    text = _environment().get_template(template).render(**context)
    return HTMLResponse(text, status_code=status, headers=_HEADERS)


def _status_rules() -> str:
    """The status colours of the charts, so a pill and its chart always agree."""
    return "".join(
        f".status-{status}{{background:{colour}}}\n" for status, colour in STATUS_COLOURS.items()
    )


@functools.cache
def static_file(name: str) -> tuple[bytes, str] | None:
    """One of the package's static files (content, media type); None for any other name."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        return None
    text = resources.files("serve.dashboard").joinpath("static", name).read_text("utf-8")
    if name == "dashboard.css":
        text += _status_rules()
    return text.encode("utf-8"), media_type


def static_response(name: str) -> Response | None:
    found = static_file(name)
    if found is None:
        return None
    content, media_type = found
    return Response(
        content,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
