"""Sessions: directories, resume, conflicts, ids that cannot escape home."""

from __future__ import annotations

from pathlib import Path

import pytest

from personad.bus.sessions import Client, SessionManager
from personad.errors import BadRequestError, ConflictError


def test_open_creates_directory_and_resumes(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    s = manager.open(kind="console", session_id="cli")
    assert s.directory == tmp_path / "sessions" / "cli"
    assert (s.directory / "artifacts").is_dir() and (s.directory / "session.json").is_file()
    assert manager.open(kind="console", session_id="cli") is s
    assert manager.directory_for("persona", "p1") == tmp_path / "personas" / "p1"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "x" * 65, "a b"])
def test_session_ids_are_validated(tmp_path: Path, bad: str) -> None:
    with pytest.raises(BadRequestError):
        SessionManager(tmp_path).open(kind="api", session_id=bad)


def test_resume_with_other_capabilities_conflicts(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    narrow = manager.open(kind="api", session_id="s", capabilities=["chat"])
    with pytest.raises(ConflictError):
        manager.open(kind="api", session_id="s", capabilities=["*"])
    with pytest.raises(ConflictError):
        manager.open(kind="browser", session_id="s")
    assert manager.open(kind="api", session_id="s") is narrow  # no capabilities named: resume as it is


async def test_ephemeral_session_closes_with_last_client(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    closed: list[str] = []

    async def hook(session: object) -> None:
        closed.append(session.id)  # type: ignore[attr-defined]

    manager.on_close(hook)
    s = manager.open(kind="api")
    manager.attach(s, Client("c1"))
    manager.attach(s, Client("c2"))
    await manager.detach(s, "c1")
    assert closed == []
    await manager.detach(s, "c2")
    assert closed == [s.id] and manager.find(s.id) is None
    named = manager.open(kind="api", session_id="keep")
    manager.attach(named, Client("c3"))
    await manager.detach(named, "c3")
    assert manager.find("keep") is named
    assert await manager.close_idle(0) == 1 and closed[-1] == "keep"
