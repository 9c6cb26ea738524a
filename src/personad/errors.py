"""One error hierarchy for every transport.

Each error carries a stable machine-readable ``code``, a human ``message`` that says how to fix the
problem where we can, the HTTP status the HTTP transport answers with and the exit code the CLI exits
with. WebSocket, HTTP and CLI all render the same ``to_dict()`` shape: ``{"code": ..., "message": ...}``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PersonadError(Exception):
    """Base of every error a client can see."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            # Instance-level override keeps one class per HTTP status while codes stay specific.
            self.code = code  # type: ignore[misc]
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The wire shape shared by every transport; ``status`` lets a client rebuild the class."""
        from personad.privacy import redact_text  # no token or key in any error a client sees or a log keeps

        out: dict[str, Any] = {
            "code": self.code,
            "message": redact_text(self.message),
            "status": self.http_status,
        }
        if self.details is not None:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class BadRequestError(PersonadError):
    """The request itself is malformed: bad JSON, bad envelope, invalid params."""

    code = "bad_request"
    http_status = 400
    exit_code = 2


class InvalidParamsError(BadRequestError):
    code = "invalid_params"


class UnauthorizedError(PersonadError):
    code = "unauthorized"
    http_status = 401
    exit_code = 3


class ForbiddenError(PersonadError):
    """Authenticated, but this session may not do that (capabilities, path confinement, membership)."""

    code = "forbidden"
    http_status = 403
    exit_code = 4


class CapabilityDeniedError(ForbiddenError):
    code = "capability_denied"


class PathEscapeError(ForbiddenError):
    code = "path_escape"


class NotFoundError(PersonadError):
    code = "not_found"
    http_status = 404
    exit_code = 5


class UnknownCommandError(NotFoundError):
    code = "unknown_command"


class ConflictError(PersonadError):
    code = "conflict"
    http_status = 409
    exit_code = 6


class PayloadTooLargeError(PersonadError):
    code = "message_too_large"
    http_status = 413
    exit_code = 2


class CommandFailedError(PersonadError):
    """The command ran but could not do what was asked (a script threw, a page did not load)."""

    code = "command_failed"
    http_status = 422
    exit_code = 8


class UnavailableError(PersonadError):
    """A dependency is not there: the daemon is not running, Chromium is not installed."""

    code = "unavailable"
    http_status = 503
    exit_code = 7


class WaitTimeoutError(PersonadError):
    """A client stopped waiting: the daemon did not answer in time (it may well still be working)."""

    code = "client_timeout"
    http_status = 504
    exit_code = 10


class ProviderError(PersonadError):
    """A model backend failed or refused: server down, bad key, rate limit, malformed answer."""

    code = "provider_error"
    http_status = 502
    exit_code = 9


class MissingApiKeyError(ProviderError):
    code = "missing_api_key"


class InternalError(PersonadError):
    code = "internal_error"
    http_status = 500
    exit_code = 1


_BY_STATUS: dict[int, type[PersonadError]] = {
    cls.http_status: cls
    for cls in (
        BadRequestError,
        UnauthorizedError,
        ForbiddenError,
        NotFoundError,
        ConflictError,
        PayloadTooLargeError,
        CommandFailedError,
        UnavailableError,
        WaitTimeoutError,
        ProviderError,
        InternalError,
    )
}


def _subclasses(cls: type[PersonadError]) -> list[type[PersonadError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found


def error_class(code: str, http_status: int | None = None) -> type[PersonadError]:
    """The class an error of ``code`` (and ``http_status``) is raised as, so it round-trips any transport.

    A code with its own class (``capability_denied``, ``adapter_not_found``) maps to that class; a specific
    code raised on a general class (``persona_not_found`` on NotFoundError) maps by its HTTP status.
    """
    for cls in _subclasses(PersonadError):
        if cls.code == code and (http_status is None or cls.http_status == http_status):
            return cls
    if http_status is not None:
        return _BY_STATUS.get(http_status, PersonadError)
    return PersonadError


def error_from_dict(data: dict[str, Any], http_status: int | None = None) -> PersonadError:
    """Rebuild an error received over the wire (used by the CLI and the Python clients).

    ``http_status`` is the HTTP response's status; over the WebSocket the error carries its own ``status``.
    """
    status = http_status if http_status is not None else data.get("status")
    code = str(data.get("code", "internal_error"))
    cls = error_class(code, status if isinstance(status, int) else None)
    return cls(str(data.get("message", "unknown error")), code=code, details=data.get("details"))
