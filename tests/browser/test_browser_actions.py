"""Using a page as a person does, through the bus: snapshot refs, forms, clicks, dialogs, tabs, uploads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.site import ref, serve
from tests.conftest import RunningDaemon, WsClient

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve() as url:
        yield url


def ok(ws: WsClient, command: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = ws.call(command, params)
    assert reply.get("ok"), reply
    return dict(reply["result"])


def error(ws: WsClient, command: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = ws.call(command, params)
    assert reply.get("ok") is False, reply
    return dict(reply["error"])


def open_form(ws: WsClient, site: str) -> str:
    ok(ws, "browser_navigate", {"url": f"{site}/form"})
    return str(ok(ws, "browser_snapshot")["snapshot"])


def test_snapshot_shows_roles_names_and_stable_refs(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws() as ws:
        ok(ws, "browser_navigate", {"url": f"{site}/form"})
        first = ok(ws, "browser_snapshot")
        print(first["snapshot"])
        assert first["url"] == f"{site}/form" and first["title"] == "form"
        text = first["snapshot"]
        assert '- heading "Order" [level=1]' in text
        for role, name in [
            ("textbox", "First name"),
            ("textbox", "Email"),
            ("combobox", "Color"),
            ("checkbox", "Agree"),
            ("button", "Submit"),
            ("link", "Second page"),
            ("button", "Attachment"),
        ]:
            ref(text, role, name)
        assert first["refs"] >= 10 and first["truncated"] is False
        assert '- /url: "/second"' in text
        assert "[disabled]" in text and '- option "Red" [selected]' in text
        # Refs stay with their elements.
        again = ok(ws, "browser_snapshot")["snapshot"]
        assert ref(again, "textbox", "First name") == ref(text, "textbox", "First name")
        assert ref(again, "button", "Submit") == ref(text, "button", "Submit")


def test_form_flow_by_refs(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws() as ws:
        text = open_form(ws, site)
        filled = ok(
            ws,
            "browser_fill_form",
            {
                "fields": [
                    {"ref": ref(text, "textbox", "First name"), "value": "Ada"},
                    {"ref": ref(text, "textbox", "Email"), "value": "ada@example.org"},
                ]
            },
        )
        assert [f["kind"] for f in filled["filled"]] == ["text", "text"]
        assert f'textbox "First name" [ref={ref(text, "textbox", "First name")}]: "Ada"' in filled["snapshot"]
        selected = ok(
            ws, "browser_select_option", {"ref": ref(text, "combobox", "Color"), "values": ["Green"]}
        )
        assert selected["selected"] == ["g"] and 'combobox "Color"' in selected["snapshot"]
        assert '- option "Green" [selected]' in selected["snapshot"]
        checked = ok(
            ws, "browser_fill_form", {"fields": [{"ref": ref(text, "checkbox", "Agree"), "value": True}]}
        )
        assert checked["filled"][0]["kind"] == "checkbox"
        assert '- checkbox "Agree" [checked]' in checked["snapshot"]
        clicked = ok(ws, "browser_click", {"ref": ref(text, "button", "Submit"), "element": "Submit button"})
        assert clicked["clicked"] == {"ref": ref(text, "button", "Submit")}
        assert '"Result: Ada|ada@example.org|g|true"' in clicked["snapshot"]
        assert clicked["title"] == "Result: Ada|ada@example.org|g|true"
        # Typing (key by key, then Enter submits the form) and unchecking through a selector.
        ok(ws, "browser_fill_form", {"fields": [{"selector": "#agree", "value": "false"}]})
        typed = ok(
            ws,
            "browser_type",
            {"ref": ref(text, "textbox", "First name"), "text": "Bo", "slowly": True, "submit": True},
        )
        assert typed["typed"]["submitted"] is True
        assert '"Result: Bo|ada@example.org|g|false"' in typed["snapshot"]
        pressed = ok(ws, "browser_press_key", {"key": "Control+a", "target": {"selector": "#first"}})
        assert pressed["pressed"] == "Control+a"


def test_bad_targets_are_structured_errors(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws() as ws:
        text = open_form(ws, site)
        submit = ref(text, "button", "Submit")
        unknown = error(ws, "browser_click", {"ref": "e999999"})
        assert unknown["code"] == "ref_not_found" and "browser_snapshot" in unknown["message"]
        # A ref from a page that is gone matches nothing on the next one.
        ok(ws, "browser_navigate", {"url": f"{site}/second"})
        stale = error(ws, "browser_click", {"ref": submit})
        assert stale["code"] == "ref_not_found" and stale["details"] == {"ref": submit}
        assert ref(ok(ws, "browser_snapshot")["snapshot"], "link", "Back to the form") != submit
        text = open_form(ws, site)
        submit = ref(text, "button", "Submit")
        assert error(ws, "browser_click", {"selector": "#nothing-here"})["code"] == "element_not_found"
        assert error(ws, "browser_click", {"selector": "##!"})["code"] == "invalid_selector"
        disabled = error(ws, "browser_click", {"selector": "#off", "timeout_ms": 300})
        assert disabled["code"] == "element_not_interactable" and "not enabled" in disabled["message"]
        not_a_field = error(ws, "browser_fill_form", {"fields": [{"ref": submit, "value": "x"}]})
        assert not_a_field["code"] == "element_not_interactable" and "fields[0]" in not_a_field["message"]
        maybe = error(ws, "browser_fill_form", {"fields": [{"selector": "#agree", "value": "maybe"}]})
        assert maybe["code"] == "invalid_value"
        assert error(ws, "browser_fill_form", {"fields": [{"selector": "#first", "value": True}]})[
            "code"
        ] == ("invalid_value")
        missing = error(ws, "browser_select_option", {"selector": "#color", "values": ["Blue"]})
        assert missing["code"] == "option_not_found" and "Green" in missing["message"]
        assert error(ws, "browser_select_option", {"ref": submit, "values": ["x"]})["code"] == (
            "element_not_interactable"
        )
        assert error(ws, "browser_press_key", {"key": "NoSuchKey"})["code"] == "invalid_key"
        assert error(ws, "browser_type", {"ref": submit, "text": "x", "timeout_ms": 300})["code"] == (
            "element_not_interactable"
        )
        for bad in (
            {"ref": "x1"},  # not a ref's shape
            {"ref": submit, "selector": "#first"},  # both
            {},  # neither
            {"ref": submit, "button": "side"},
            {"ref": submit, "modifiers": ["Hyper"]},
            {"ref": submit, "timeout_ms": 10**9},
        ):
            assert error(ws, "browser_click", bad)["code"] == "invalid_params", bad
        assert error(ws, "browser_fill_form", {"fields": []})["code"] == "invalid_params"
        assert error(ws, "browser_drag", {"start": {"ref": submit}})["code"] == "invalid_params"


def test_back_and_forward(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws() as ws:
        text = open_form(ws, site)
        followed = ok(ws, "browser_click", {"ref": ref(text, "link", "Second page")})
        assert followed["url"] == f"{site}/second" and '- heading "Second"' in followed["snapshot"]
        back = ok(ws, "browser_back")
        assert back["navigated"] is True and back["url"] == f"{site}/form" and back["title"] == "form"
        forward = ok(ws, "browser_forward")
        assert forward["url"] == f"{site}/second" and '- heading "Second"' in forward["snapshot"]
        assert ok(ws, "browser_forward")["navigated"] is False  # nothing ahead


def test_dialogs_accepted_dismissed_and_armed(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws() as ws:
        text = open_form(ws, site)
        opened = ok(ws, "browser_click", {"ref": ref(text, "button", "Ask")})
        assert opened["snapshot"] is None
        assert opened["dialog"] == {"type": "confirm", "message": "Sure?", "default_value": ""}
        pending = error(ws, "browser_snapshot")
        assert pending["code"] == "dialog_pending" and "browser_handle_dialog" in pending["message"]
        assert error(ws, "browser_click", {"ref": ref(text, "button", "Ask")})["code"] == "dialog_pending"
        accepted = ok(ws, "browser_handle_dialog", {"accept": True})
        assert accepted["handled"]["accepted"] is True and accepted["handled"]["message"] == "Sure?"
        assert '"answer: yes"' in accepted["snapshot"]
        ok(ws, "browser_click", {"ref": ref(text, "button", "Ask")})
        assert '"answer: no"' in ok(ws, "browser_handle_dialog", {"accept": False})["snapshot"]
        # Armed before: the next dialog is answered as it opens, and the click returns the snapshot.
        armed = ok(ws, "browser_handle_dialog", {"accept": True, "prompt_text": "Bo"})
        assert armed["armed"] == {"accepted": True, "prompt_text": "Bo"}
        prompted = ok(ws, "browser_click", {"ref": ref(text, "button", "Prompt")})
        assert '"name: Bo"' in prompted["snapshot"] and "dialog" not in prompted
        assert error(ws, "browser_handle_dialog", {})["code"] == "invalid_params"


def test_file_upload_only_from_the_artifacts(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws(session="uploader") as ws:
        ok(ws, "file_write", {"path": "up/hello.txt", "content": "hello"})
        ok(ws, "file_write", {"path": "two.txt", "content": "2"})
        text = open_form(ws, site)
        chooser = ref(text, "button", "Attachment")
        uploaded = ok(ws, "browser_file_upload", {"ref": chooser, "paths": ["up/hello.txt", "two.txt"]})
        assert uploaded["uploaded"] == ["hello.txt", "two.txt"]
        assert '"files: hello.txt:5,two.txt:1"' in uploaded["snapshot"]
        # Through the chooser a clicked element opens (a label for the input).
        via_label = ok(ws, "browser_file_upload", {"selector": "label[for=upload]", "paths": ["two.txt"]})
        assert '"files: two.txt:1"' in via_label["snapshot"]
        artifacts = shared_daemon.home / "sessions" / "uploader" / "artifacts"
        secret = Path(shared_daemon.home) / "outside.txt"
        secret.write_text("not yours")
        os.symlink(secret, artifacts / "link.txt")
        for path in ("../outside.txt", "/etc/passwd", str(secret), "link.txt", "up/../../outside.txt"):
            refused = error(ws, "browser_file_upload", {"ref": chooser, "paths": [path]})
            assert refused["code"] == "path_escape", (path, refused)
        missing = error(ws, "browser_file_upload", {"ref": chooser, "paths": ["nope.txt"]})
        assert missing["code"] == "file_not_found"
        not_input = error(
            ws, "browser_file_upload", {"selector": "h1", "paths": ["two.txt"], "timeout_ms": 500}
        )
        assert not_input["code"] == "timeout"  # a heading opens no file chooser


def test_tabs(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws() as ws:
        open_form(ws, site)
        listed = ok(ws, "browser_tabs")
        assert [(t["index"], t["title"], t["current"]) for t in listed["tabs"]] == [(0, "form", True)]
        new = ok(ws, "browser_tabs", {"action": "new", "url": f"{site}/second"})
        assert new["current"] == 1 and [t["title"] for t in new["tabs"]] == ["form", "second"]
        assert '- heading "Second"' in ok(ws, "browser_snapshot")["snapshot"]
        assert ok(ws, "browser_js", {"script": "document.title"})["value"] == "second"
        ok(ws, "browser_tabs", {"action": "select", "index": 0})
        assert ok(ws, "browser_snapshot")["title"] == "form"
        closed = ok(ws, "browser_tabs", {"action": "close", "index": 1})
        assert [t["title"] for t in closed["tabs"]] == ["form"] and closed["current"] == 0
        assert error(ws, "browser_tabs", {"action": "close"})["code"] == "last_tab"
        assert error(ws, "browser_tabs", {"action": "select", "index": 5})["code"] == "tab_not_found"
        assert error(ws, "browser_tabs", {"action": "select"})["code"] == "invalid_params"
        assert (
            error(ws, "browser_tabs", {"action": "new", "url": "file:///etc/passwd"})["code"] == "invalid_url"
        )
        assert (
            error(ws, "browser_tabs", {"action": "list", "url": f"{site}/form"})["code"] == "invalid_params"
        )
        assert error(ws, "browser_tabs", {"action": "open"})["code"] == "invalid_params"
        # A new blank tab, then closing the current one falls back to the one before it.
        ok(ws, "browser_tabs", {"action": "new"})
        after = ok(ws, "browser_tabs", {"action": "close"})
        assert after["current"] == 0 and len(after["tabs"]) == 1


def test_pdf_written_into_the_artifacts(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws(session="printer") as ws:
        open_form(ws, site)
        pdf = ok(ws, "browser_pdf", {"filename": "form"})
        assert pdf["artifact"] == "pdfs/form.pdf" and pdf["page_url"] == f"{site}/form"
        data = Path(pdf["path"]).read_bytes()
        assert data.startswith(b"%PDF") and pdf["bytes"] == len(data)
        assert (
            Path(pdf["path"]).parent
            == (shared_daemon.home / "sessions" / "printer" / "artifacts" / "pdfs").resolve()
        )
        for bad in ({"filename": "../x"}, {"filename": "a/b"}, {"format": "B7"}):
            assert error(ws, "browser_pdf", bad)["code"] == "invalid_params", bad


def test_network_requests_since_the_page_loaded(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws() as ws:
        open_form(ws, site)
        ok(ws, "browser_wait_for", {"time": 0.3})  # the page's fetch
        requests = ok(ws, "browser_network_requests")["requests"]
        seen = {(r["method"], r["url"], r["status"], r["resource_type"]) for r in requests}
        assert ("GET", f"{site}/form", 200, "document") in seen
        assert ("GET", f"{site}/pixel.png", 404, "image") in seen
        assert ("GET", f"{site}/api/data", 200, "fetch") in seen
        dynamic = ok(ws, "browser_network_requests", {"include_static": False})["requests"]
        assert all(r["resource_type"] != "image" for r in dynamic) and len(dynamic) == len(requests) - 1
        ok(ws, "browser_navigate", {"url": f"{site}/second"})
        after = ok(ws, "browser_network_requests")["requests"]
        assert [(r["url"], r["status"]) for r in after] == [(f"{site}/second", 200)]
        assert error(ws, "browser_network_requests", {"limit": 0})["code"] == "invalid_params"


def test_wait_for_text_and_its_timeout(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws() as ws:
        text = open_form(ws, site)
        ok(ws, "browser_click", {"ref": ref(text, "button", "Later")})
        arrived = ok(ws, "browser_wait_for", {"text": "Arrived"})
        assert '"Arrived"' in arrived["snapshot"] and arrived["waited"]["text"] == "Arrived"
        assert ok(ws, "browser_wait_for", {"text_gone": "Never shown"})["snapshot"]
        late = error(ws, "browser_wait_for", {"text": "Never shown", "timeout_ms": 300})
        assert late["code"] == "timeout" and "Never shown" in late["message"]
        stays = error(ws, "browser_wait_for", {"text_gone": "Arrived", "timeout_ms": 300})
        assert stays["code"] == "timeout"
        assert error(ws, "browser_wait_for", {})["code"] == "invalid_params"
        assert error(ws, "browser_wait_for", {"time": 61})["code"] == "invalid_params"
        assert error(ws, "browser_wait_for", {"text": "x", "timeout_ms": 120_000})["code"] == "invalid_params"


def test_hover_and_drag(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws() as ws:
        text = open_form(ws, site)
        hovered = ok(ws, "browser_hover", {"selector": "#hov"})
        assert '"hovered"' in hovered["snapshot"]
        dragged = ok(
            ws,
            "browser_drag",
            {"start": {"ref": ref(text, "generic", "Drag me")}, "end": {"selector": "#drop"}},
        )
        assert dragged["dragged"]["end"] == {"selector": "#drop"}
        assert '"dropped drag"' in dragged["snapshot"]
        assert error(ws, "browser_drag", {"start": {"ref": "e999999"}, "end": {"selector": "#drop"}})[
            "code"
        ] == ("ref_not_found")
