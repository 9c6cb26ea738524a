"""The one CommandProcessor every transport calls: validate, authorise, run, record, publish."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from personad import wire
from personad.bus.commands import CommandRegistry
from personad.bus.events import EventBus
from personad.bus.jobs import Work
from personad.bus.sessions import Session
from personad.errors import CapabilityDeniedError, InternalError, InvalidParamsError, PersonadError
from personad.privacy import redact_params, secret_fields

if TYPE_CHECKING:
    from personad.daemon import Daemon

log = logging.getLogger(__name__)

# Recorded params and results are capped so a large file_write or browser_js value cannot bloat the log.
RECORD_LIMIT = 4096


@dataclass
class CommandContext:
    """What a handler sees: who called, on which daemon."""

    daemon: Daemon
    session: Session
    client_id: str | None = None
    request_id: str | None = None
    command: str = ""

    def start_job(self, work: Work, *, title: str = "", exclusive: bool = True) -> dict[str, Any]:
        """Hand long ``work`` to the daemon's jobs; the command then returns ``{"job": {...}}`` at once."""
        job = self.daemon.jobs.start(
            self.command,
            work,
            session_id=self.session.id,
            client_id=self.client_id,
            title=title,
            exclusive=exclusive,
        )
        return {"job": job.describe()}


def _clip(value: Any) -> Any:
    text = wire.dumps(value)
    if len(text) <= RECORD_LIMIT:
        return value
    return {"truncated": True, "bytes": len(text), "head": text[:RECORD_LIMIT]}


def _describe_validation(name: str, exc: ValidationError) -> InvalidParamsError:
    problems = [
        {"loc": [str(p) for p in err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    summary = "; ".join(f"{'.'.join(p['loc']) or '(params)'}: {p['msg']}" for p in problems)
    return InvalidParamsError(
        f"invalid params for {name!r}: {summary}. Run 'commands' to see its schema.", details=problems
    )


class CommandProcessor:
    def __init__(self, daemon: Daemon, registry: CommandRegistry, events: EventBus) -> None:
        self.daemon = daemon
        self.registry = registry
        self.events = events

    async def execute(
        self,
        session: Session,
        name: str,
        params: Any = None,
        *,
        client_id: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Run ``name`` for ``session``; returns the result object or raises a :class:`PersonadError`."""
        started = time.perf_counter()
        session.last_active = time.monotonic()
        try:
            result = await self._run(session, name, params, client_id, request_id)
        except PersonadError as exc:
            self._finish(session, name, params, client_id, request_id, started, error=exc)
            raise
        self._finish(session, name, params, client_id, request_id, started, result=result)
        return result

    async def _run(
        self, session: Session, name: str, params: Any, client_id: str | None, request_id: str | None
    ) -> dict[str, Any]:
        command = self.registry.get(name)
        if not session.can(command.capability):
            raise CapabilityDeniedError(
                f"session {session.id!r} ({session.kind}) lacks capability {command.capability!r}"
                f" needed by {name!r}"
            )
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidParamsError(
                f"params for {name!r} must be a JSON object, not {type(params).__name__}"
            )
        try:
            parsed = command.params.model_validate(params)
        except ValidationError as exc:
            raise _describe_validation(name, exc) from None
        ctx = CommandContext(self.daemon, session, client_id, request_id, name)
        try:
            result = await command.handler(ctx, parsed)
        except PersonadError:
            raise
        except Exception as exc:
            log.exception("command %s failed in session %s", name, session.id)
            raise InternalError(
                f"command {name!r} failed unexpectedly ({type(exc).__name__}); the daemon log has details"
            ) from exc
        if not isinstance(result, dict):
            raise InternalError(f"command {name!r} returned {type(result).__name__}, not an object")
        return result

    def _finish(
        self,
        session: Session,
        name: str,
        params: Any,
        client_id: str | None,
        request_id: str | None,
        started: float,
        *,
        result: dict[str, Any] | None = None,
        error: PersonadError | None = None,
    ) -> None:
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        command = self.registry.get(name) if name in self.registry else None
        marked = secret_fields(command.params) if command is not None else frozenset()
        # The record never holds a secret: marked fields, keys that name one, tokens in text (privacy.py).
        entry: dict[str, Any] = {
            "ts": time.time(),
            "client_id": client_id,
            "request_id": request_id,
            "command": name,
            "params": redact_params(params, marked),
            "ok": error is None,
            "duration_ms": duration_ms,
        }
        if error is None:
            secret = command is not None and command.secret_result
            entry["result"] = "[secret: not recorded]" if secret else redact_params(result)
        else:
            entry["error"] = redact_params(error.to_dict())
        try:
            # Serialise once on the hot path; only an oversize line pays for clipping its parts.
            line = wire.dumps(entry)
            if len(line) > 2 * RECORD_LIMIT:
                entry["params"] = _clip(params)
                if error is None:
                    entry["result"] = _clip(result)
                line = wire.dumps(entry)
            session.record_line(line)
        except (OSError, ValueError, TypeError, RecursionError):
            # The reply matters more than its log line; a line we cannot write is logged, never raised.
            log.exception("could not record command %r in %s", name, session.directory)
        self.events.publish(
            "command_completed",
            {
                "session_id": session.id,
                "client_id": client_id,
                "command": name,
                "ok": error is None,
                "duration_ms": duration_ms,
                "error": None if error is None else error.code,
            },
        )
