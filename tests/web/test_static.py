"""The page's static files as a maintainer finds them: every view wired (tab, <main>, module), every JS module
small enough to read, every module the page imports present, and docs/web.md's screenshots on disk."""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "src" / "personad" / "web" / "static"
DOCS = Path(__file__).resolve().parents[2] / "docs"
MAX_MODULE_LINES = 400
VIEWS = ("chat", "personas", "adapters", "brain", "academy", "jobs")


def test_every_js_module_stays_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (STATIC / "js").glob("*.js")}
    assert sizes and not (STATIC / "app.js").exists()
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_every_import_resolves() -> None:
    for module in (STATIC / "js").glob("*.js"):
        for target in re.findall(r'^import .*?"(\.{1,2}/[^"]+)";', module.read_text(), re.M):
            assert (module.parent / target).resolve().is_file(), f"{module.name} imports a missing {target}"


def test_every_view_has_a_tab_a_main_and_a_module() -> None:
    html = (STATIC / "index.html").read_text()
    main_js = (STATIC / "js" / "main.js").read_text()
    for view in VIEWS:
        assert f'<a href="#/{view}" data-view="{view}">' in html
        assert re.search(rf'<main [^>]*data-view="{view}"', html)
        if view != "chat":
            assert f'import "./{view}-view.js";' in main_js
            assert f'registerView("{view}"' in (STATIC / "js" / f"{view}-view.js").read_text()
    for sheet in re.findall(r'href="/static/([^"]+\.css)"', html):
        assert (STATIC / sheet).is_file(), sheet


def test_docs_screenshots_exist() -> None:
    images = re.findall(r"\]\((images/web/[^)]+\.png)\)", (DOCS / "web.md").read_text())
    assert len(images) >= 10
    for image in images:
        assert (DOCS / image).stat().st_size > 2000, image
