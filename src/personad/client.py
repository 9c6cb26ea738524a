"""A small HTTP client for a running daemon, found through ``<home>/daemon.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from personad.errors import PersonadError, UnavailableError, error_from_dict
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

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
