"""The ``personad`` command line: ``serve`` runs the daemon, ``exec`` runs a command on it."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from personad.bus.jobs import FINISHED
from personad.client import DaemonClient
from personad.config import Settings
from personad.errors import BadRequestError, PersonadError

home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PERSONAD_HOME",
    default=".continuum",
    show_default=True,
    help="state directory (env PERSONAD_HOME)",
)


def _fail(error: PersonadError) -> None:
    click.echo(f"error [{error.code}]: {error.message}", err=True)
    sys.exit(error.exit_code)


@click.group()
@click.version_option(package_name="personad")
def main() -> None:
    """PersonaDaemon: AI personas and humans on one command bus."""


@main.command()
@home_option
@click.option("--host", default="127.0.0.1", show_default=True, envvar="PERSONAD_HOST")
@click.option(
    "--port", type=int, default=8765, show_default=True, envvar="PERSONAD_PORT", help="0 = any free port"
)
@click.option(
    "--token", default=None, envvar="PERSONAD_TOKEN", help="use this token instead of the one in home"
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.option("--mesh/--no-mesh", default=None, help="join the mesh (env PERSONAD_MESH); off by default")
@click.option(
    "--mesh-listen",
    default=None,
    metavar="HOST:PORT",
    help="the mesh's address (env PERSONAD_MESH_LISTEN; default 127.0.0.1:0, loopback only)",
)
@click.option("--mesh-name", default=None, help="this node's name on the mesh (env PERSONAD_MESH_NAME)")
def serve(
    home: Path,
    host: str,
    port: int,
    token: str | None,
    log_level: str,
    mesh: bool | None,
    mesh_listen: str | None,
    mesh_name: str | None,
) -> None:
    """Run the daemon in the foreground until SIGINT/SIGTERM."""
    from personad.daemon import Daemon
    from personad.server.serve import serve as run_server

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        given: dict[str, Any] = {"mesh": mesh, "mesh_listen": mesh_listen, "mesh_name": mesh_name}
        settings = Settings(
            home=home, host=host, port=port, token=token, **{k: v for k, v in given.items() if v is not None}
        )
    except ValueError as exc:
        _fail(BadRequestError(str(exc)))
    try:
        run_server(Daemon(settings), announce=lambda line: click.echo(line, err=False), log_level=log_level)
    except OSError as exc:
        _fail(PersonadError(f"cannot listen on {host}:{port}: {exc}", code="listen_failed"))


def _parse_pairs(pairs: tuple[str, ...], as_json: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadRequestError(f"expected key=value, got {pair!r}", code="invalid_params")
        if as_json:
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise BadRequestError(f"-j {key}: value is not JSON ({exc})", code="invalid_params") from None
        else:
            out[key] = value
    return out


def _print_human(result: dict[str, Any]) -> None:
    if "commands" in result and isinstance(result["commands"], list):
        for cmd in result["commands"]:
            click.echo(f"{cmd['name']:<18} [{cmd['capability'] or '-'}] {cmd['description']}")
        return
    for key, value in result.items():
        shown = value if isinstance(value, str | int | float | bool) or value is None else json.dumps(value)
        click.echo(f"{key}: {shown}")


def _follow_job(
    client: DaemonClient, job: dict[str, Any], timeout: float | None, quiet: bool
) -> dict[str, Any]:
    """Wait for a job with a progress bar on stderr; returns its result or raises its error."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from personad.bus.ws_client import job_outcome

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[steps]}"),
        TextColumn("{task.fields[state]} {task.fields[note]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
        transient=False,
    )
    task = progress.add_task(job.get("title") or job["command"], total=None, steps="", state="", note="")

    def show(current: dict[str, Any]) -> None:
        info = current.get("progress") or {}
        total = info.get("total")
        step = info.get("step")
        extra = info.get("message") or ""
        if isinstance(info.get("loss"), int | float):
            extra = f"{extra} loss {info['loss']:.4f}".strip()
        progress.update(
            task,
            total=total if isinstance(total, int | float) and total > 0 else None,
            completed=step if isinstance(step, int | float) else 0,
            steps=f"{step}/{total}" if total else "",
            state=current["state"],
            note=extra,
        )

    try:
        with progress:
            finished = client.wait_job(job, timeout=timeout, on_update=show)
    except KeyboardInterrupt:
        job_id = job["job_id"]
        click.echo(
            f"stopped waiting; job {job_id} goes on in the daemon"
            f" (stop it: personad exec job_cancel -p job_id={job_id})",
            err=True,
        )
        sys.exit(130)
    return job_outcome(finished)


@main.command("exec")
@click.argument("command")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="string param (repeatable)")
@click.option(
    "-j", "--json-param", "json_params", multiple=True, metavar="KEY=JSON", help="JSON-valued param"
)
@click.option("--params", "params_json", default=None, metavar="JSON", help="all params as one JSON object")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.option("--session", default="console", show_default=True, help="session id to run in")
@click.option(
    "--wait",
    is_flag=True,
    help="when the command starts a job, follow it (progress bar) and print its result",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=None,
    help="seconds to wait: for the reply (default 120) and, with --wait, for the job (default: no limit)",
)
@home_option
def exec_command(
    command: str,
    params: tuple[str, ...],
    json_params: tuple[str, ...],
    params_json: str | None,
    as_json: bool,
    session: str,
    wait: bool,
    timeout: float | None,
    home: Path,
) -> None:
    """Run COMMAND on the running daemon, e.g. ``personad exec browser_js -p script=6*7``.

    Long commands (lora_train, academy_train, persona_evolve, mesh_acquire) start a job and return its id at
    once; --wait follows the job to its end. A job goes on in the daemon whatever happens to this client.
    """
    try:
        body: dict[str, Any] = {}
        if params_json is not None:
            try:
                loaded = json.loads(params_json)
            except json.JSONDecodeError as exc:
                raise BadRequestError(f"--params is not JSON ({exc})", code="invalid_params") from None
            if not isinstance(loaded, dict):
                raise BadRequestError("--params must be a JSON object", code="invalid_params")
            body.update(loaded)
        body.update(_parse_pairs(params, as_json=False))
        body.update(_parse_pairs(json_params, as_json=True))
        started = time.monotonic()
        request_timeout = timeout if timeout is not None else 120.0
        with DaemonClient.from_home(
            home.expanduser().resolve(), session=session, timeout=request_timeout
        ) as client:
            result = client.execute(command, body)
            job = result.get("job")
            if wait and isinstance(job, dict):
                left = None if timeout is None else max(0.1, timeout - (time.monotonic() - started))
                result = _follow_job(client, job, left, quiet=as_json)
            elif isinstance(job, dict) and job.get("state") not in FINISHED:
                click.echo(
                    f"job {job['job_id']} {job['state']}; follow it with"
                    f" 'personad exec job_wait -p job_id={job['job_id']} --wait'",
                    err=True,
                )
    except PersonadError as error:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": error.to_dict()}))
            sys.exit(error.exit_code)
        _fail(error)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_human(result)


def _register_persona_verbs() -> None:
    from personad import cli_personas

    cli_personas.register(main, home_option, _fail)
    from personad import cli_lora

    cli_lora.register(main, home_option, _fail)
    from personad import cli_academy

    cli_academy.register(main, home_option, _fail)
    from personad import cli_mesh

    cli_mesh.register(main, home_option, _fail)
    from personad import cli_mcp

    cli_mcp.register(main, home_option, _fail)


_register_persona_verbs()

if __name__ == "__main__":
    main()
