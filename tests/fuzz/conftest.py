"""The fuzz daemon: a real loopback daemon whose Chromium cannot leave 127.0.0.1 and whose heavy jobs
(LoRA training, Academy runs, evolve, persona processes) are tripwired: a fuzzed call never starts one."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, settings
from pydantic import ValidationError
from websockets.sync.client import ClientConnection, connect

from personad.bus.sessions import Session
from personad.errors import CommandFailedError, PersonadError
from tests.conftest import RunningDaemon, start_daemon
from tests.fuzz.checks import check_no_leaks, strict_loads
from tests.fuzz.loopback import SinkProxy, loopback_only_chromium_args
from tests.fuzz.names import PERSONA

# Examples per (command, transport); PERSONAD_FUZZ_EXAMPLES scales a longer local run.
EXAMPLES = int(os.environ.get("PERSONAD_FUZZ_EXAMPLES", "15"))

# Reproducible in CI: the seed comes from the test's name, nothing is kept between runs.
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

REPLY_TIMEOUT = 60.0
MISSING_FILE = "fuzz-never-written.jsonl"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.fuzz)


@dataclass
class Tripwire:
    """Records (and refuses) every attempt to start a heavy job; the fuzz asserts it stays empty."""

    calls: list[str] = field(default_factory=list)

    def refuse(self, what: str) -> None:
        self.calls.append(what)
        raise CommandFailedError(f"fuzz tripwire: {what} refused", code="fuzz_tripwire")


@dataclass
class Fuzz:
    rd: RunningDaemon
    sink: SinkProxy
    tripwire: Tripwire

    @property
    def port(self) -> int:
        return int(self.rd.url.rsplit(":", 1)[1])

    def ensure_fixtures(self) -> None:
        """Fuzzed persona_delete / room_leave may remove what the hints point at: put it back."""
        store = self.rd.daemon.persona_store
        if not store.exists(PERSONA):
            store.create({"id": PERSONA, "name": "Fuzz", "capabilities": ["chat"]})
        self.rd.daemon.rooms.create("fuzzroom", topic="fuzz", exist_ok=True)

    def _persona_exists(self, persona: Any) -> bool:
        try:
            return isinstance(persona, str) and self.rd.daemon.persona_store.exists(persona)
        except PersonadError:
            return False  # an invalid id: the handler refuses it the same way

    def defuse(self, command: str, params: Any, *, as_persona: str | None = None) -> Any:
        """Turn a call that would start real model work into one that stops short of it.

        Only params the command's own model accepts can reach the handler; for those the named persona is
        swapped for one that does not exist, the training data for a file that does not exist, and
        ``start`` is dropped. Everything else (invalid params) goes as generated.
        """
        if not isinstance(params, dict) or (command not in HEAVY and not _waits(command)):
            return params
        try:
            parsed = self.rd.daemon.registry.get(command).params.model_validate(params)
        except (ValidationError, PersonadError):  # PersonaConfig's validators raise BadRequestError
            return params
        if command == "lora_train":
            if parsed.data is None and parsed.examples is not None:
                params["examples"] = None
                params["data"] = MISSING_FILE
            elif parsed.data is not None and parsed.examples is None:
                params["data"] = MISSING_FILE
        elif command == "academy_train" and self._persona_exists(parsed.student):
            params["student"] = "fuzz-absent"
        elif command == "academy_exam" and self._persona_exists(parsed.persona):
            params["persona"] = "fuzz-absent"  # an exam loads the model (own, overrefusal) or runs garak
        elif command == "persona_evolve" and self._persona_exists(parsed.persona or as_persona):
            params["persona"] = "fuzz-absent"  # a persona session evolves itself when persona is omitted
        elif command == "persona_start" and self._persona_exists(parsed.persona):
            params["persona"] = "fuzz-absent"
        elif command == "persona_create" and parsed.start:
            params["start"] = False
        elif command == "mesh_acquire":
            params["wait_s"] = 0  # nobody announces what the fuzzer names: answer now, not after minutes
        elif _waits(command):
            # A fuzzed ref or selector matches nothing: the action waits out its timeout (5-15 s by default,
            # 60 s at most) before its element_not_found. A short one checks the same answer.
            if isinstance(getattr(parsed, "timeout_ms", None), int):
                params["timeout_ms"] = min(parsed.timeout_ms, BROWSER_TIMEOUT_MS)
            if isinstance(getattr(parsed, "time", None), int | float):
                params["time"] = min(parsed.time, 0.2)
        return params


BROWSER_TIMEOUT_MS = 500


def _waits(command: str) -> bool:
    """Commands that wait on the page (an element, a text, a navigation) up to their timeout_ms."""
    return command.startswith("browser_") or command == "screenshot"


HEAVY = (
    "lora_train",
    "academy_train",
    "academy_exam",
    "persona_evolve",
    "persona_start",
    "persona_create",
    "mesh_acquire",
)


# Package scope, not session: its tripwires patch the persona supervisor and the job runner, and must be
# gone before the rest of the suite starts real personas.
@pytest.fixture(scope="package")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    sink = SinkProxy()
    tripwire = Tripwire()
    with pytest.MonkeyPatch.context() as mp:

        async def no_job(args: Any, *a: Any, **k: Any) -> None:
            tripwire.refuse(f"job {' '.join(map(str, args[:3]))}")

        async def no_persona_process(self: Any, persona_id: str, *a: Any, **k: Any) -> None:
            self.store.load(persona_id)  # an unknown persona is persona_not_found, as without the tripwire
            tripwire.refuse(f"persona process {persona_id}")

        mp.setattr("personad.lora.commands.run_cli_job", no_job)
        mp.setattr("personad.academy.commands.run_cli_job", no_job)
        mp.setattr("personad.personas.supervisor.PersonaSupervisor.start", no_persona_process)
        rd = start_daemon(
            tmp_path_factory.mktemp("fuzz-home"),
            browser_extra_args=loopback_only_chromium_args(sink.port),
            # The mesh on (loopback, no peers), so its commands are fuzzed for real, not refused as disabled.
            mesh=True,
            mesh_base_model_sha256="0" * 64,
        )
        fz = Fuzz(rd, sink, tripwire)
        fz.ensure_fixtures()
        try:
            yield fz
        finally:
            rd.stop()
            sink.close()
    assert not tripwire.calls, f"fuzzed calls reached heavy jobs: {tripwire.calls}"


class RawWs:
    """A WebSocket client that checks every frame the server sends (strict JSON, no leaks)."""

    _ids = itertools.count(1)

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.welcome = self.recv("")

    def recv(self, request_text: str, timeout: float = REPLY_TIMEOUT, relax: Any = None) -> dict[str, Any]:
        raw = self.conn.recv(timeout=timeout)
        assert isinstance(raw, str), f"server sent a binary frame: {raw[:200]!r}"
        message = strict_loads(raw, relax)  # NaN/Infinity in a server frame fails here
        assert isinstance(message, dict), raw[:600]
        check_no_leaks(raw, request_text)
        return message

    def exchange(
        self, frame: str | bytes, request_id: Any, *, timeout: float = REPLY_TIMEOUT, relax: Any = None
    ) -> dict[str, Any]:
        """Send ``frame``; return the one reply carrying ``request_id``, then prove the socket still answers
        ping and that no second reply for the same id came."""
        request_text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        self.conn.send(frame)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no reply with id {request_id!r} within {timeout}s to {request_text[:300]}"
            try:
                message = self.recv(request_text, timeout=left, relax=relax)
            except TimeoutError:
                raise AssertionError(  # noqa: B904
                    f"no reply with id {request_id!r} within {timeout}s to {request_text[:300]}"
                )
            if message.get("type") in ("command_result", "error", "pong") and message.get("id") == request_id:
                reply = message
                break
        self.assert_alive(request_text, duplicate_of=request_id, relax=relax)
        return reply

    def assert_alive(self, request_text: str = "", *, duplicate_of: Any = None, relax: Any = None) -> None:
        ping_id = f"alive-{next(self._ids)}"
        self.conn.send(f'{{"type":"ping","id":"{ping_id}","data":{{"n":1}}}}')
        while True:
            message = self.recv(request_text, timeout=30, relax=relax)
            if message.get("type") in ("command_result", "error"):
                assert duplicate_of is None or message.get("id") != duplicate_of, (
                    f"second reply for id {duplicate_of!r}: {message}"
                )
            if message.get("type") == "pong" and message.get("id") == ping_id:
                assert message.get("data") == {"n": 1}
                return

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RawWs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_ws(fz: Fuzz, **query: str) -> RawWs:
    params = {"token": fz.rd.token, **query}
    conn = connect(f"{fz.rd.ws_url}?{urlencode(params)}", max_size=None, max_queue=None, open_timeout=10)
    return RawWs(conn.__enter__())


@pytest.fixture
def ws(fuzz: Fuzz) -> Iterator[RawWs]:
    client = open_ws(fuzz, session="fuzz-ws")
    yield client
    client.close()


def live_session(fz: Fuzz, session_id: str) -> Session | None:
    return fz.rd.daemon.sessions.find(session_id)


def artifacts_of(fz: Fuzz, session_id: str) -> Path | None:
    session = live_session(fz, session_id)
    return None if session is None else session.artifacts_dir
