"""Entry point of one persona's OS process: ``python -m personad.personas.process --home H --persona ID``.

Started by the daemon's supervisor with ``PERSONAD_URL``, ``PERSONAD_PERSONA_TOKEN`` and
``PERSONAD_MODEL_CONFIG`` (the provider config, e.g. the inference worker's socket) in its environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from personad.errors import PersonadError
from personad.models.registry import load_provider_registry
from personad.personas.config import PersonaStore
from personad.personas.memory import embedder_loading
from personad.personas.persona import PersonaDaemon

log = logging.getLogger("personad.persona")

EXIT_BUS_LOST = 3
EXIT_START_FAILED = 4
RECONNECT_SECONDS = 10.0


async def run(home: Path, persona_id: str) -> int:
    config = PersonaStore(home).load(persona_id)
    model_config = json.loads(os.environ.get("PERSONAD_MODEL_CONFIG") or "null") or config.model_config_
    provider = load_provider_registry().create(config.model_provider, model_config)
    persona = PersonaDaemon(config, home=home, provider=provider)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        status = await persona.start()
    except PersonadError as exc:
        log.error("persona %s could not start: [%s] %s", persona_id, exc.code, exc.message)
        return EXIT_START_FAILED
    log.info(
        "persona %s on the bus as session %s", persona_id, (status.get("session") or {}).get("session_id")
    )
    while True:
        closed = asyncio.create_task(persona.wait_closed())
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait({closed, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in (closed, stop):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await persona.stop()
        if stopping.is_set():
            return 0
        log.warning("persona %s lost its bus connection; reconnecting", persona_id)
        if not await _reconnect(persona, stopping):
            return 0 if stopping.is_set() else EXIT_BUS_LOST


async def _reconnect(persona: PersonaDaemon, stopping: asyncio.Event) -> bool:
    """Try to rejoin for a while: a daemon shutting down stops us meanwhile; a dead one never answers."""
    loop = asyncio.get_running_loop()
    delay = 0.2
    deadline = loop.time() + RECONNECT_SECONDS
    while not stopping.is_set() and loop.time() < deadline:
        attempt = asyncio.create_task(persona.start())
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait({attempt, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not attempt.done():  # SIGTERM while a half-open daemon keeps us waiting
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError, PersonadError):
                await attempt
            return False
        failure = attempt.exception()
        if failure is None:
            return True
        if not isinstance(failure, PersonadError):
            raise failure
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
        delay = min(2.0, delay * 2)
    return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="personad-persona")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--persona", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s [{args.persona}] %(message)s")
    from personad import privacy

    os.umask(privacy.PRIVATE_UMASK)
    privacy.register_secret(os.environ.get("PERSONAD_PERSONA_TOKEN"))
    privacy.install_log_redaction()
    code = asyncio.run(run(args.home.resolve(), args.persona))
    if embedder_loading():
        # Stopped while the embedding model was still loading: the brain, the bus connection and the
        # provider are closed by now, and the loading thread holds nothing else. Finalising the interpreter
        # under a thread that is midway through importing torch is not safe, so leave without it.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
