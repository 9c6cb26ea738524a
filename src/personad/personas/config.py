"""Persona configuration (``<home>/personas/<id>/persona.json``) and the store that reads and writes it."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from personad.errors import BadRequestError, ConflictError, NotFoundError
from personad.privacy import SECRET_KEY, register_secret

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


HOME_ENV = "PERSONAD_HOME"
DEFAULT_HOME = ".continuum"  # the CLI's default too


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME)


ACADEMY_ROLES = ("student", "testing_droid", "protocol_sheriff")


class AcademySettings(BaseModel):
    """The seed's Academy argument: ``{enabled, role, trainingDomain, adversarialPartner}``.

    A ``testing_droid`` attacks, a ``protocol_sheriff`` judges, a ``student`` (the default) is trained; the
    adversarial partner is the persona on the other side (a droid's sheriff, a sheriff's droid).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: bool = True
    role: str = Field(default="student", description="student, testing_droid or protocol_sheriff")
    training_domain: str = Field(
        default="general",
        validation_alias=AliasChoices("training_domain", "trainingDomain"),
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        max_length=40,
    )
    adversarial_partner: str | None = Field(
        default=None, validation_alias=AliasChoices("adversarial_partner", "adversarialPartner")
    )

    @field_validator("role")
    @classmethod
    def _check_role(cls, value: str) -> str:
        if value not in ACADEMY_ROLES:
            raise ValueError(f"role must be one of {', '.join(ACADEMY_ROLES)}, got {value!r}")
        return value

    @field_validator("adversarial_partner")
    @classmethod
    def _check_partner(cls, value: str | None) -> str | None:
        return value if value is None else validate_persona_id(value)

    @classmethod
    def parse(cls, data: AcademySettings | dict[str, Any]) -> AcademySettings:
        if isinstance(data, AcademySettings):
            return data
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise BadRequestError(
                f"invalid academy settings: {problems}", code="invalid_persona_config"
            ) from None


_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def _snake_keys(config: dict[str, Any]) -> dict[str, Any]:
    """Provider settings in the seed's camelCase (``apiKey``, ``baseUrl``) under our names."""
    return {_CAMEL.sub(lambda m: "_" + m.group(1).lower(), k): v for k, v in config.items()}


def _seed_alias(name: str) -> AliasChoices:
    """Every field also under the seed README's camelCase name (``maxTokens``); ours come first."""
    return AliasChoices(name, to_camel(name))


MCP_SERVER_NAME = r"^[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*$"  # no '__': mcp__<server>__<tool> splits back


class McpServerConfig(BaseModel):
    """An external MCP server whose tools the persona may use (``mcp.<name>.<tool>``, capability ``mcp``).

    Either ``command`` (+ ``args``, ``env``) started over stdio, or ``url`` (+ ``headers``) over streamable
    HTTP. Name secret-bearing ``env``/``headers`` keys as such (``API_TOKEN``, ``Authorization``): their
    values are then masked when the config is shown and in every log line.
    """

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=AliasGenerator(validation_alias=_seed_alias)
    )

    name: str = Field(pattern=MCP_SERVER_NAME, max_length=32, description="a lowercase id: calc, web-search")
    command: str | None = Field(default=None, min_length=1, description="the stdio server's executable")
    args: list[str] = Field(default_factory=list, description="its arguments (stdio)")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment for it (stdio)")
    url: str | None = Field(
        default=None, pattern=r"^https?://", description="a streamable HTTP server's endpoint"
    )
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers sent to it (url)")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="seconds one tool call may take")
    tools: list[str] | None = Field(default=None, description="only these of its tools (default: all)")

    @model_validator(mode="after")
    def _check_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (stdio) or url (streamable HTTP), not both or neither")
        if self.url is not None and (self.args or self.env):
            raise ValueError("args and env are for a stdio server (command), not a url")
        if self.command is not None and self.headers:
            raise ValueError("headers are for an HTTP server (url), not a command")
        return self

    def secret_values(self) -> list[str]:
        """The values of its secret-named env and header keys."""
        return [v for k, v in {**self.env, **self.headers}.items() if SECRET_KEY.search(k)]


class PersonaConfig(BaseModel):
    """Everything that defines a persona. Saved as JSON; unknown keys are refused so typos surface.

    The seed's camelCase keys (``modelProvider``, ``modelConfig``, ``loraAdapters``, ``sessionDirectory``,
    ``databasePath``) are accepted as aliases; the config is always written back with our snake_case names.
    """

    model_config = ConfigDict(
        extra="forbid",
        protected_namespaces=(),
        populate_by_name=True,
        alias_generator=AliasGenerator(validation_alias=_seed_alias),
    )

    id: str
    name: str = ""
    model_provider: str = Field(
        default="local",
        description="a registered provider: local, anthropic, openai",
    )
    model_config_: dict[str, Any] = Field(
        default_factory=dict,
        alias="model_config",
        validation_alias=AliasChoices("model_config", "modelConfig", "model_config_"),
        description="provider settings (model, base_url, api_key)",
    )
    lora_adapters: list[str] = Field(
        default_factory=list,
        description="adapter stack, base first",
    )
    lora_scales: dict[str, float] = Field(
        default_factory=dict,
        description="per-adapter scale where not 1.0 (see lora_load_stack)",
    )
    capabilities: list[str] = Field(default_factory=lambda: list(DEFAULT_CAPABILITIES))
    session_directory: str | None = Field(
        default=None,
        description="the persona's session folder (artifacts, logs, brain): <home>/personas/<id>/ unless"
        " given; always inside the home (a path is read relative to the home)",
    )
    database_path: str | None = Field(
        default=None,
        description="its brain (SQLite): <session_directory>/brain.sqlite unless given; inside the home",
    )
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
        json_schema_extra={"secret": True},
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
    academy: AcademySettings | None = Field(
        default=None, description="its Academy role: {enabled, role, training_domain, adversarial_partner}"
    )
    mcp_servers: list[McpServerConfig] = Field(
        default_factory=list,
        description="external MCP servers whose tools it may use as mcp.<server>.<tool> (capability mcp)",
    )
    autostart: bool = False
    created_at: float = Field(default_factory=time.time)

    @field_validator("model_config_")
    @classmethod
    def _check_model_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _snake_keys(value)

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

    @field_validator("mcp_servers")
    @classmethod
    def _check_mcp_servers(cls, value: list[McpServerConfig]) -> list[McpServerConfig]:
        names = [server.name for server in value]
        if len(set(names)) != len(names):
            raise ValueError("two MCP servers have the same name")
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
        for server in data.get("mcp_servers") or []:  # secret-named env and header values of MCP servers
            for part in ("env", "headers"):
                server[part] = {k: ("***" if SECRET_KEY.search(k) else v) for k, v in server[part].items()}
        return data


def _register_keys(config: PersonaConfig) -> None:
    """The provider keys in a config are masked in every log line of this process (privacy.py)."""
    for key, value in config.model_config_.items():
        if SECRET_KEY.search(key):
            register_secret(value)
    for server in config.mcp_servers:
        for value in server.secret_values():
            register_secret(value)


def parse_config(data: dict[str, Any]) -> PersonaConfig:
    """A persona config from a dict (ours or the seed's shape), or ``invalid_persona_config``."""
    try:
        return PersonaConfig.model_validate(data)
    except ValidationError as exc:
        raise _bad_config(exc) from None


def _bad_config(exc: ValidationError) -> BadRequestError:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return BadRequestError(f"invalid persona config: {problems}", code="invalid_persona_config")


def inside_home(home: Path, value: str, what: str) -> Path:
    """``value`` as a path inside ``home``. It is taken as given (from the current directory when relative)
    when that lies in the home; otherwise it is read relative to the home, a leading ``/`` meaning the home
    (the seed's ``/personas/x/brain.sqlite`` lands at ``<home>/personas/x/brain.sqlite``, its
    ``.continuum/personas/x/`` is the default home's own folder). A path that climbs out is refused."""
    root = home.resolve()
    path = Path(value)
    for candidate in (
        path.resolve(),
        (root / Path(*path.parts[1:] if path.is_absolute() else path.parts)).resolve(),
    ):
        if candidate.is_relative_to(root) and candidate != root:
            return candidate
    raise BadRequestError(
        f"{what} {value!r} is outside the daemon's home ({root}); give a path inside it,"
        " e.g. 'personas/<id>/'",
        code="path_outside_home",
    )


class PersonaStore:
    """Persona configs on disk under ``<home>/personas/``.

    ``persona.json`` always lives in ``<home>/personas/<id>/`` (the index); the session folder and the
    brain may be elsewhere in the home when the config names them (``session_directory``,
    ``database_path``).
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = home / "personas"

    def directory(self, persona_id: str) -> Path:
        """Where ``persona.json`` is (and, by default, the session folder)."""
        return self.root / validate_persona_id(persona_id)

    def session_dir(self, persona_id: str) -> Path:
        """The persona's session folder: artifacts, logs, commands.jsonl and (by default) its brain."""
        config = self.load(persona_id)
        return Path(config.session_directory) if config.session_directory else self.directory(persona_id)

    def brain_path(self, persona_id: str) -> Path:
        config = self.load(persona_id)
        if config.database_path:
            return Path(config.database_path)
        return self.session_dir(persona_id) / "brain.sqlite"

    def brain_path_for(self, config: PersonaConfig) -> Path:
        """Where ``config``'s brain is (saved or not)."""
        placed = config.model_copy()
        self._place(placed)
        return Path(placed.database_path or Path(placed.session_directory or "") / "brain.sqlite")

    def _place(self, config: PersonaConfig) -> None:
        """Resolve the config's folders inside the home (refusing escapes), before anything is written."""
        default = self.directory(config.id)
        given = config.session_directory
        moved = given is not None and not Path(given).resolve().is_relative_to(self.home.resolve())
        if (
            given
            and moved
            and Path(given).is_absolute()
            and Path(given).parts[-2:] == ("personas", config.id)
        ):
            given = None  # the default folder of a home that has since moved: the default here
        if given:
            config.session_directory = str(inside_home(self.home, given, "session_directory"))
        else:
            config.session_directory = str(default)
        if config.database_path:
            config.database_path = str(inside_home(self.home, config.database_path, "database_path"))

    def exists(self, persona_id: str) -> bool:
        return (self.directory(persona_id) / CONFIG_FILE).is_file()

    def create(
        self, data: dict[str, Any], check: Callable[[PersonaConfig], None] | None = None
    ) -> PersonaConfig:
        """Validate, ``check`` (e.g. :func:`personad.personas.checks.check_persona`) and save it."""
        try:
            config = PersonaConfig.model_validate(data)
        except ValidationError as exc:
            raise _bad_config(exc) from None
        if self.exists(config.id):
            raise ConflictError(f"persona {config.id!r} already exists", code="persona_exists")
        self._place(config)
        if check is not None:
            check(config)
        return self.save(config)

    def save(self, config: PersonaConfig) -> PersonaConfig:
        self._place(config)
        _register_keys(config)
        directory = self.directory(config.id)
        directory.mkdir(parents=True, exist_ok=True)
        for sub in ("artifacts", "logs"):
            (Path(config.session_directory or directory) / sub).mkdir(parents=True, exist_ok=True)
        if config.database_path:
            Path(config.database_path).parent.mkdir(parents=True, exist_ok=True)
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
            config = PersonaConfig.model_validate(data)
        except ValidationError as exc:
            raise _bad_config(exc) from None
        self._place(config)
        _register_keys(config)
        return config

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
