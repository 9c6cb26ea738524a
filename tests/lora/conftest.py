"""Fixtures: a tiny random Llama (shared, never modified) and an empty adapter registry per test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from personad.lora.registry import AdapterRegistry

from .helpers import tiny_model


@pytest.fixture(scope="session")
def model() -> Any:
    return tiny_model()


@pytest.fixture
def registry(tmp_path: Path) -> AdapterRegistry:
    return AdapterRegistry(tmp_path / "adapters")
