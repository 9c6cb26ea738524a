"""Browser commands on real headless Chromium, through the public transports."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.browser.site import serve
from tests.conftest import RunningDaemon

pytestmark = pytest.mark.browser

PAGES = {
    "/halves": b"""<!doctype html><html><body style="margin:0">
<div style="height:360px;background:rgb(255,0,0)"></div>
<div style="height:360px;background:rgb(0,0,255)"></div>
<div id="box" style="position:absolute;left:40px;top:40px;width:100px;height:50px;
  background:rgb(0,200,0)"></div>
</body></html>""",
    "/tall": b"""<!doctype html><body style="margin:0">
<div style="height:3000px;background:#eee"></div></body>""",
    "/console": b"""<!doctype html><title>noisy</title><script>
console.log("hello-console", 42); console.warn("careful"); console.error("bad thing");
setTimeout(() => { throw new Error("uncaught-boom"); }, 0);
</script>""",
    "/plain": b"<!doctype html><title>plain</title><p id='p'>original</p>",
}


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve(PAGES) as url:
        yield url


def test_screenshot_has_the_expected_pixels(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws(session="shots") as ws:
        reply = ws.call("screenshot", {"url": f"{site}/halves", "filename": "halves.png"})
        assert reply["ok"], reply
        shot = reply["result"]
        assert (shot["width"], shot["height"], shot["format"]) == (1280, 720, "png")
        artifacts = shared_daemon.home / "sessions" / "shots" / "artifacts"
        assert shot["path"] == str((artifacts / "screenshots" / "halves.png").resolve())
        with Image.open(shot["path"]) as image:
            rgb = image.convert("RGB")
            assert rgb.getpixel((600, 10)) == (255, 0, 0)
            assert rgb.getpixel((600, 700)) == (0, 0, 255)
            assert rgb.getpixel((90, 60)) == (0, 200, 0)
        assert shot["bytes"] == Path(shot["path"]).stat().st_size
        # The image is fetchable over HTTP with the token, and only with it.
        fetched = httpx.get(f"{shared_daemon.url}{shot['url']}?token={shared_daemon.token}")
        assert fetched.status_code == 200 and fetched.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert httpx.get(f"{shared_daemon.url}{shot['url']}").status_code == 401
        escape = httpx.get(
            f"{shared_daemon.url}/api/sessions/shots/artifacts/..%2F..%2F..%2Ftoken?token={shared_daemon.token}"
        )
        assert escape.status_code in (403, 404) and escape.json()["ok"] is False

        element = ws.call("screenshot", {"selector": "#box"})["result"]
        assert (element["width"], element["height"]) == (100, 50)
        jpeg = ws.call("screenshot", {"format": "jpeg", "quality": 70})["result"]
        assert jpeg["path"].endswith(".jpg")
        assert Path(jpeg["path"]).read_bytes()[:3] == b"\xff\xd8\xff"
        full = ws.call("screenshot", {"url": f"{site}/tall", "full_page": True})["result"]
        assert full["height"] == 3000
        bad = ws.call("screenshot", {"format": "png", "quality": 50})
        assert bad["error"]["code"] == "invalid_params"
        missing = ws.call("screenshot", {"selector": "#nope", "timeout_ms": 300})
        assert missing["error"]["code"] == "timeout"


def test_browser_js_returns_page_values(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws() as ws:
        assert ws.call("browser_js", {"script": "6*7"})["result"]["value"] == 42
        nav = ws.call("browser_navigate", {"url": f"{site}/plain"})["result"]
        assert nav["title"] == "plain" and nav["status"] == 200
        assert (
            ws.call("browser_js", {"script": "document.getElementById('p').textContent"})["result"]["value"]
            == "original"
        )
        value = ws.call("browser_js", {"script": "() => ({list: [1, 'two', null], n: 1.5})"})["result"][
            "value"
        ]
        assert value == {"list": [1, "two", None], "n": 1.5}
        encoded = base64.b64encode(b"[document.title, 'caf\xc3\xa9']").decode()
        assert ws.call("browser_js", {"script": encoded, "encoding": "base64"})["result"]["value"] == [
            "plain",
            "café",
        ]
        thrown = ws.call("browser_js", {"script": "throw new Error('kaboom')"})
        assert thrown["error"]["code"] == "browser_error" and "kaboom" in thrown["error"]["message"]
        hung = ws.call("browser_js", {"script": "new Promise(() => {})", "timeout_ms": 300})
        assert hung["error"]["code"] == "timeout"
        assert (
            ws.call("browser_js", {"script": "!!!", "encoding": "base64"})["error"]["code"]
            == "invalid_params"
        )
        # The page still works after errors and timeouts.
        assert ws.call("browser_js", {"script": "1+1"})["result"]["value"] == 2


def test_console_capture(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws() as ws:
        ws.call("browser_navigate", {"url": f"{site}/console"})
        deadline = time.monotonic() + 5
        while True:
            entries = ws.call("browser_console")["result"]["entries"]
            if any(e["type"] == "pageerror" for e in entries) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        kinds = {(e["type"], e["text"]) for e in entries}
        assert ("log", "hello-console 42") in kinds
        assert ("warning", "careful") in kinds
        assert ("error", "bad thing") in kinds
        assert any(t == "pageerror" and "uncaught-boom" in text for t, text in kinds)
        assert ws.call("browser_console", {"clear": True})["result"]["count"] == len(entries)
        assert ws.call("browser_console")["result"]["entries"] == []


def test_sessions_have_isolated_browser_state(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws() as a, shared_daemon.ws() as b:
        for ws in (a, b):
            ws.call("browser_navigate", {"url": f"{site}/plain"})
        a.call(
            "browser_js",
            {
                "script": "localStorage.setItem('k', 'a-secret'); document.cookie = 'c=a-cookie';"
                " document.getElementById('p').textContent = 'changed by a'; 1"
            },
        )
        assert a.call("browser_js", {"script": "localStorage.getItem('k')"})["result"]["value"] == "a-secret"
        seen_by_b = b.call(
            "browser_js",
            {
                "script": "[localStorage.getItem('k'), document.cookie,"
                " document.getElementById('p').textContent]"
            },
        )["result"]["value"]
        assert seen_by_b == [None, "", "original"]


def test_context_closes_with_ephemeral_session(shared_daemon: RunningDaemon) -> None:
    with shared_daemon.ws() as ws:
        session_id = ws.welcome["data"]["session_id"]
        ws.call("browser_js", {"script": "1"})
        assert shared_daemon.daemon.browser.has_session(session_id)
    deadline = time.monotonic() + 5
    while shared_daemon.daemon.browser.has_session(session_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not shared_daemon.daemon.browser.has_session(session_id)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "chrome://settings", "javascript:alert(1)", "nourl"])
def test_navigate_refuses_local_and_internal_urls(shared_daemon: RunningDaemon, url: str) -> None:
    with shared_daemon.ws() as ws:
        assert ws.call("browser_navigate", {"url": url})["error"]["code"] == "invalid_url"
        assert ws.call("screenshot", {"url": url})["error"]["code"] == "invalid_url"


def test_screenshot_over_http_and_cli_match_ws(shared_daemon: RunningDaemon, site: str) -> None:
    from click.testing import CliRunner

    from personad.cli import main

    with shared_daemon.http(session="httpshots") as http:
        reply = http.post("/api/commands/screenshot", json={"url": f"{site}/halves"}).json()
        assert reply["ok"] and reply["result"]["width"] == 1280
        with Image.open(io.BytesIO(http.get(reply["result"]["url"]).content)) as image:
            assert image.convert("RGB").getpixel((600, 10)) == (255, 0, 0)
    result = CliRunner().invoke(
        main,
        ["exec", "screenshot", "-p", f"url={site}/halves", "--json", "--home", str(shared_daemon.home)],
    )
    assert result.exit_code == 0, result.output
    assert '"width": 1280' in result.output


@pytest.mark.parametrize("script", ["\x80", "é==", "💥"])
def test_base64_script_that_is_not_ascii_is_invalid_params(shared_daemon: RunningDaemon, script: str) -> None:
    """Found by the fuzz suite: b64decode raises ValueError (not binascii.Error) for non-ASCII text."""
    with shared_daemon.ws() as ws:
        reply = ws.call("browser_js", {"script": script, "encoding": "base64"})
        assert reply["ok"] is False and reply["error"]["code"] == "invalid_params", reply


def test_screenshot_with_its_folder_or_name_taken_is_a_clear_error(shared_daemon: RunningDaemon) -> None:
    """Found by the fuzz suite: a file named 'screenshots' made every later screenshot internal_error."""
    with shared_daemon.ws(session="shot-blocked") as ws:
        assert ws.call("file_write", {"path": "screenshots", "content": "x"})["ok"]
        blocked = ws.call("screenshot", {"url": "about:blank"})
        assert blocked["ok"] is False and blocked["error"]["code"] == "not_a_directory", blocked
    with shared_daemon.ws(session="shot-folder") as ws:
        assert ws.call("file_write", {"path": "screenshots/taken.png/inner", "content": "x"})["ok"]
        taken = ws.call("screenshot", {"url": "about:blank", "filename": "taken.png"})
        assert taken["ok"] is False and taken["error"]["code"] == "is_a_directory", taken
        assert ws.call("screenshot", {"url": "about:blank", "filename": "free.png"})["ok"]
