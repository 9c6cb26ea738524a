"""Adapter names and the manifest stored next to each adapter's PEFT files.

A name is dotted lowercase segments (``continuum.legal.patent``). A proper prefix that is a registered
adapter is an implied parent: with ``a`` and ``a.b`` registered, ``a.b.c`` is applied as ``a`` → ``a.b`` →
``a.b.c``; a prefix that is not an adapter (``continuum`` in the README) is a namespace. A manifest can name
more parents (a multi-domain adapter such as ``continuum.medtech`` trained on top of ``continuum.legal`` and
``continuum.medical``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from personad.errors import BadRequestError

MANIFEST_FILE = "personad-adapter.json"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
MANIFEST_VERSION = 1

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$")
MAX_NAME_LENGTH = 200


def validate_name(name: Any) -> str:
    """``name`` if it is a valid adapter name, else a BadRequestError saying what one looks like."""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.match(name):
        raise BadRequestError(
            f"invalid adapter name {name!r}: dotted lowercase segments of letters, digits, '_' and '-',"
            " such as continuum.legal.patent",
            code="invalid_adapter_name",
        )
    return name


def implied_parents(name: str) -> list[str]:
    """The dotted prefixes of ``name``, outermost first: ``a.b.c`` → ``["a", "a.b"]`` (each a parent only if
    it is a registered adapter; see ``AdapterRegistry.implied_parent``)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@dataclass
class AdapterManifest:
    """What the registry knows about one adapter, beyond PEFT's own config."""

    name: str
    #: Direct parents, applied before this adapter: the nearest registered dotted prefix (if any) first,
    #: then any explicit extra parents in the order given at training.
    parents: list[str]
    base_model: str
    base_model_sha256: str
    rank: int
    alpha: float
    target_modules: list[str]
    lora_hash: str  # sha256 of adapter_model.safetensors, checked on every load
    size_bytes: int
    created_by: str = "personad"
    created_at: float = field(default_factory=time.time)
    training: dict[str, Any] = field(default_factory=dict)  # data summary, steps, seed, loss
    metrics: dict[str, Any] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterManifest:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def read(cls, folder: Path) -> AdapterManifest:
        return cls.from_dict(json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8")))

    def write(self, folder: Path) -> None:
        (folder / MANIFEST_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
