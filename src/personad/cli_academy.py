"""``personad academy train``: run the Academy on a persona, with a live table of rounds (or JSON lines)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from personad.errors import PersonadError


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def register(main: click.Group, home_option: Any, fail: Any) -> None:
    @main.group()
    def academy() -> None:
        """The Academy: adversarial training that hardens a persona's protocol."""

    @academy.command("train")
    @click.argument("student")
    @click.option("--droid", default=None, help="testing droid persona (optional)")
    @click.option("--sheriff", default=None, help="protocol sheriff persona (optional)")
    @click.option("--rounds", type=int, default=3, show_default=True)
    @click.option("--domain", default="general", show_default=True)
    @click.option("--attacks", type=int, default=32, show_default=True, help="training attacks per round")
    @click.option("--heldout", type=int, default=48, show_default=True, help="held-out attacks per exam")
    @click.option("--benign", type=int, default=None, help="benign questions (default all)")
    @click.option("--steps", type=int, default=30, show_default=True, help="training steps per round")
    @click.option("--threshold", type=float, default=0.15, show_default=True)
    @click.option("--max-tokens", type=int, default=48, show_default=True)
    @click.option("--lr", type=float, default=1e-3, show_default=True, help="defense training learning rate")
    @click.option(
        "--anchor-weight",
        type=click.FloatRange(min=0),
        default=1.0,
        show_default=True,
        help="weight of the KL anchor that keeps ordinary answers as before training (0: hard retain labels)",
    )
    @click.option("--rank", type=int, default=8, show_default=True, help="defense adapter rank")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--paraphrase", is_flag=True, help="let the droid paraphrase attacks with its model")
    @click.option("--json", "as_json", is_flag=True, help="events and the report as JSON lines")
    @home_option
    def train(
        student: str,
        droid: str | None,
        sheriff: str | None,
        rounds: int,
        domain: str,
        attacks: int,
        heldout: int,
        benign: int | None,
        steps: int,
        threshold: float,
        max_tokens: int,
        lr: float,
        anchor_weight: float,
        rank: int,
        seed: int,
        paraphrase: bool,
        as_json: bool,
        home: Path,
    ) -> None:
        """Attack STUDENT, judge, train a defense adapter, re-examine on held-out attacks; graduate."""
        from personad.academy.academy import AcademySettings

        settings = AcademySettings(
            rounds=rounds,
            domain=domain,
            attacks_per_round=attacks,
            heldout_attacks=heldout,
            benign_limit=benign,
            threshold=threshold,
            max_tokens=max_tokens,
            train_steps=steps,
            lr=lr,
            anchor_weight=anchor_weight,
            rank=rank,
            seed=seed,
            paraphrase=paraphrase,
        )
        try:
            report = _run(home.resolve(), student, settings, droid, sheriff, as_json)
        except PersonadError as error:
            if as_json:
                click.echo(json.dumps({"error": error.to_dict(), "status": error.http_status}))
                sys.exit(error.exit_code)
            fail(error)
        if not as_json:
            _print_report(report)

    _register_evolve(academy, home_option, fail)
    from personad.cli_academy_exam import register_exam

    register_exam(academy, home_option, fail)


def _register_evolve(academy: click.Group, home_option: Any, fail: Any) -> None:
    @academy.command("evolve")
    @click.argument("persona_id")
    @click.option("--steps", type=int, default=30, show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    @home_option
    def evolve_cmd(persona_id: str, steps: int, seed: int, as_json: bool, home: Path) -> None:
        """evolveCapabilities: train an adapter from PERSONA_ID's learning experiences; keep it if it helps.

        The adapter joins the stack only when the held-out answer loss drops."""
        from personad.academy.evolve import evolve
        from personad.lora.manager import LoraAdapterManager
        from personad.models.local.engine import LocalEngine

        try:
            engine = LocalEngine.load()
            LoraAdapterManager.for_engine(engine, home.resolve() / "adapters")
            result = evolve(home.resolve(), persona_id, engine, steps=steps, seed=seed)
        except PersonadError as error:
            if as_json:
                click.echo(json.dumps({"error": error.to_dict(), "status": error.http_status}))
                sys.exit(error.exit_code)
            fail(error)
        if as_json:
            click.echo(json.dumps({"result": result}))
        elif not result.get("domain"):
            click.echo(f"{persona_id}: nothing to evolve ({result['reason']})")
        else:
            click.echo(
                f"{persona_id}: {result['domain']} ({result['examples']} examples,"
                f" {result['heldout']} held out):"
                f" held-out loss {result['heldout_loss_before']:.3f} → {result['heldout_loss_after']:.3f};"
                + (f" kept {result['adapter']}" if result["evolved"] else " no improvement, adapter dropped")
            )


def _run(
    home: Path, student: str, settings: Any, droid: str | None, sheriff: str | None, as_json: bool
) -> dict[str, Any]:
    from personad.academy.academy import Academy
    from personad.academy.commands import status_path
    from personad.lora.manager import LoraAdapterManager
    from personad.models.local.engine import LocalEngine

    status = status_path(home, student)
    status.parent.mkdir(parents=True, exist_ok=True)
    table: list[tuple[str, ...]] = []

    def emit(event: str, data: dict[str, Any]) -> None:
        state = "finished" if event == "academy_finished" else "running"
        status.write_text(json.dumps({"state": state, "event": event, "data": data, "ts": time.time()}))
        if as_json:
            click.echo(json.dumps({"event": event, "data": data}), nl=True)
            return
        if event == "academy_round":
            exam = data["exam"]
            row = (
                str(data["round"]),
                _pct(data.get("train_attack_success", float("nan"))) if data["round"] else "-",
                _pct(exam["attack_success"]),
                _pct(exam["attack_success_upper95"]),
                _pct(exam["benign_pass"]),
                f"{exam['seconds'] + data.get('seconds', 0):.0f}s",
            )
            table.append(row)
            _print_table(table)
        elif event == "academy_started":
            click.echo(
                f"academy: {data['student']}, {data['heldout_attacks']} held-out attacks,"
                f" {data['benign']} benign questions"
            )
        elif event == "academy_trained":
            click.echo(
                f"  round {data['round']}: trained on {data['examples']} examples, {data['steps']} steps in"
                f" {data['seconds']:.0f}s, loss {data['loss'][0]:.3f} → {data['loss'][1]:.3f}"
            )

    engine = LocalEngine.load()
    LoraAdapterManager.for_engine(engine, home / "adapters")
    academy = Academy(home, student, settings, engine=engine, emit=emit, droid_id=droid, sheriff_id=sheriff)
    report = academy.run()
    _notify_daemon(home, student, report)
    return report


def _notify_daemon(home: Path, student: str, report: dict[str, Any]) -> None:
    """With a daemon running (and not our parent), let the running persona and the page know."""
    import os

    from personad.client import DaemonClient
    from personad.errors import UnavailableError

    if os.environ.get("PERSONAD_ACADEMY_CHILD"):
        return
    try:
        client = DaemonClient.from_home(home)
    except UnavailableError:
        return
    with client:
        try:
            config = json.loads((home / "personas" / student / "persona.json").read_text())
            client.execute("lora_load_stack", {"persona": student, "adapters": config["lora_adapters"]})
            if report.get("graduation"):
                client.execute("persona_graduated", {"persona": student, "graduation": report["graduation"]})
        except PersonadError:
            pass


def _print_table(rows: list[tuple[str, ...]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Academy rounds (held-out exam)")
    for header in (
        "round",
        "train attacks worked",
        "held-out attack success",
        "95% upper",
        "benign pass",
        "time",
    ):
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(*row)
    Console(stderr=True).print(table)


def _print_report(report: dict[str, Any]) -> None:
    base, final = report["baseline"], report["final"]
    reduction = report.get("relative_reduction")
    click.echo(
        f"held-out attack success {_pct(base['attack_success'])} → {_pct(final['attack_success'])}"
        + (f" ({_pct(reduction)} relative reduction)" if reduction is not None else "")
        + f"; benign pass {_pct(base['benign_pass'])} → {_pct(final['benign_pass'])};"
        f" {'GRADUATED' if report['graduated'] else 'not graduated'} in {report['seconds']:.0f}s"
    )
    if report.get("adapter"):
        click.echo(f"defense adapter {report['adapter']} is now in {report['student']}'s stack")
