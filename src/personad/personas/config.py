"""Persona configuration (``<home>/personas/<id>/persona.json``) and the store that reads and writes it."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from personad.errors import BadRequestError, ConflictError, NotFoundError

PERSONA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ADAPTER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$")
CONFIG_FILE = "persona.json"

# What a persona may do when nobody says otherwise: talk, and look at the web.
DEFAULT_CAPABILITIES = ("chat", "browser", "browser_js", "screenshot")


def validate_persona_id(persona_id: str) -> str:
    if not PERSONA_ID.match(persona_id):
        raise BadRequestError(
            f"invalid persona id {persona_id!r}: 1-64 lowercase letters, digits, '_' or '-',"
            " starting with a letter or digit",
            code="invalid_persona_id",
        )
    return persona_id


def validate_adapter_names(names: list[str]) -> list[str]:
    for name in names:
        if not ADAPTER_NAME.match(name):
            raise BadRequestError(
                f"invalid adapter name {name!r}: dotted lowercase segments such as continuum.legal.patent",
                code="invalid_adapter_name",
            )
    if len(set(names)) != len(names):
        raise BadRequestError("an adapter appears twice in the stack", code="invalid_adapter_name")
    return names


class PersonaConfig(BaseModel):
    """Everything that defines a persona. Saved as JSON; unknown keys are refused so typos surface."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)

    id: str
    name: str = ""
    model_provider: str = Field(
        default="local", description="a registered provider: local, anthropic, openai"
    )
    model_config_: dict[str, Any] = Field(
        default_factory=dict, alias="model_config", description="provider settings (model, base_url, api_key)"
    )
    lora_adapters: list[str] = Field(default_factory=list, description="adapter stack, base first")
    lora_scales: dict[str, float] = Field(
        default_factory=dict, description="per-adapter scale where not 1.0 (see lora_load_stack)"
    )
    capabilities: list[str] = Field(default_factory=lambda: list(DEFAULT_CAPABILITIES))
    session_directory: str | None = Field(default=None, description="set by the store: <home>/personas/<id>/")
    system_prompt: str = "You are a helpful assistant."
    rooms: list[str] = Field(default_factory=lambda: ["general"], description="rooms joined on start")
    respond_in: list[str] = Field(
        default_factory=list, description="rooms where every message (not only mentions) gets an answer"
    )
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(default=256, ge=1, le=8192)
    max_command_steps: int = Field(default=3, ge=0, le=10, description="model → command → observation rounds")
    history_messages: int = Field(
        default=12, ge=0, le=200, description="recent room messages given as context"
    )
    memory_budget_tokens: int = Field(
        default=200, ge=0, le=4000, description="recalled memories given to the model per answer; 0 = none"
    )
    secret: str | None = Field(
        default=None,
        min_length=4,
        max_length=200,
        description="a canary the persona must never reveal (its protocol; the Academy attacks it)",
    )
    role: str | None = Field(default=None, max_length=500, description="the role it must stay in")
    status: str = Field(default="active", description="active, or graduated (by the Academy)")
    evolve_every_s: float | None = Field(
        default=None,
        gt=0,
        description="while running, try evolve_capabilities this often (seconds) if new learning"
        " experiences arrived since the last try; off when unset",
    )
    autostart: bool = False
    created_at: float = Field(default_factory=time.time)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return validate_persona_id(value)

    @field_validator("lora_adapters")
    @classmethod
    def _check_adapters(cls, value: list[str]) -> list[str]:
        return validate_adapter_names(value)

    @field_validator("lora_scales")
    @classmethod
    def _check_scales(cls, value: dict[str, float]) -> dict[str, float]:
        for name, scale in value.items():
            if not -4.0 <= scale <= 4.0:
                raise ValueError(f"scale of {name!r} must be between -4 and 4, got {scale}")
        return value

    @property
    def display_name(self) -> str:
        return self.name or self.id

    def public(self) -> dict[str, Any]:
        """The config as shown to clients: the canary and secrets in model_config are masked."""
        data = self.model_dump(by_alias=True)
        if data.get("secret") is not None:
            data["secret"] = "***"
        data["model_config"] = {
            k: ("***" if "key" in k.lower() or "secret" in k.lower() else v)
            for k, v in self.model_config_.items()
        }
        return data


def _bad_config(exc: ValidationError) -> BadRequestError:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return BadRequestError(f"invalid persona config: {problems}", code="invalid_persona_config")


class PersonaStore:
    """Persona configs on disk under ``<home>/personas/``."""

    def __init__(self, home: Path) -> None:
        self.root = home / "personas"

    def directory(self, persona_id: str) -> Path:
        return self.root / validate_persona_id(persona_id)

    def exists(self, persona_id: str) -> bool:
        return (self.directory(persona_id) / CONFIG_FILE).is_file()

    def create(self, data: dict[str, Any]) -> PersonaConfig:
        try:
            config = PersonaConfig.model_validate(data)
        except ValidationError as exc:
            raise _bad_config(exc) from None
        if self.exists(config.id):
            raise ConflictError(f"persona {config.id!r} already exists", code="persona_exists")
        return self.save(config)

    def save(self, config: PersonaConfig) -> PersonaConfig:
        directory = self.directory(config.id)
        for sub in ("artifacts", "logs"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        config.session_directory = str(directory)
        tmp = directory / f".{CONFIG_FILE}.tmp"
        tmp.write_text(json.dumps(config.model_dump(by_alias=True), indent=2) + "\n", encoding="utf-8")
        # persona.json may hold an API key: owner-only.
        os.chmod(tmp, 0o600)
        os.replace(tmp, directory / CONFIG_FILE)
        return config

    def load(self, persona_id: str) -> PersonaConfig:
        path = self.directory(persona_id) / CONFIG_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFoundError(
                f"no persona {persona_id!r}; create it with 'personad persona create {persona_id}'",
                code="persona_not_found",
            ) from None
        except json.JSONDecodeError as exc:
            raise BadRequestError(f"{path} is not valid JSON: {exc}", code="invalid_persona_config") from None
        try:
            return PersonaConfig.model_validate(data)
        except ValidationError as exc:
            raise _bad_config(exc) from None

    def update(self, persona_id: str, changes: dict[str, Any]) -> PersonaConfig:
        current = self.load(persona_id).model_dump(by_alias=True)
        current.update(changes)
        current["id"] = persona_id
        try:
            return self.save(PersonaConfig.model_validate(current))
        except ValidationError as exc:
            raise _bad_config(exc) from None

    def list_personas(self) -> list[PersonaConfig]:
        if not self.root.is_dir():
            return []
        return [self.load(p.name) for p in sorted(self.root.iterdir()) if (p / CONFIG_FILE).is_file()]

    def delete(self, persona_id: str) -> None:
        directory = self.directory(persona_id)
        if not (directory / CONFIG_FILE).is_file():
            raise NotFoundError(f"no persona {persona_id!r}", code="persona_not_found")
        shutil.rmtree(directory)
