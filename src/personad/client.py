"""A small HTTP client for a running daemon, found through ``<home>/daemon.json``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from personad.bus.jobs import FINISHED
from personad.errors import PersonadError, UnavailableError, WaitTimeoutError, error_from_dict
from personad.state import read_state


class DaemonClient:
    def __init__(
        self, url: str, token: str, *, session: str = "console", kind: str = "console", timeout: float = 120.0
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={
                "Authorization": f"Bearer {token}",
                "X-Personad-Session": session,
                "X-Personad-Kind": kind,
            },
            timeout=timeout,
        )

    @classmethod
    def from_home(cls, home: Path, **kwargs: Any) -> DaemonClient:
        state = read_state(home)
        if state is None:
            raise UnavailableError(
                f"no daemon running for home {home} (no daemon.json);"
                f" start one with 'personad serve --home {home}'",
                code="daemon_not_running",
            )
        return cls(state["url"], state["token"], **kwargs)

    def execute(self, command: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a command; returns its result or raises the daemon's error as a PersonadError."""
        try:
            response = self._http.post(f"/api/commands/{command}", json=params or {})
        except httpx.TimeoutException as exc:
            # Slow is not gone: the daemon answered nothing in time, but it may well be working on it.
            raise WaitTimeoutError(
                f"no answer to {command!r} from the daemon at {self.url} within {self._http.timeout.read:g} s"
                " (it may still be working on it; raise --timeout, and see 'personad exec job_list' for jobs)"
            ) from exc
        except httpx.TransportError as exc:
            raise UnavailableError(
                f"cannot reach the daemon at {self.url} ({exc}); is 'personad serve' still running?",
                code="daemon_unreachable",
            ) from exc
        try:
            body = response.json()
        except ValueError:
            raise PersonadError(f"daemon answered HTTP {response.status_code} without JSON") from None
        if body.get("ok"):
            return body["result"]
        raise error_from_dict(body.get("error") or {}, response.status_code)

    def wait_job(
        self,
        job: dict[str, Any],
        *,
        timeout: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        poll_s: float = 1.0,
    ) -> dict[str, Any]:
        """Follow a job until it finishes (``on_update`` sees each state); returns the finished job.

        Raises :class:`WaitTimeoutError` after ``timeout`` seconds; the job goes on in the daemon.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while job["state"] not in FINISHED:
            if on_update is not None:
                on_update(job)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeoutError(
                    f"job {job['job_id']} is still {job['state']} after {timeout:g} s; it goes on in the"
                    f" daemon: follow it with 'personad exec job_wait -p job_id={job['job_id']} --wait'"
                    f" or stop it with 'personad exec job_cancel -p job_id={job['job_id']}'",
                    details={"job": job},
                )
            wait = poll_s if left is None else max(0.0, min(poll_s, left))
            job = self.execute("job_wait", {"job_id": job["job_id"], "timeout": wait})["job"]
        if on_update is not None:
            on_update(job)
        return job

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
