"""Persona configs on disk: validation, masking, permissions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from personad.errors import BadRequestError, ConflictError, NotFoundError
from personad.personas.config import PersonaConfig, PersonaStore


def test_create_load_list_delete(tmp_path: Path) -> None:
    store = PersonaStore(tmp_path)
    created = store.create(
        {
            "id": "patent-expert",
            "name": "USPTO Patent Specialist",
            "model_provider": "anthropic",
            "model_config": {"model": "claude-x", "api_key": "sk-secret"},
            "lora_adapters": ["continuum.legal", "continuum.legal.patent", "continuum.legal.patent.uspto"],
            "capabilities": ["chat", "browser_js", "screenshot", "devtools"],
        }
    )
    directory = tmp_path / "personas" / "patent-expert"
    assert created.session_directory == str(directory)
    assert (directory / "artifacts").is_dir() and (directory / "logs").is_dir()
    assert stat.S_IMODE((directory / "persona.json").stat().st_mode) == 0o600
    loaded = store.load("patent-expert")
    assert loaded.model_config_["api_key"] == "sk-secret"
    assert loaded.public()["model_config"] == {"model": "claude-x", "api_key": "***"}
    assert [c.id for c in store.list_personas()] == ["patent-expert"]
    with pytest.raises(ConflictError):
        store.create({"id": "patent-expert"})
    store.delete("patent-expert")
    assert not directory.exists()
    with pytest.raises(NotFoundError):
        store.load("patent-expert")


@pytest.mark.parametrize(
    "data",
    [
        {"id": "Bad Id"},
        {"id": "../escape"},
        {"id": "ok", "lora_adapters": ["Not.Valid"]},
        {"id": "ok", "lora_adapters": ["a", "a"]},
        {"id": "ok", "temperature": 5},
        {"id": "ok", "unknown_key": 1},
    ],
)
def test_invalid_configs_are_refused(tmp_path: Path, data: dict) -> None:
    with pytest.raises(BadRequestError):
        PersonaStore(tmp_path).create(data)


def test_python_constructor_takes_seed_shape() -> None:
    config = PersonaConfig(id="p", model_config={"model": "m"}, lora_adapters=["continuum.legal"])
    assert config.model_config_ == {"model": "m"} and config.display_name == "p"
