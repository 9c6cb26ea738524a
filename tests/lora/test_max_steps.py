"""``max_steps`` means exactly that many optimizer steps: passes over the data repeat (reshuffled, seeded)
until it is reached, overriding ``epochs`` as in HF Trainer; without it, ``epochs`` counts passes as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from personad.cli import main
from personad.lora.registry import AdapterRegistry
from personad.lora.training import TrainingConfig, TrainingProgress, train_adapter
from tests.conftest import RunningDaemon
from tests.lora.test_training import SHA, small_model, tokenizer, write_jsonl

torch = pytest.importorskip("torch")

TWO = [
    [{"role": "user", "content": "What is 1 plus 2?"}, {"role": "assistant", "content": "3."}],
    [{"role": "user", "content": "What is 3 plus 4?"}, {"role": "assistant", "content": "7."}],
]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One torch thread here and in training child processes (the box is small and shared); the local
    engine sets the thread count when it loads, so it is put back afterwards."""
    from personad.models.local.engine import THREADS_ENV

    monkeypatch.setenv(THREADS_ENV, "1")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def two(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "two.jsonl", TWO)


def tiny_run(
    registry: AdapterRegistry, data: Path, name: str, **kw: Any
) -> tuple[Any, list[TrainingProgress]]:
    progress: list[TrainingProgress] = []
    config = TrainingConfig(name=name, data=data, rank=4, lr=1e-2, **kw)
    result = train_adapter(
        config,
        registry,
        model=small_model(),
        tokenizer=tokenizer(),
        base_model="tiny",
        base_model_sha256=SHA,
        on_step=progress.append,
    )
    return result, progress


# -- the training loop (tiny model, fast) --------------------------------------------------------------


def test_max_steps_repeats_passes_until_reached(registry: AdapterRegistry, two: Path) -> None:
    # Two examples in one batch of 4: one step a pass, so the default epochs=1 alone would be 1 step.
    result, progress = tiny_run(registry, two, "six", max_steps=6)
    assert result.steps == 6 and len(result.losses) == 6 and result.epochs == 6
    assert [p.step for p in progress] == [1, 2, 3, 4, 5, 6]
    assert {p.total_steps for p in progress} == {6} and [p.epoch for p in progress] == [0, 1, 2, 3, 4, 5]
    summary = result.manifest.training
    assert (summary["steps"], summary["epochs"], summary["steps_per_epoch"], summary["max_steps"]) == (
        6,
        6,
        1,
        6,
    )
    assert registry.manifest("six").training == summary

    # epochs does not cap it (HF Trainer: max_steps overrides num_train_epochs) and does not change the run.
    capped, _ = tiny_run(registry, two, "capped", max_steps=6, epochs=2)
    assert capped.steps == 6 and capped.manifest.lora_hash == result.manifest.lora_hash
    # Deterministic: the same seed gives the same weights; another seed other weights.
    again, _ = tiny_run(registry, two, "again", max_steps=6)
    assert again.manifest.lora_hash == result.manifest.lora_hash
    other, _ = tiny_run(registry, two, "other", max_steps=6, seed=1)
    assert other.manifest.lora_hash != result.manifest.lora_hash
    # Six steps are six steps however they were asked for: the same shuffles, the same hash.
    by_epochs, _ = tiny_run(registry, two, "by-epochs", epochs=6)
    assert by_epochs.steps == 6 and by_epochs.manifest.lora_hash == result.manifest.lora_hash
    assert by_epochs.manifest.training["max_steps"] is None


def test_max_steps_stops_part_way_through_the_last_pass(registry: AdapterRegistry, two: Path) -> None:
    result, progress = tiny_run(registry, two, "odd", max_steps=3, batch_size=1, epochs=10)
    assert result.steps == 3 and result.epochs == 2  # two steps a pass: one whole pass and half of another
    assert [p.epoch for p in progress] == [0, 0, 1]
    assert result.manifest.training["steps_per_epoch"] == 2


def test_without_max_steps_epochs_count_passes(registry: AdapterRegistry, two: Path) -> None:
    default, _ = tiny_run(registry, two, "one")
    assert (default.steps, default.epochs) == (1, 1)
    three, _ = tiny_run(registry, two, "three", epochs=3, batch_size=1)
    assert (three.steps, three.epochs) == (6, 3)
    assert (three.manifest.training["steps"], three.manifest.training["epochs"]) == (6, 3)


# -- the CLI and the bus command (the real local model) ------------------------------------------------


def test_help_says_max_steps_overrides_epochs() -> None:
    result = CliRunner().invoke(main, ["lora", "train", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "train exactly N optimizer steps" in text and "overrides --epochs" in text
    assert "ignored when --max-steps is given" in text
    from personad.lora.commands import TrainParams

    fields = TrainParams.model_fields
    assert "overrides epochs" in (fields["max_steps"].description or "")
    assert "ignored when max_steps is given" in (fields["epochs"].description or "")


def cli_train(home: Path, data: Path, name: str, *extra: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``personad lora train … --json``: the progress lines and the registered manifest."""
    args = ["lora", "train", name, "--data", str(data), "--home", str(home), "--rank", "4", "--json"]
    result = CliRunner().invoke(main, [*args, *extra])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    steps = [line for line in lines if "step" in line]
    manifests = [line["manifest"] for line in lines if "manifest" in line]
    assert len(manifests) == 1, result.output
    return steps, manifests[0]


@pytest.mark.slow
def test_cli_max_steps_trains_exactly_that_many_steps(tmp_path: Path, two: Path) -> None:
    home = tmp_path / "home"
    steps, manifest = cli_train(home, two, "six", "--max-steps", "6")
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5, 6] and {s["total_steps"] for s in steps} == {6}
    assert [s["epoch"] for s in steps] == [0, 1, 2, 3, 4, 5]
    training = manifest["training"]
    assert (training["steps"], training["epochs"], training["max_steps"], training["examples"]) == (
        6,
        6,
        6,
        2,
    )
    assert AdapterRegistry.for_home(home).manifest("six").training["steps"] == 6


@pytest.mark.slow
def test_bus_lora_train_max_steps_and_epochs(running: RunningDaemon) -> None:
    examples = [{"messages": chat} for chat in TWO]
    with running.ws() as ws:
        six = ws.call_job(
            "lora_train", {"name": "six", "examples": examples, "max_steps": 6, "rank": 4}, timeout=600
        )
        assert six["ok"], six
        assert (six["result"]["training"]["steps"], six["result"]["training"]["epochs"]) == (6, 6)
        # Without max_steps, epochs count passes as before: 2 examples are one batch, so 2 epochs = 2 steps.
        two = ws.call_job(
            "lora_train", {"name": "two", "examples": examples, "epochs": 2, "rank": 4}, timeout=600
        )
        assert two["ok"], two
        training = two["result"]["training"]
        assert (training["steps"], training["epochs"], training["max_steps"]) == (2, 2, None)
