"""File commands stay inside the session's artifacts directory."""

from __future__ import annotations

import base64
import os

import pytest

from tests.conftest import RunningDaemon


def test_write_read_list_roundtrip(running: RunningDaemon) -> None:
    with running.ws(session="files1") as ws:
        wrote = ws.call("file_write", {"path": "notes/a.txt", "content": "héllo"})["result"]
        assert wrote["path"] == "notes/a.txt" and wrote["bytes"] == len("héllo".encode())
        ws.call("file_write", {"path": "notes/a.txt", "content": " world", "append": True})
        assert ws.call("file_read", {"path": "notes/a.txt"})["result"]["content"] == "héllo world"
        blob = bytes(range(256))
        ws.call(
            "file_write", {"path": "b.bin", "content": base64.b64encode(blob).decode(), "encoding": "base64"}
        )
        read = ws.call("file_read", {"path": "b.bin", "encoding": "base64"})["result"]
        assert base64.b64decode(read["content"]) == blob
        assert ws.call("file_read", {"path": "b.bin"})["error"]["code"] == "not_text"
        listing = ws.call("file_list", {"recursive": True})["result"]["entries"]
        assert {(e["path"], e["type"]) for e in listing} == {
            ("b.bin", "file"),
            ("notes", "dir"),
            ("notes/a.txt", "file"),
        }
        on_disk = running.home / "sessions" / "files1" / "artifacts" / "notes" / "a.txt"
        assert on_disk.read_text() == "héllo world"


@pytest.mark.parametrize(
    "path", ["../secret", "notes/../../x", "/etc/passwd", "\\etc\\passwd", "C:/windows", "a/../../b"]
)
def test_escapes_are_refused(running: RunningDaemon, path: str) -> None:
    with running.ws() as ws:
        for command, params in [
            ("file_write", {"path": path, "content": "x"}),
            ("file_read", {"path": path}),
            ("file_list", {"path": path}),
        ]:
            reply = ws.call(command, params)
            assert reply["ok"] is False and reply["error"]["code"] == "path_escape", (command, path)


def test_symlink_escape_is_refused(running: RunningDaemon, tmp_path: os.PathLike[str]) -> None:
    outside = running.home / "outside.txt"
    outside.write_text("host secret")
    with running.ws(session="files2") as ws:
        artifacts = running.home / "sessions" / "files2" / "artifacts"
        (artifacts / "link").symlink_to(outside)
        (artifacts / "dirlink").symlink_to(running.home)
        assert ws.call("file_read", {"path": "link"})["error"]["code"] == "path_escape"
        assert ws.call("file_write", {"path": "link", "content": "pwned"})["error"]["code"] == "path_escape"
        assert ws.call("file_read", {"path": "dirlink/token"})["error"]["code"] == "path_escape"
        assert ws.call("file_list", {"path": "dirlink"})["error"]["code"] == "path_escape"
        # Listing shows the link without following it.
        entries = {e["path"]: e["type"] for e in ws.call("file_list")["result"]["entries"]}
        assert entries["link"] == "symlink"
    assert outside.read_text() == "host secret"


def test_sessions_do_not_see_each_others_files(running: RunningDaemon) -> None:
    with running.ws(session="owner") as a, running.ws(session="other") as b:
        a.call("file_write", {"path": "mine.txt", "content": "private"})
        assert b.call("file_read", {"path": "mine.txt"})["error"]["code"] == "file_not_found"
        assert b.call("file_list")["result"]["entries"] == []


def test_unusual_names_and_contents_get_structured_errors(running: RunningDaemon) -> None:
    """Non-ASCII names work; over-long names, bad base64 and files in the way are clear errors, not 500s."""
    with running.ws(session="files-odd") as ws, running.http(session="files-odd") as http:
        assert ws.call("file_write", {"path": "é😀/ü.txt", "content": "ok"})["ok"] is True
        assert ws.call("file_read", {"path": "é😀/ü.txt"})["result"]["content"] == "ok"
        assert [e["path"] for e in ws.call("file_list", {"path": "é😀"})["result"]["entries"]] == [
            "é😀/ü.txt"
        ]
        cases = [
            ("file_write", {"path": "a" * 300, "content": "x"}, "name_too_long"),
            ("file_read", {"path": "d/" + "é" * 200}, "name_too_long"),
            ("file_list", {"path": "b" * 256}, "name_too_long"),
            ("file_write", {"path": "x.bin", "content": "é==", "encoding": "base64"}, "invalid_params"),
            ("file_write", {"path": "x.bin", "content": "abc", "encoding": "base64"}, "invalid_params"),
            ("file_write", {"path": "é😀/ü.txt/inner", "content": "x"}, "not_a_directory"),
        ]
        for command, params, code in cases:
            reply = ws.call(command, params)
            assert reply["ok"] is False and reply["error"]["code"] == code, (command, params, reply)
            response = http.post(f"/api/commands/{command}", json=params)
            assert response.status_code == 400 and response.json()["error"]["code"] == code
        assert ws.call("file_list", {})["ok"] is True
