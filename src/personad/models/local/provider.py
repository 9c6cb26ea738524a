"""The ``local`` provider: a persona's client of the shared inference worker.

Importing this module is cheap (no torch): every persona process imports it through the provider registry,
and only the worker holds the model. :class:`InProcessLocalProvider` runs a :class:`LocalEngine` in the
calling process instead, for benchmarks and tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from personad.errors import PersonadError, ProviderError, UnavailableError, error_from_dict
from personad.models.base import ChatChunk, ChatRequest, ModelProvider, Usage

if TYPE_CHECKING:
    from personad.models.local.engine import LocalEngine
    from personad.models.registry import ProviderRegistry

SOCKET_ENV = "PERSONAD_INFERENCE_SOCKET"
TOKEN_ENV = "PERSONAD_WORKER_TOKEN"
DEFAULT_READ_TIMEOUT = 600.0  # generations queue behind each other, so a wait for the first byte can be long

_HOW_TO_FIX = (
    "the daemon starts the worker when a local persona starts; to run one by hand:"
    f" {TOKEN_ENV}=... python -m personad.models.local.worker --socket PATH, then set"
    f" {SOCKET_ENV}=PATH (or model_config.socket) and the same token"
)


class LocalProvider(ModelProvider):
    """Streams from the inference worker over its Unix socket.

    Config: ``socket`` and ``token`` (default ``$PERSONAD_INFERENCE_SOCKET`` / ``$PERSONAD_WORKER_TOKEN``),
    optional ``model`` (must be the worker's model) and ``timeout`` (seconds to wait for the next line).
    """

    name = "local"
    supports_tools = False  # the local model speaks the [CMD:...] line protocol
    supports_adapters = True

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.socket_path: str | None = self.config.get("socket") or os.environ.get(SOCKET_ENV) or None
        self.token: str | None = self.config.get("token") or os.environ.get(TOKEN_ENV) or None
        self.read_timeout = float(self.config.get("timeout") or DEFAULT_READ_TIMEOUT)
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            assert self.socket_path is not None
            self._client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=self.socket_path),
                base_url="http://inference",  # the host is ignored over a Unix socket
                timeout=httpx.Timeout(10.0, read=self.read_timeout),
            )
        return self._client

    def _unavailable(self, why: str) -> UnavailableError:
        return UnavailableError(
            f"local inference worker unavailable: {why}; {_HOW_TO_FIX}", code="inference_unavailable"
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if not self.socket_path:
            raise self._unavailable("no socket configured")
        if not Path(self.socket_path).exists():
            raise self._unavailable(f"{self.socket_path} does not exist (is the worker running?)")
        payload = request.to_dict()
        if not payload.get("model") and self.config.get("model"):
            payload["model"] = self.config["model"]
        headers = {"Authorization": f"Bearer {self.token or ''}"}
        finished = False
        try:
            async with self._http().stream("POST", "/v1/generate", json=payload, headers=headers) as response:
                if response.status_code != 200:
                    raise _error_from_response(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    data = json.loads(line)
                    if "error" in data:
                        raise error_from_dict(data["error"], data.get("status"))
                    if data.get("finish_reason") is not None:
                        finished = True
                        yield ChatChunk(
                            finish_reason=data["finish_reason"], usage=Usage(**data.get("usage", {}))
                        )
                    elif data.get("text"):
                        yield ChatChunk(text=data["text"])
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            raise self._unavailable(f"{type(exc).__name__}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"the inference worker sent nothing for {self.read_timeout:.0f}s", code="inference_timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"talking to the inference worker failed: {exc}", code="provider_error"
            ) from exc
        except json.JSONDecodeError as exc:
            raise ProviderError(
                f"the inference worker sent a malformed line: {exc}", code="provider_error"
            ) from exc
        if not finished:
            raise ProviderError("the inference worker ended the answer early", code="inference_truncated")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _error_from_response(status: int, body: bytes) -> PersonadError:
    try:
        data = json.loads(body)
        error = data["error"]
        if not isinstance(error, dict):
            raise TypeError(error)
    except (ValueError, KeyError, TypeError):
        return ProviderError(
            f"the inference worker answered HTTP {status}: {body[:200].decode('utf-8', 'replace')}",
            code="provider_error",
        )
    return error_from_dict(error, status)


class InProcessLocalProvider(ModelProvider):
    """The local model in this process: no worker, no socket. For benchmarks and tests; not registered.

    Generations through one provider queue in order; providers sharing an engine are still serialised by
    the engine's own lock.
    """

    name = "local-inprocess"
    supports_tools = False
    supports_adapters = True

    def __init__(self, config: dict[str, Any] | None = None, *, engine: LocalEngine) -> None:
        from personad.models.local.runner import GenerationRunner

        super().__init__(config)
        self.engine = engine
        self.runner = GenerationRunner(engine)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.engine.validate(request)
        async for event in self.runner.stream(request):
            if event.finish_reason is not None:
                yield ChatChunk(finish_reason=event.finish_reason, usage=event.usage)
            elif event.text:
                yield ChatChunk(text=event.text)


def register_providers(registry: ProviderRegistry) -> None:
    registry.register(LocalProvider)
