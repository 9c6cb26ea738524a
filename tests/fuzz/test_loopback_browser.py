"""The fuzz daemon's Chromium reaches 127.0.0.1 and nothing else: other hosts end at the local sink, fast."""

from __future__ import annotations

import time

import pytest

from tests.fuzz.conftest import Fuzz, open_ws
from tests.fuzz.strategies import is_safe_url

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(
    ("url", "sink_line"),
    [
        ("http://10.1.2.3/", "GET http://10.1.2.3/ HTTP/1.1"),
        ("http://example.org/", "GET http://example.org/ HTTP/1.1"),
        ("https://example.org/", "CONNECT example.org:443 HTTP/1.1"),
        ("http://localhost:8080/", "GET http://localhost:8080/ HTTP/1.1"),
        ("http://169.254.169.254/", "GET http://169.254.169.254/ HTTP/1.1"),
        ("http://[::1]:8080/", "GET http://[::1]:8080/ HTTP/1.1"),
        ("http://127.0.0.2/", "GET http://127.0.0.2/ HTTP/1.1"),
    ],
)
def test_non_loopback_navigation_fails_fast_at_the_sink(fuzz: Fuzz, url: str, sink_line: str) -> None:
    with open_ws(fuzz, session="loopback-check") as ws:
        started = time.monotonic()
        reply = ws.exchange(
            f'{{"type":"execute_command","id":"nav","data":{{"command":"browser_navigate",'
            f'"params":{{"url":"{url}","timeout_ms":10000}}}}}}',
            "nav",
        )
        elapsed = time.monotonic() - started
    assert reply["ok"] is False and reply["error"]["code"] == "browser_error", reply
    assert elapsed < 5, f"{url} took {elapsed:.1f}s"
    assert sink_line in fuzz.sink.seen(), "the request did not go to the sink proxy (so it may have left)"


def test_page_scripts_cannot_fetch_other_hosts(fuzz: Fuzz) -> None:
    with open_ws(fuzz, session="loopback-fetch") as ws:
        # A settled page first: a script cannot run while the page is still navigating.
        ws.exchange(
            '{"type":"execute_command","id":"blank","data":{"command":"browser_navigate",'
            '"params":{"url":"about:blank"}}}',
            "blank",
        )
        script = "fetch('http://example.net/x').then(r => 'reached ' + r.status).catch(e => 'blocked')"
        reply = ws.exchange(
            '{"type":"execute_command","id":"js","data":{"command":"browser_js","params":{"script":'
            f'"{script}"}}}}}}',
            "js",
        )
    assert reply["ok"] is True and reply["result"]["value"] == "blocked", reply
    assert "GET http://example.net/x HTTP/1.1" in fuzz.sink.seen()


def test_loopback_still_works(fuzz: Fuzz) -> None:
    with open_ws(fuzz, session="loopback-check") as ws:
        reply = ws.exchange(
            '{"type":"execute_command","id":"ok","data":{"command":"browser_navigate","params":{"url":'
            f'"http://127.0.0.1:{fuzz.port}/healthz"}}}}}}',
            "ok",
        )
    assert reply["ok"] is True and reply["result"]["status"] == 200, reply


@pytest.mark.parametrize(
    "url",
    ["http://example.org", " http://example.org", "HTTP://10.0.0.1/", "http://127.0.0.1@evil.org/",
     "http://127.0.0.1.evil.org/", "http:\\\\evil.org", "https://127.0.0.1:1/", "http://[::1]/"],
)  # fmt: skip
def test_fuzzed_urls_are_confined_before_sending(url: str) -> None:
    assert not is_safe_url(url)
