"""Persona tests run the real supervisor and real persona processes, with the fake model provider."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import WsClient


@pytest.fixture(autouse=True)
def _plugin(fake_provider_plugin: None) -> None:
    """Every persona test sees the fake provider."""


def wait_for(predicate: Callable[[], Any], timeout: float = 20, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def reply_to(
    ws: WsClient, message_id: int, timeout: float = 90, *, sender: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Wait for the persona's answer to ``message_id`` (from ``sender``, when several may answer); returns it
    and the deltas streamed before it."""
    deltas: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if message.get("event") == "chat_delta":
            deltas.append(message["data"]["delta"])
        elif message.get("event") == "chat_message":
            data = message["data"]
            from_sender = sender is None or (data.get("sender") or {}).get("session_id") == sender
            if (data.get("meta") or {}).get("in_reply_to") == message_id and from_sender:
                return data, deltas
