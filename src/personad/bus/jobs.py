"""Long commands run as jobs: an id at once, progress as events, a result whenever the caller asks.

A command whose work takes minutes (training, Academy runs, evolve, transfers) checks its params and
preconditions like any command, then hands its work to :meth:`JobManager.start` and returns ``{"job": {...}}``
immediately. The job belongs to the daemon, not to the connection: it runs on when its client disconnects,
and any client of the same session (or one holding the ``jobs`` capability) reads it with ``job_status``,
waits for it with ``job_wait``, or stops it with ``job_cancel``. At most ``max_jobs`` run at once (both cores
go to one training on a small machine); the rest wait as ``queued``. Each job is saved to
``<home>/jobs/<id>.json`` so its outcome outlives the daemon; one that was running when the daemon stopped
reads ``interrupted`` afterwards.

Training and Academy work runs as a child ``personad … --json`` process (:func:`run_cli_job`): the daemon's
event loop stays responsive and a crash in the job fails the job, not the daemon. The child prints one JSON
object per line: progress (handed to ``on_line``), ``{"error": {...}, "status": N}`` for a clean failure
(re-raised here as the same error), and whatever result the caller looks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from personad.errors import (
    CommandFailedError,
    InternalError,
    NotFoundError,
    PersonadError,
    error_from_dict,
)

if TYPE_CHECKING:
    from personad.bus.events import EventBus

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
KEEP_FINISHED = 200  # job files kept on disk; older finished jobs are forgotten
PROGRESS_EVENT_INTERVAL_S = 0.25  # progress events at most this often per job (the last one always goes)
PROGRESS_SAVE_INTERVAL_S = 2.0


class JobNotFoundError(NotFoundError):
    code = "job_not_found"


@dataclass
class Job:
    """One long command's run: who started it, where it is, and how it ended."""

    id: str
    command: str
    session_id: str
    title: str
    client_id: str | None = None
    state: JobState = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def describe(self) -> dict[str, Any]:
        """The job as every transport shows it (``result``/``error`` once finished)."""
        out: dict[str, Any] = {
            "job_id": self.id,
            "command": self.command,
            "title": self.title,
            "session_id": self.session_id,
            "state": self.state,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "progress": dict(self.progress),
        }
        if self.finished:
            out["result"] = self.result
            out["error"] = self.error
        return out

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> Job:
        job = cls(
            id=str(data["job_id"]),
            command=str(data["command"]),
            session_id=str(data["session_id"]),
            title=str(data.get("title") or data["command"]),
            state=data["state"],
            created_at=float(data["created_at"]),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            progress=dict(data.get("progress") or {}),
            result=data.get("result"),
            error=data.get("error"),
        )
        if job.finished:
            job.done.set()
        return job


class JobReporter:
    """What a job's work uses to report progress: ``report(step=3, total=30, message="training")``."""

    def __init__(self, manager: JobManager, job: Job) -> None:
        self._manager = manager
        self.job = job
        self._last_event = 0.0
        self._last_save = 0.0

    def report(
        self,
        *,
        step: int | float | None = None,
        total: int | float | None = None,
        message: str | None = None,
        **extra: Any,
    ) -> None:
        progress = self.job.progress
        if step is not None:
            progress["step"] = step
        if total is not None:
            progress["total"] = total
        if message is not None:
            progress["message"] = message
        progress.update(extra)
        if progress.get("total"):
            progress["fraction"] = max(0.0, min(1.0, float(progress.get("step") or 0) / progress["total"]))
        now = time.monotonic()
        last = step is not None and total is not None and step >= total
        if last or now - self._last_event >= PROGRESS_EVENT_INTERVAL_S:
            self._last_event = now
            self._manager.publish(self.job, "job_progress")
        if now - self._last_save >= PROGRESS_SAVE_INTERVAL_S:
            self._last_save = now
            self._manager.save(self.job)


Work = Callable[[JobReporter], Awaitable[dict[str, Any]]]


class JobManager:
    """The daemon's jobs: start, list, wait, cancel; saved under ``<home>/jobs/``."""

    def __init__(self, home: Path, events: EventBus, *, max_running: int = 1) -> None:
        self.directory = Path(home) / "jobs"
        self.events = events
        self._jobs: dict[str, Job] = {}
        self._slots = asyncio.Semaphore(max(1, max_running))
        self._load()

    # -- persistence -------------------------------------------------------------------------------------

    def _load(self) -> None:
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("job_*.json")):
            try:
                job = Job.from_saved(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("unreadable job file %s; ignoring it", path, exc_info=True)
                continue
            if not job.finished:
                # It was running (or waiting) in a daemon that is gone: its work died with it.
                job.state = "interrupted"
                job.finished_at = time.time()
                job.error = {
                    "code": "daemon_restarted",
                    "message": "the daemon stopped while this job ran; start it again",
                    "status": 503,
                }
                job.done.set()
                self.save(job)
            self._jobs[job.id] = job

    def save(self, job: Job) -> None:
        """Write the job's file (atomically; a failed write is logged, the job goes on)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            target = self.directory / f"{job.id}.json"
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps(job.describe(), default=str), encoding="utf-8")
            os.replace(tmp, target)
        except OSError:
            log.exception("could not save job %s", job.id)

    def _prune(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.finished), key=lambda j: j.created_at)
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]
            (self.directory / f"{job.id}.json").unlink(missing_ok=True)

    # -- running -----------------------------------------------------------------------------------------

    def publish(self, job: Job, event: str) -> None:
        self.events.publish(event, job.describe(), to=[job.session_id])

    def start(
        self,
        command: str,
        work: Work,
        *,
        session_id: str,
        client_id: str | None = None,
        title: str = "",
        exclusive: bool = True,
    ) -> Job:
        """Queue ``work`` as a job of ``session_id``; it starts when a slot is free (at once when not
        ``exclusive``: transfers wait on the network, not the CPU). Returns the job."""
        job = Job(
            id=f"job_{secrets.token_hex(8)}",
            command=command,
            session_id=session_id,
            client_id=client_id,
            title=title or command,
        )
        self._jobs[job.id] = job
        self._prune()
        self.save(job)
        job.task = asyncio.create_task(self._run(job, work, exclusive), name=f"personad-{job.id}")
        self.publish(job, "job_started")
        return job

    async def _run(self, job: Job, work: Work, exclusive: bool = True) -> None:
        try:
            async with self._slots if exclusive else contextlib.nullcontext():
                job.state = "running"
                job.started_at = time.time()
                self.save(job)
                self.publish(job, "job_progress")
                job.result = await work(JobReporter(self, job))
                job.state = "succeeded"
        except asyncio.CancelledError:
            job.state = "cancelled"
            job.error = {"code": "job_cancelled", "message": "the job was cancelled", "status": 409}
        except PersonadError as exc:
            job.state = "failed"
            job.error = exc.to_dict()
        except Exception as exc:
            # The work's bug fails its job with a structured error; the traceback goes to the daemon log.
            log.exception("job %s (%s) failed", job.id, job.command)
            error = InternalError(f"job {job.command!r} failed ({type(exc).__name__}); see the daemon log")
            job.state = "failed"
            job.error = error.to_dict()
        finally:
            job.finished_at = time.time()
            if job.state == "succeeded" and not isinstance(job.result, dict):
                job.state = "failed"
                job.error = InternalError(f"job {job.command!r} returned no result object").to_dict()
            self.save(job)
            job.done.set()
            self.publish(job, "job_finished")

    # -- reading and control -----------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r}; 'job_list' shows the jobs you may see")
        return job

    def jobs(self, session_id: str | None = None) -> list[Job]:
        """Jobs newest first; only ``session_id``'s when given."""
        jobs = [j for j in self._jobs.values() if session_id is None or j.session_id == session_id]
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)

    async def wait(self, job_id: str, timeout: float) -> Job:
        """The job once finished, or as it is when ``timeout`` seconds have passed."""
        job = self.get(job_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(job.done.wait(), timeout)
        return job

    async def cancel(self, job_id: str) -> Job:
        """Stop a job (its child process is killed); a finished job is returned as it is."""
        job = self.get(job_id)
        if not job.finished and job.task is not None:
            job.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job.task
        return job

    async def close(self) -> None:
        """Cancel every unfinished job (the daemon is stopping); each is saved as interrupted."""
        for job in list(self._jobs.values()):
            if not job.finished and job.task is not None:
                job.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job.task
                job.state = "interrupted"
                job.error = {
                    "code": "daemon_stopped",
                    "message": "the daemon stopped while this job ran; start it again",
                    "status": 503,
                }
                self.save(job)


async def run_cli_job(
    args: Sequence[str], on_line: Callable[[dict[str, Any]], None], *, failure_code: str, what: str
) -> None:
    """Run ``python -m personad.cli ARGS`` and feed each JSON line to ``on_line``; raise on failure."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "personad.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TQDM_DISABLE": "1", "PERSONAD_JOB_CHILD": "1"},
        limit=16 * 1024 * 1024,  # one line can carry a whole report
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr_task = asyncio.create_task(proc.stderr.read())  # drained alongside, so the child never blocks
    error: tuple[dict[str, Any], int | None] | None = None
    try:
        async for raw in proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(line, dict):
                continue
            if "error" in line:
                error = (line["error"], line.get("status"))
            else:
                on_line(line)
        code = await proc.wait()
        stderr = (await stderr_task).decode(errors="replace")
    except asyncio.CancelledError:
        proc.kill()
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()
        stderr_task.cancel()
        raise
    if error is not None:
        raise error_from_dict(*error)
    if code != 0:
        raise CommandFailedError(f"{what} failed (exit {code}): {stderr.strip()[-800:]}", code=failure_code)
