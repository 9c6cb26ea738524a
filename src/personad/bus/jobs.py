"""Long jobs behind bus commands: a ``personad … --json`` child process whose JSON lines stream back.

Training and Academy runs take minutes and both CPU cores; running them as a child process keeps the daemon's
event loop responsive and lets a crash in the job fail one command instead of the daemon. The child prints
one JSON object per line: progress (handed to ``on_line``), ``{"error": {...}, "status": N}`` for a clean
failure (re-raised here as the same error), and whatever result the caller looks for.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from personad.errors import CommandFailedError, error_from_dict


async def run_cli_job(
    args: Sequence[str], on_line: Callable[[dict[str, Any]], None], *, failure_code: str, what: str
) -> None:
    """Run ``python -m personad.cli ARGS`` and feed each JSON line to ``on_line``; raise on failure."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "personad.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TQDM_DISABLE": "1", "PERSONAD_JOB_CHILD": "1"},
        limit=16 * 1024 * 1024,  # one line can carry a whole report
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr_task = asyncio.create_task(proc.stderr.read())  # drained alongside, so the child never blocks
    error: tuple[dict[str, Any], int | None] | None = None
    try:
        async for raw in proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(line, dict):
                continue
            if "error" in line:
                error = (line["error"], line.get("status"))
            else:
                on_line(line)
        code = await proc.wait()
        stderr = (await stderr_task).decode(errors="replace")
    except asyncio.CancelledError:
        proc.kill()
        raise
    if error is not None:
        raise error_from_dict(*error)
    if code != 0:
        raise CommandFailedError(f"{what} failed (exit {code}): {stderr.strip()[-800:]}", code=failure_code)
