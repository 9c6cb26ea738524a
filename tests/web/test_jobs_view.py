"""The Jobs view (#/jobs) in real headless Chromium, on test_countdown jobs (tests/fakes/fake_jobs.py): live
progress bars, Cancel from the page, a finished job's result and a failed one's error, the filter, another
session's jobs, #/jobs/<id>, and a 390 px wide screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.conftest import RunningDaemon
from tests.web.conftest import app_context, plugin_daemon

from .shots import save_shot
from .test_page import CHROMIUM, App

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}"),
]


@pytest.fixture(scope="module")
def jobs_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    yield from plugin_daemon(tmp_path_factory, "tests.fakes.fake_jobs")


@pytest.fixture
def app(browser: Browser, jobs_daemon: RunningDaemon) -> Iterator[App]:
    yield from app_context(browser, jobs_daemon)


def _open(app: App, route: str = "#/jobs") -> Page:
    app.page.goto(f"{app.daemon.url}/?token={app.daemon.token}{route}")
    app.wait_connected()
    expect(app.page.locator("#jobs-view")).to_be_visible()
    return app.page


def _start(daemon: RunningDaemon, session: str, **params: Any) -> str:
    """A test_countdown job over HTTP, as ``session`` (the page's own: its job_* events reach the page)."""
    with daemon.http(session=session) as client:
        response = client.post("/api/commands/test_countdown", json=params)
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["job"]["job_id"])


def _row(page: Page, job_id: str) -> Locator:
    return page.locator(f'#jobs-table tr.job[data-job-id="{job_id}"]')


def _fraction(row: Locator) -> float:
    return float(row.locator("progress").evaluate("p => p.value"))


def test_live_progress_cancel_result_and_error(app: App) -> None:
    page = _open(app)
    session = app.session_id
    slow = _start(app.daemon, session, steps=400, step_s=0.05)  # 20 s unless cancelled
    done = _start(app.daemon, session, steps=3, step_s=0.05)
    failing = _start(app.daemon, session, steps=5, step_s=0.05, fail_at=2)

    row = _row(page, slow)
    expect(row).to_have_attribute("data-state", "running", timeout=20_000)
    expect(row.locator("code")).to_have_text("test_countdown")
    expect(row).to_contain_text("count 400")
    first = _fraction(row)
    page.wait_for_function(
        f"""() => {{
            const p = document.querySelector('#jobs-table tr.job[data-job-id="{slow}"] progress');
            return p && p.value > {first} + 0.01;
        }}""",
        timeout=10_000,
    )  # the bar moves with job_progress events
    expect(row.locator(".job-message")).to_contain_text("step")
    save_shot(page, "jobs")

    row.locator("button.job-cancel").click()
    expect(row).to_have_attribute("data-state", "cancelled")
    expect(row.locator(".job-state")).to_have_text("cancelled")
    expect(row.locator("button.job-cancel")).to_have_count(0)

    # The other two queued behind it (one job runs at a time): now they run and finish.
    expect(_row(page, done)).to_have_attribute("data-state", "succeeded", timeout=20_000)
    expect(_row(page, failing)).to_have_attribute("data-state", "failed", timeout=20_000)
    assert _fraction(_row(page, done)) == 1

    _row(page, done).locator("button.job-details").click()
    detail = page.locator(f'#jobs-table tr.job-detail[data-job-id="{done}"]')
    expect(detail.locator(".job-result")).to_contain_text('"counted": 3')
    expect(_row(page, done).locator("button.job-details")).to_have_attribute("aria-expanded", "true")

    _row(page, failing).locator("button.job-details").click()
    error = page.locator(f'#jobs-table tr.job-detail[data-job-id="{failing}"] .job-error')
    expect(error.locator(".job-error-code")).to_have_text("countdown_failed")
    expect(error.locator(".job-error-message")).to_have_text("failed at step 2")

    _row(page, slow).locator("button.job-details").click()
    expect(page.locator(f'#jobs-table tr.job-detail[data-job-id="{slow}"]')).to_contain_text("job_cancelled")

    # The filter: active shows none of them now, finished all three.
    page.select_option("#jobs-filter", "active")
    for job_id in (slow, done, failing):
        expect(_row(page, job_id)).to_have_count(0)
    page.select_option("#jobs-filter", "finished")
    for job_id in (slow, done, failing):
        expect(_row(page, job_id)).to_have_count(1)
    assert app.errors == []


def test_every_sessions_jobs_and_a_job_route(app: App) -> None:
    other = _start(app.daemon, "someone-else", steps=2, step_s=0.05)
    with app.daemon.ws() as ws:
        job = ws.call("job_wait", {"job_id": other, "timeout": 20})
    assert job["ok"], job
    page = _open(app, f"#/jobs/{other}")
    row = _row(page, other)
    expect(row).to_have_attribute("data-state", "succeeded")
    expect(row).to_have_attribute("aria-current", "true")
    expect(page.locator(f'#jobs-table tr.job-detail[data-job-id="{other}"]')).to_contain_text("someone-else")
    expect(page.locator("#jobs-every")).to_be_checked()
    page.locator("#jobs-every").uncheck()  # only this session's own jobs: none
    expect(row).to_have_count(0)
    expect(page.locator("#jobs-empty")).to_be_visible()
    page.locator("#jobs-every").check()
    expect(row).to_have_count(1)
    assert app.errors == []


def test_the_view_fits_a_phone(browser: Browser, jobs_daemon: RunningDaemon) -> None:
    for app in app_context(browser, jobs_daemon, 390, 844):
        page = _open(app)
        job_id = _start(jobs_daemon, app.session_id, steps=2, step_s=0.05)
        expect(_row(page, job_id)).to_have_attribute("data-state", "succeeded", timeout=20_000)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert app.errors == []
