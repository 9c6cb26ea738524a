"""Start, watch and stop the shared inference worker process on behalf of the daemon.

The worker listens on ``<home>/run/inference.sock`` and accepts a fresh random token that only this object
and the child know; its output is appended to ``<home>/logs/inference.log``. The child is told the
daemon's pid and exits by itself if the daemon disappears.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from personad.errors import UnavailableError
from personad.models.local.worker import TOKEN_ENV

LOG_TAIL_BYTES = 4000


class InferenceWorkerProcess:
    def __init__(
        self,
        home: Path,
        *,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        threads: int | None = None,
        token: str | None = None,
    ) -> None:
        self.home = Path(home)
        self.python = python
        self.extra_env = dict(env or {})
        self.threads = threads
        self._socket = self.home / "run" / "inference.sock"
        self.log_path = self.home / "logs" / "inference.log"
        # A restarted worker may keep its predecessor's token, so running personas stay authorised.
        self._token = token or secrets.token_urlsafe(32)
        self._proc: subprocess.Popen[bytes] | None = None
        self.health: dict[str, Any] = {}  # the worker's /health answer once started
        self.start_seconds: float | None = None

    @property
    def socket(self) -> Path:
        return self._socket

    @property
    def token(self) -> str:
        return self._token

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        cmd = [self.python, "-m", "personad.models.local.worker", "--socket", str(self._socket)]
        cmd += ["--parent-pid", str(os.getpid()), "--adapters", str(self.home / "adapters")]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        return cmd

    def _env(self) -> dict[str, str]:
        # The model cache, thread and plugin settings pass through from our environment (and ``env``);
        # the hub is never contacted, and output is unbuffered so the log is current when we quote it.
        env = {**os.environ, **self.extra_env}
        env.update({TOKEN_ENV: self._token, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
        return env

    async def start(self, timeout: float = 180) -> None:
        """Spawn the worker and wait for ``/health``; raise ``inference_unavailable`` if it never answers."""
        if self.alive:
            return
        started = time.monotonic()
        self._socket.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(
                f"\n--- starting inference worker at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode()
            )
            log.flush()
            # Its own session: a Ctrl-C in the daemon's terminal reaches the daemon, which then stops the
            # worker in order, instead of both dying at once mid-request.
            try:
                self._proc = subprocess.Popen(
                    self._command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._env(),
                    start_new_session=True,
                )
            except OSError as exc:
                raise UnavailableError(
                    f"could not start the inference worker with {self.python}: {exc}",
                    code="inference_unavailable",
                ) from exc
        deadline = started + timeout
        async with self._client(timeout=5) as client:
            while True:
                if self._proc.poll() is not None:
                    code = self._proc.returncode
                    raise UnavailableError(
                        f"the inference worker exited with code {code} while starting; see {self.log_path}:\n"
                        f"{self.log_tail()}",
                        code="inference_unavailable",
                    )
                if self._socket.exists():
                    try:
                        response = await client.get("/health")
                        if response.status_code == 200 and response.json().get("ok"):
                            self.health = response.json()
                            self.start_seconds = time.monotonic() - started
                            return
                    except httpx.TransportError:
                        pass  # bound but not yet accepting, or a stale socket about to be replaced
                if time.monotonic() > deadline:
                    await self.stop()
                    raise UnavailableError(
                        f"the inference worker did not become ready within {timeout:.0f}s; see"
                        f" {self.log_path}:\n{self.log_tail()}",
                        code="inference_unavailable",
                    )
                await asyncio.sleep(0.05)  # polled often: this wait is the start time a user sees

    def _client(self, timeout: float) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self._socket)),
            base_url="http://inference",
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=timeout,
        )

    async def stop(self, grace: float = 10) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code (None if never started)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
                while proc.poll() is None:
                    await asyncio.sleep(0.05)
        return proc.returncode

    def log_tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - limit))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
