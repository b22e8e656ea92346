"""Front-end assets come from this repository or installed packages, never a CDN."""

from __future__ import annotations

import hashlib
from pathlib import Path

import plotly
from django.contrib.staticfiles import finders

VENDORED = Path(__file__).resolve().parents[2] / "static" / "vendor" / "plotly" / "plotly.min.js"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_it_vendors_the_plotly_js_of_the_installed_plotly_package():
    packaged = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    assert digest(VENDORED) == digest(packaged), "copy the new plotly.min.js: see static/vendor/README.md"


def test_it_finds_every_script_the_pages_load():
    for path in (
        "django_htmx/htmx-2.min.js",
        "django_htmx/ext/hx-ws-2.min.js",
        "vendor/plotly/plotly.min.js",
        "js/live.js",
        "js/usage.js",
        "css/app.css",
    ):
        assert finders.find(path), path
