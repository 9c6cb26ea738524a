"""The event side of the bus: in-process listeners see every event; sessions get the ones sent to them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from personad.bus.sessions import SessionManager

log = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]


class EventBus:
    def __init__(self, sessions: SessionManager) -> None:
        self._sessions = sessions
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Listen to every event in-process; returns the function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def broadcast(self, event: str, data: dict[str, Any]) -> int:
        """Publish ``event`` to in-process listeners and every live session."""
        return self.publish(event, data, to=[s.id for s in self._sessions])

    def publish(self, event: str, data: dict[str, Any], *, to: Iterable[str] | None = None) -> int:
        """Publish ``event``; push it to the clients of the sessions in ``to``. Returns sessions reached."""
        for listener in list(self._listeners):
            try:
                listener(event, data)
            except Exception:  # a broken observer must not break the command that published
                log.exception("event listener failed on %s", event)
        if to is None:
            return 0
        message = {"type": "event", "event": event, "ts": time.time(), "data": data}
        reached = 0
        for session_id in to:
            session = self._sessions.find(session_id)
            if session is not None and session.clients:
                session.push(message)
                reached += 1
        return reached
