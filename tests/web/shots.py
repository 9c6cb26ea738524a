"""Screenshots the page tests save as test artifacts: <repo>/test-artifacts/web/<name>.png (or under
$PERSONAD_TEST_ARTIFACTS). docs/web.md shows copies of them (docs/images/web/)."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    root = Path(os.environ.get("PERSONAD_TEST_ARTIFACTS", REPO / "test-artifacts"))
    directory = root / "web"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def save_shot(target: Page | Locator, name: str, *, full_page: bool = False) -> Path:
    """Save a PNG of a page (or one element) as ``<name>.png``; fails unless it is a real image."""
    path = artifacts_dir() / f"{name}.png"
    if isinstance(target, Locator):
        target.screenshot(path=str(path))
    else:
        target.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 2000, f"{path} is not a real screenshot"
    return path
