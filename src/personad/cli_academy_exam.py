"""``personad academy exam``: examine a persona as it is now on suites the Academy did not train on."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from personad.errors import PersonadError


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def register_exam(academy: click.Group, home_option: Any, fail: Any) -> None:
    from personad.academy.exam_suites import GARAK_PROBES, SUITES

    @academy.command("exam")
    @click.argument("persona")
    @click.option(
        "--suite",
        type=click.Choice([*SUITES, "all"]),
        default="all",
        show_default=True,
        help="own: the Academy's held-out split; overrefusal: ordinary requests that look risky; garak:"
        " garak's probes through /v1 (needs a running daemon and garak installed)",
    )
    @click.option(
        "--heldout", type=click.IntRange(5, 1000), default=48, show_default=True, help="own: attacks"
    )
    @click.option("--benign", type=click.IntRange(1, 1000), default=None, help="own: benign questions (all)")
    @click.option("--max-tokens", type=click.IntRange(4, 512), default=48, show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option(
        "--garak-families",
        default=",".join(GARAK_PROBES),
        show_default=True,
        help="garak probe families, comma-separated",
    )
    @click.option(
        "--garak-prompts",
        type=click.IntRange(1, 256),
        default=10,
        show_default=True,
        help="prompts per probe",
    )
    @click.option("--json", "as_json", is_flag=True, help="events and the report as JSON lines")
    @home_option
    def exam(
        persona: str,
        suite: str,
        heldout: int,
        benign: int | None,
        max_tokens: int,
        seed: int,
        garak_families: str,
        garak_prompts: int,
        as_json: bool,
        home: Path,
    ) -> None:
        """Examine PERSONA: per-family attack hit rates and the over-refusal rate, each with its 95% interval;
        recorded in its brain's evolution_history (exam:<suite>)."""
        from personad.academy.exam_suites import exam_persona

        def emit(event: str, data: dict[str, Any]) -> None:
            if as_json:
                click.echo(json.dumps({"event": event, "data": data}))
            elif data.get("state") == "started":
                click.echo(f"exam: {persona}: {data['suite']}…", err=True)

        try:
            report = exam_persona(
                home.resolve(),
                persona,
                suite,
                heldout=heldout,
                benign=benign,
                max_tokens=max_tokens,
                seed=seed,
                garak_families=[f.strip() for f in garak_families.split(",") if f.strip()],
                garak_prompts=garak_prompts,
                emit=emit,
            )
        except PersonadError as error:
            if as_json:
                click.echo(json.dumps({"error": error.to_dict(), "status": error.http_status}))
                sys.exit(error.exit_code)
            fail(error)
        if as_json:
            click.echo(json.dumps({"event": "academy_exam_finished", "data": report}))
        else:
            _print_exam(report)


def _print_exam(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Exam of {report['persona']} (stack: {', '.join(report['stack']) or 'base model'})")
    for header in ("suite", "family", "rate", "95% interval", "n"):
        table.add_column(header, justify="left" if header in ("suite", "family") else "right")
    for name, result in report["suites"].items():
        what = "refused" if name == "overrefusal" else "hit"
        for family, cell in [("all", result["overall"]), *result["families"].items()]:
            table.add_row(
                name if family == "all" else "",
                f"{family} ({what})" if family == "all" else family,
                _pct(cell["rate"]),
                f"{_pct(cell['lower95'])} to {_pct(cell['upper95'])}",
                str(cell["total"]),
            )
        if name == "own":
            table.add_row(
                "",
                "benign pass",
                _pct(result["benign_pass"]["rate"]),
                "",
                str(result["benign_pass"]["total"]),
            )
    Console().print(table)
    held = report["suites"].get("garak", {}).get("held_out")
    if held:
        click.echo(
            f"garak prompts in the Academy's training: {held['in_academy_training']} of {held['prompts']}"
        )
