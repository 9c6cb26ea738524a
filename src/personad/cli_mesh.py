"""``personad mesh …``: this daemon on the mesh (it must run with ``personad serve --mesh``).

``status``, ``peers``, ``skills``, ``invite``, ``join CODE``, ``broadcast ADAPTER``, ``acquire SKILL``
(a progress bar until the adapter is verified and loaded), ``persona-status``, ``rotate-key``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from personad.errors import PersonadError


def _short(node: str) -> str:
    return node[:16] if node else "-"


def _print_status(data: dict[str, Any]) -> None:
    if not data.get("enabled"):
        click.echo("mesh: off (start the daemon with `personad serve --mesh`)")
        return
    click.echo(f"node      {data['node']}")
    click.echo(f"address   {data['addr']}  name {data['name'] or '-'}")
    click.echo(f"peers     {data['trusted_peers']} trusted of {data['peers']}")
    click.echo(f"skills    {data['skills_known']} known; seeding {', '.join(data['seeding']) or '-'}")
    if data["rejected"]:
        click.echo(f"rejected  {json.dumps(data['rejected'])}")


def _print_peers(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("node", "name", "address", "trust", "state", "via")
    for peer in data["peers"]:
        state = "trusted" if peer["trusted"] else ("retired" if peer["retired_by"] else "dropped")
        table.add_row(
            _short(peer["node"]), peer["name"], peer["addr"], f"{peer['score']:.2f}", state, peer["via"]
        )
    Console().print(table)


def _print_skills(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("skill", "adapter", "parents", "effectiveness", "seeders", "demand", "from", "size")
    for skill in data["skills"]:
        eff = skill["effectiveness"]
        table.add_row(
            skill["skill"],
            skill["adapter"],
            ", ".join(skill["parents"]) or "-",
            "-" if eff is None else f"{eff:.3f}",
            str(len(skill["seeders"])),
            f"{skill['demand_score']:.2f}",
            _short(skill["node"]),
            f"{skill['size']:,}",
        )
    Console().print(table)


def register(main: click.Group, home_option: Any, fail: Any) -> None:
    from personad.cli_personas import _run

    def call(home: Path, command: str, params: dict[str, Any], as_json: bool, show: Any) -> None:
        try:
            result = _run(home.expanduser().resolve(), command, params)
        except PersonadError as error:
            if as_json:
                click.echo(json.dumps({"ok": False, "error": error.to_dict()}))
                sys.exit(error.exit_code)
            fail(error)
        if as_json:
            click.echo(json.dumps(result, indent=2))
        else:
            show(result)

    json_option = click.option("--json", "as_json", is_flag=True, help="print the result as JSON")

    @main.group()
    def mesh() -> None:
        """The mesh: share learned adapters with other daemons, peer to peer."""

    @mesh.command("status")
    @json_option
    @home_option
    def status(as_json: bool, home: Path) -> None:
        """This node: key, address, peers, what it seeds."""
        call(home, "mesh_status", {}, as_json, _print_status)

    @mesh.command("peers")
    @json_option
    @home_option
    def peers(as_json: bool, home: Path) -> None:
        """Known peers and their trust scores."""
        call(home, "mesh_peers", {}, as_json, _print_peers)

    @mesh.command("skills")
    @json_option
    @home_option
    def skills(as_json: bool, home: Path) -> None:
        """Skills announced on the mesh (verified announcements only)."""
        call(home, "mesh_skills", {}, as_json, _print_skills)

    @mesh.command("invite")
    @click.option("--ttl", "ttl_s", type=float, default=24 * 3600, show_default=True, help="seconds valid")
    @json_option
    @home_option
    def invite(ttl_s: float, as_json: bool, home: Path) -> None:
        """Print a one-time code another daemon joins with (`personad mesh join CODE`)."""
        call(home, "mesh_invite", {"ttl_s": ttl_s}, as_json, lambda r: click.echo(r["code"]))

    @mesh.command("join")
    @click.argument("code")
    @json_option
    @home_option
    def join(code: str, as_json: bool, home: Path) -> None:
        """Join the mesh of the daemon that printed CODE."""
        call(
            home,
            "mesh_join",
            {"code": code},
            as_json,
            lambda r: click.echo(f"joined {r['joined']} at {r['addr']}"),
        )

    @mesh.command("broadcast")
    @click.argument("adapter")
    @click.option("--skill", default=None, help="skill id (default: the adapter's name)")
    @click.option("--persona", default="", help="the persona that learned it")
    @json_option
    @home_option
    def broadcast(adapter: str, skill: str | None, persona: str, as_json: bool, home: Path) -> None:
        """Seed ADAPTER from the registry and announce it to the mesh."""
        params: dict[str, Any] = {"adapter": adapter, "persona": persona}
        if skill:
            params["skill"] = skill

        def show(result: dict[str, Any]) -> None:
            ann = result["announcement"]
            click.echo(f"announced {ann['adapter']} ({ann['skill']}) info-hash {ann['info_hash']}")

        call(home, "mesh_broadcast", params, as_json, show)

    @mesh.command("acquire")
    @click.argument("skill")
    @click.option("--persona", default=None, help="load it into this persona's stack")
    @click.option(
        "--wait-for",
        "wait_s",
        type=click.FloatRange(min=0, max=300),
        default=10.0,
        show_default=True,
        help="seconds to wait for a peer to announce it",
    )
    @click.option(
        "--timeout", type=click.FloatRange(min=0.1), default=None, help="seconds to wait for the job"
    )
    @json_option
    @home_option
    def acquire(
        skill: str, persona: str | None, wait_s: float, timeout: float | None, as_json: bool, home: Path
    ) -> None:
        """Download SKILL's adapter chain from the swarm, verify it, and (with --persona) load it."""
        from personad.cli import _follow_job
        from personad.client import DaemonClient

        params: dict[str, Any] = {"skill": skill, "wait_s": wait_s}
        if persona:
            params["persona"] = persona
        try:
            with DaemonClient.from_home(home.expanduser().resolve(), timeout=120.0) as client:
                started = client.execute("mesh_acquire", params)
                result = _follow_job(client, started["job"], timeout, quiet=as_json)
        except PersonadError as error:
            if as_json:
                click.echo(json.dumps({"ok": False, "error": error.to_dict()}))
                sys.exit(error.exit_code)
            fail(error)
        if as_json:
            click.echo(json.dumps(result, indent=2))
            return
        for item in result["transfers"]:
            if item["downloaded"]:
                peers = ", ".join(f"{k[:16]} {v:,} B" for k, v in item["from_peers"].items()) or "-"
                click.echo(
                    f"acquired {item['adapter']}: {item['bytes']:,} bytes in {item['seconds']} s ({peers})"
                )
            else:
                click.echo(f"had {item['adapter']} already")
        if result.get("persona"):
            click.echo(f"{result['persona']} stack: {' + '.join(result['stack'])}")

    @mesh.command("persona-status")
    @click.argument("persona")
    @click.option("--status", "status_", required=True, help="e.g. graduated")
    @click.option("--ready", is_flag=True, help="ready for deployment")
    @click.option("--specialization", "specializations", multiple=True, help="repeatable")
    @json_option
    @home_option
    def persona_status(
        persona: str, status_: str, ready: bool, specializations: tuple[str, ...], as_json: bool, home: Path
    ) -> None:
        """Publish a persona's mesh status (updatePersonaStatus)."""
        params = {
            "persona": persona,
            "status": status_,
            "ready_for_deployment": ready,
            "specializations": list(specializations),
        }
        call(home, "mesh_persona_status", params, as_json, lambda r: click.echo(json.dumps(r)))

    @mesh.command("rotate-key")
    @json_option
    @home_option
    def rotate_key(as_json: bool, home: Path) -> None:
        """Replace this node's key; peers follow and refuse the old one."""
        call(
            home, "mesh_rotate_key", {}, as_json, lambda r: click.echo(f"new key {r['new']} (old {r['old']})")
        )
