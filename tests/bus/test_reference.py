"""docs/commands.md is generated from the registry and must be current."""

from __future__ import annotations

from pathlib import Path

from personad.bus.commands import CommandRegistry
from personad.bus.reference import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "commands.md"


def test_commands_reference_is_current() -> None:
    registry = CommandRegistry()
    registry.load_plugins(entry_point_plugins=False)
    assert DOC.read_text(encoding="utf-8") == render(registry), (
        "docs/commands.md is stale: run 'python -m personad.bus.reference > docs/commands.md'"
    )
    for command in registry:
        assert f"## `{command.name}`" in DOC.read_text(encoding="utf-8")
