"""Long commands as jobs: an id at once, progress events, status/wait/cancel, survival of the client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from personad.cli import main
from tests.conftest import RunningDaemon, start_daemon


@pytest.fixture
def jobs_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningDaemon]:
    monkeypatch.setenv("PERSONAD_PLUGINS", "tests.fakes.fake_jobs")
    rd = start_daemon(tmp_path / "home")
    yield rd
    rd.stop()


def test_a_job_returns_at_once_reports_progress_and_finishes(jobs_daemon: RunningDaemon) -> None:
    with jobs_daemon.ws(session="owner") as ws:
        reply = ws.call("test_countdown", {"steps": 4, "step_s": 0.1})
        job = reply["result"]["job"]
        assert job["state"] in ("queued", "running") and job["job_id"].startswith("job_")
        assert ws.wait_event("job_started")["data"]["job_id"] == job["job_id"]
        finished = ws.wait_event("job_finished", timeout=20)["data"]
        assert finished["state"] == "succeeded" and finished["result"] == {"counted": 4}
        progress = [m["data"]["progress"] for m in ws.events if m.get("event") == "job_progress"]
        assert progress and progress[-1]["step"] == 4 and progress[-1]["fraction"] == 1.0
        status = ws.call("job_status", {"job_id": job["job_id"]})["result"]["job"]
        assert status["state"] == "succeeded" and status["result"] == {"counted": 4}
        listed = ws.call("job_list")["result"]["jobs"]
        assert [j["job_id"] for j in listed] == [job["job_id"]] and "result" not in listed[0]


def test_a_job_survives_its_client_and_another_client_reads_it(jobs_daemon: RunningDaemon) -> None:
    with jobs_daemon.ws(session="owner") as ws:
        job = ws.call("test_countdown", {"steps": 10, "step_s": 0.1})["result"]["job"]
    # The connection that started it is gone; the job is not.
    with jobs_daemon.ws(session="owner") as again:
        waited = again.call("job_wait", {"job_id": job["job_id"], "timeout": 20})["result"]["job"]
        assert waited["state"] == "succeeded" and waited["result"] == {"counted": 10}
    saved = json.loads((jobs_daemon.home / "jobs" / f"{job['job_id']}.json").read_text())
    assert saved["state"] == "succeeded"


def test_failures_cancel_and_access(jobs_daemon: RunningDaemon) -> None:
    with (
        jobs_daemon.ws(session="owner") as ws,
        jobs_daemon.ws(session="other", capabilities="files") as other,
    ):
        failing = ws.call("test_countdown", {"steps": 3, "step_s": 0.01, "fail_at": 2})["result"]["job"]
        failed = ws.call("job_wait", {"job_id": failing["job_id"], "timeout": 20})["result"]["job"]
        assert failed["state"] == "failed"
        assert failed["error"]["code"] == "countdown_failed" and failed["error"]["status"] == 422
        slow = ws.call("test_countdown", {"steps": 1000, "step_s": 0.05})["result"]["job"]
        # Another session without the 'jobs' capability cannot see or stop it.
        assert other.call("job_status", {"job_id": slow["job_id"]})["error"]["code"] == "job_not_found"
        assert other.call("job_cancel", {"job_id": slow["job_id"]})["error"]["code"] == "job_not_found"
        assert other.call("job_list", {"every_session": True})["error"]["code"] == "capability_denied"
        assert other.call("job_list")["result"]["jobs"] == []
        cancelled = ws.call("job_cancel", {"job_id": slow["job_id"]})["result"]["job"]
        assert cancelled["state"] == "cancelled" and cancelled["error"]["code"] == "job_cancelled"
        everyone = ws.call("job_list", {"every_session": True, "state": "finished"})["result"]["jobs"]
        assert {j["job_id"] for j in everyone} == {failing["job_id"], slow["job_id"]}
        assert ws.call("job_status", {"job_id": "job_nope"})["error"]["code"] == "job_not_found"


def test_jobs_queue_beyond_max_jobs(jobs_daemon: RunningDaemon) -> None:
    with jobs_daemon.ws() as ws:
        first = ws.call("test_countdown", {"steps": 20, "step_s": 0.05})["result"]["job"]
        second = ws.call("test_countdown", {"steps": 1, "step_s": 0})["result"]["job"]
        assert ws.call("job_status", {"job_id": second["job_id"]})["result"]["job"]["state"] == "queued"
        done = ws.call("job_wait", {"job_id": second["job_id"], "timeout": 20})["result"]["job"]
        assert done["state"] == "succeeded" and done["started_at"] >= first["created_at"]
        first_done = ws.call("job_status", {"job_id": first["job_id"]})["result"]["job"]
        assert first_done["finished_at"] <= done["started_at"]


def test_a_job_running_when_the_daemon_stops_reads_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSONAD_PLUGINS", "tests.fakes.fake_jobs")
    home = tmp_path / "home"
    rd = start_daemon(home)
    with rd.ws() as ws:
        job = ws.call("test_countdown", {"steps": 1000, "step_s": 0.05})["result"]["job"]
    rd.stop()
    rd = start_daemon(home)
    try:
        with rd.ws() as ws:
            status = ws.call("job_status", {"job_id": job["job_id"]})["result"]["job"]
        assert status["state"] == "interrupted" and status["error"]["code"] in (
            "daemon_stopped",
            "daemon_restarted",
        )
    finally:
        rd.stop()


def test_cli_exec_wait_follows_a_job_and_timeout_does_not_blame_the_daemon(
    jobs_daemon: RunningDaemon,
) -> None:
    cli = CliRunner()
    home = str(jobs_daemon.home)
    started = cli.invoke(main, ["exec", "test_countdown", "-j", "steps=3", "--json", "--home", home])
    assert started.exit_code == 0, started.output
    waited = cli.invoke(main, ["exec", "test_countdown", "-j", "steps=3", "--wait", "--json", "--home", home])
    assert waited.exit_code == 0, waited.output
    assert json.loads(waited.stdout) == {"counted": 3}
    failed = cli.invoke(
        main, ["exec", "test_countdown", "-j", "steps=3", "-j", "fail_at=1", "--wait", "--home", home]
    )
    assert failed.exit_code == 8 and "countdown_failed" in failed.stderr
    begun = time.monotonic()
    slow = cli.invoke(
        main,
        [
            "exec",
            "test_countdown",
            "-j",
            "steps=1000",
            "-j",
            "step_s=0.05",
            "--wait",
            "--timeout",
            "1",
            "--home",
            home,
        ],
    )
    assert time.monotonic() - begun < 15
    assert slow.exit_code == 10, slow.output
    assert "still" in slow.stderr and "job_cancel" in slow.stderr and "cannot reach" not in slow.stderr
