"""screenshot's coords, resolution and format (png / jpeg / webp) on real headless Chromium, over the bus."""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.browser.site import serve
from tests.conftest import RunningDaemon

pytestmark = pytest.mark.browser

PAGES = {
    # Red top half, blue bottom half of a 1280x720 viewport, a green 100x50 box at (40, 40).
    "/halves": b"""<!doctype html><html><body style="margin:0">
<div style="height:360px;background:rgb(255,0,0)"></div>
<div style="height:360px;background:rgb(0,0,255)"></div>
<div id="box" style="position:absolute;left:40px;top:40px;width:100px;height:50px;
  background:rgb(0,200,0)"></div>
</body></html>""",
    # 3000 px tall: red, green, blue bands of 1000 px; a 60x30 box far down the page.
    "/bands": b"""<!doctype html><html><body style="margin:0">
<div style="height:1000px;background:rgb(255,0,0)"></div>
<div style="height:1000px;background:rgb(0,200,0)"></div>
<div style="height:1000px;background:rgb(0,0,255)"></div>
<div id="deep" style="position:absolute;left:300px;top:2500px;width:60px;height:30px;
  background:rgb(255,255,0)"></div>
</body></html>""",
    # Red below 600 px wide, blue from 600; the width at load time is kept in the title.
    "/responsive": b"""<!doctype html><html><head><style>
body { margin: 0; background: rgb(0,0,255); } @media (max-width: 599px) { body { background: rgb(255,0,0); } }
</style></head><body><script>document.title = String(window.innerWidth);</script></body></html>""",
}


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve(PAGES) as url:
        yield url


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, read without PIL."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _rgb(path: str, xy: tuple[int, int]) -> tuple[int, int, int]:
    with Image.open(path) as image:
        pixel = image.convert("RGB").getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel[0], pixel[1], pixel[2]


def _near(actual: tuple[int, int, int], wanted: tuple[int, int, int], slack: int = 40) -> bool:
    """Colour match with room for lossy (jpeg / webp) encoding."""
    return all(abs(a - w) <= slack for a, w in zip(actual, wanted, strict=True))


def _ok(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["ok"], reply
    result: dict[str, Any] = reply["result"]
    return result


def _viewport(ws: Any) -> list[int]:
    value: list[int] = _ok(ws.call("browser_js", {"script": "[window.innerWidth, window.innerHeight]"}))[
        "value"
    ]
    return value


def test_coords_clip_is_exactly_that_size_and_those_pixels(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws(session="clip") as ws:
        shot = _ok(
            ws.call(
                "screenshot",
                {"url": f"{site}/halves", "coords": {"x": 40, "y": 40, "width": 100, "height": 50}},
            )
        )
        data = Path(shot["path"]).read_bytes()
        assert _png_size(data) == (100, 50)
        assert (shot["width"], shot["height"], shot["format"]) == (100, 50, "png")
        assert _rgb(shot["path"], (0, 0)) == (0, 200, 0) and _rgb(shot["path"], (99, 49)) == (0, 200, 0)

        # The list form; the clip straddles the red / blue border at y=360.
        straddle = _ok(ws.call("screenshot", {"coords": [0, 350, 21, 20]}))
        assert _png_size(Path(straddle["path"]).read_bytes()) == (21, 20)
        assert _rgb(straddle["path"], (10, 9)) == (255, 0, 0)
        assert _rgb(straddle["path"], (10, 10)) == (0, 0, 255)

        # A clip reaching the viewport's bottom-right corner exactly fits.
        corner = _ok(ws.call("screenshot", {"coords": [1270, 710, 10, 10]}))
        assert (corner["width"], corner["height"]) == (10, 10)


def test_coords_are_viewport_relative_and_page_relative_with_full_page(
    shared_daemon: RunningDaemon, site: str
) -> None:
    with shared_daemon.ws(session="clip-scroll") as ws:
        _ok(ws.call("browser_navigate", {"url": f"{site}/bands"}))
        _ok(ws.call("browser_js", {"script": "window.scrollTo(0, 1000); window.scrollY"}))
        for fmt in ("png", "webp"):
            seen = _ok(ws.call("screenshot", {"coords": [0, 0, 30, 20], "format": fmt}))
            assert (seen["width"], seen["height"]) == (30, 20)
            assert _near(_rgb(seen["path"], (15, 10)), (0, 200, 0)), fmt  # the green band is on screen
            deep = _ok(
                ws.call("screenshot", {"coords": [300, 2500, 60, 30], "full_page": True, "format": fmt})
            )
            assert (deep["width"], deep["height"]) == (60, 30)
            assert _near(_rgb(deep["path"], (30, 15)), (255, 255, 0)), fmt


def test_coords_outside_the_viewport_or_page_are_refused(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws(session="clip-out") as ws:
        _ok(ws.call("browser_navigate", {"url": f"{site}/halves"}))
        out = ws.call("screenshot", {"coords": [1200, 0, 100, 10]})
        assert out["ok"] is False and out["error"]["code"] == "clip_out_of_bounds", out
        assert out["error"]["details"] == {"viewport": {"width": 1280, "height": 720}}
        assert "1280x720" in out["error"]["message"]
        _ok(ws.call("browser_navigate", {"url": f"{site}/bands"}))
        below = ws.call("screenshot", {"coords": [0, 2990, 10, 20], "full_page": True, "format": "webp"})
        assert below["error"]["code"] == "clip_out_of_bounds", below
        assert below["error"]["details"] == {"page": {"width": 1280, "height": 3000}}
        # Nothing was written for the refused shots.
        folder = shared_daemon.home / "sessions" / "clip-out" / "artifacts" / "screenshots"
        assert not folder.exists() or list(folder.iterdir()) == []


def test_resolution_applies_to_this_shot_only(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws(session="res") as ws:
        small = _ok(
            ws.call("screenshot", {"url": f"{site}/responsive", "resolution": {"width": 400, "height": 300}})
        )
        assert (small["width"], small["height"]) == (400, 300)
        assert small["viewport"] == {"width": 400, "height": 300}
        assert _png_size(Path(small["path"]).read_bytes()) == (400, 300)
        assert _rgb(small["path"], (200, 150)) == (255, 0, 0)  # the narrow layout
        # The page was loaded at that size, and is back at the default size afterwards.
        assert _ok(ws.call("browser_js", {"script": "document.title"}))["value"] == "400"
        assert _viewport(ws) == [1280, 720]
        after = _ok(ws.call("screenshot", {}))
        assert (after["width"], after["height"]) == (1280, 720) and after["viewport"] == {
            "width": 1280,
            "height": 720,
        }
        assert _rgb(after["path"], (600, 300)) == (0, 0, 255)

        # The string form, and coords checked against the new viewport (outside the default one).
        big = _ok(ws.call("screenshot", {"resolution": "1920x1080", "coords": [1800, 1000, 120, 80]}))
        assert (big["width"], big["height"]) == (120, 80)
        assert _viewport(ws) == [1280, 720]


def test_viewport_is_restored_when_the_shot_fails(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws(session="res-fail") as ws:
        _ok(ws.call("browser_navigate", {"url": f"{site}/halves"}))
        failed = ws.call("screenshot", {"resolution": [500, 400], "coords": [450, 0, 100, 10]})
        assert failed["error"]["code"] == "clip_out_of_bounds", failed
        assert failed["error"]["details"] == {"viewport": {"width": 500, "height": 400}}
        assert _viewport(ws) == [1280, 720]
        missing = ws.call("screenshot", {"resolution": [500, 400], "selector": "#nope", "timeout_ms": 300})
        assert missing["error"]["code"] == "timeout", missing
        assert _viewport(ws) == [1280, 720]


def test_webp_from_chromium(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws(session="webp") as ws:
        shot = _ok(ws.call("screenshot", {"url": f"{site}/halves", "format": "webp", "filename": "halves"}))
        data = Path(shot["path"]).read_bytes()
        assert _is_webp(data), data[:16]
        assert shot["path"].endswith("/screenshots/halves.webp") and shot["format"] == "webp"
        assert (shot["width"], shot["height"]) == (1280, 720) and shot["bytes"] == len(data)
        assert _near(_rgb(shot["path"], (600, 10)), (255, 0, 0))
        assert _near(_rgb(shot["path"], (600, 700)), (0, 0, 255))

        clipped = _ok(
            ws.call(
                "screenshot", {"format": "webp", "coords": {"x": 40, "y": 40, "width": 100, "height": 50}}
            )
        )
        assert _is_webp(Path(clipped["path"]).read_bytes())
        assert (clipped["width"], clipped["height"]) == (100, 50)
        element = _ok(ws.call("screenshot", {"format": "webp", "selector": "#box"}))
        assert (element["width"], element["height"]) == (100, 50)
        assert _near(_rgb(element["path"], (50, 25)), (0, 200, 0))
        full = _ok(ws.call("screenshot", {"url": f"{site}/bands", "format": "webp", "full_page": True}))
        assert (full["width"], full["height"]) == (1280, 3000)
        assert _near(_rgb(full["path"], (10, 2900)), (0, 0, 255))
        deep = _ok(ws.call("screenshot", {"format": "webp", "selector": "#deep"}))  # scrolled into view
        assert (deep["width"], deep["height"]) == (60, 30)
        assert _near(_rgb(deep["path"], (30, 15)), (255, 255, 0))
        resized = _ok(ws.call("screenshot", {"format": "webp", "resolution": "640x480"}))
        assert (resized["width"], resized["height"]) == (640, 480)

        # quality reaches the encoder.
        _ok(
            ws.call(
                "browser_js",
                {"script": "document.body.style.background = 'linear-gradient(90deg, red, blue)'; 1"},
            )
        )
        sizes = [_ok(ws.call("screenshot", {"format": "webp", "quality": q}))["bytes"] for q in (5, 100)]
        assert sizes[0] < sizes[1], sizes


def test_formats_and_extensions(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.ws(session="ext") as ws:
        _ok(ws.call("browser_navigate", {"url": f"{site}/halves"}))
        cases = [
            ({"filename": "plain"}, "plain.png", "png"),
            ({"filename": "photo", "format": "jpeg", "quality": 60}, "photo.jpg", "jpeg"),
            ({"filename": "alias", "format": "JPG"}, "alias.jpg", "jpeg"),
            # The extension picks the format when format is not given.
            ({"filename": "inferred.webp"}, "inferred.webp", "webp"),
            ({"filename": "long.jpeg", "quality": 80}, "long.jpeg", "jpeg"),
            ({"filename": "UPPER.PNG", "format": "png"}, "UPPER.PNG", "png"),
        ]
        for params, name, fmt in cases:
            shot = _ok(ws.call("screenshot", params))
            assert Path(shot["path"]).name == name and shot["format"] == fmt, (params, shot)
            data = Path(shot["path"]).read_bytes()
            magic = {
                "png": data[:8] == b"\x89PNG\r\n\x1a\n",
                "jpeg": data[:3] == b"\xff\xd8\xff",
                "webp": _is_webp(data),
            }
            assert magic[fmt], (params, data[:12])
        generated = _ok(ws.call("screenshot", {"format": "webp"}))
        assert generated["artifact"].startswith("screenshots/screenshot-") and generated["artifact"].endswith(
            ".webp"
        )


BAD_PARAMS: list[tuple[dict[str, Any], list[str], str]] = [
    # (params, details[0].loc, details[0].type)
    ({"coords": [0, 0, 10]}, ["coords"], "invalid_coords"),
    ({"coords": "10,10"}, ["coords"], "invalid_coords"),
    ({"coords": "a,b,c,d"}, ["coords", "x"], "int_parsing"),
    ({"coords": [True, 0, 10, 10]}, ["coords"], "invalid_coords"),
    ({"coords": {"x": -1, "y": 0, "width": 10, "height": 10}}, ["coords", "x"], "greater_than_equal"),
    ({"coords": [0, -5, 10, 10]}, ["coords", "y"], "greater_than_equal"),
    ({"coords": [0, 0, 0, 10]}, ["coords", "width"], "greater_than"),
    ({"coords": [0, 0, 10, -1]}, ["coords", "height"], "greater_than"),
    ({"coords": [0, 0, 10.5, 10]}, ["coords", "width"], "int_from_float"),
    ({"coords": [0, 0, 20000, 10]}, ["coords", "width"], "less_than_equal"),
    ({"coords": [16000, 0, 1000, 10]}, ["coords"], "clip_too_large"),
    ({"coords": {"x": 0, "y": 0, "width": 10}}, ["coords", "height"], "missing"),
    ({"coords": {"x": 0, "y": 0, "width": 10, "height": 10, "z": 1}}, ["coords", "z"], "extra_forbidden"),
    ({"coords": 7}, ["coords"], "model_type"),
    ({"resolution": "800"}, ["resolution"], "invalid_resolution"),
    ({"resolution": "800x600x2"}, ["resolution"], "invalid_resolution"),
    ({"resolution": [800]}, ["resolution"], "invalid_resolution"),
    ({"resolution": {"width": 8, "height": 600}}, ["resolution", "width"], "greater_than_equal"),
    ({"resolution": {"width": 800, "height": 100000}}, ["resolution", "height"], "less_than_equal"),
    ({"resolution": "0x600"}, ["resolution", "width"], "greater_than_equal"),
    ({"format": "gif"}, ["format"], "literal_error"),
    ({"format": "jpeg", "quality": 101}, ["quality"], "less_than_equal"),
    ({"format": "png", "quality": 50}, [], "value_error"),
    ({"filename": "shot.png", "format": "jpeg"}, [], "extension_mismatch"),
    ({"filename": "shot.jpg", "format": "webp"}, [], "extension_mismatch"),
    ({"filename": "shot.txt"}, [], "extension_mismatch"),
    ({"filename": "shot."}, [], "extension_mismatch"),
    ({"filename": "../shot.png"}, [], "value_error"),
    ({"coords": [0, 0, 10, 10], "selector": "#box"}, [], "value_error"),
]


@pytest.mark.parametrize(("params", "loc", "kind"), BAD_PARAMS, ids=[str(p) for p, _, _ in BAD_PARAMS])
def test_bad_params_are_invalid_params(
    shared_daemon: RunningDaemon, params: dict[str, Any], loc: list[str], kind: str
) -> None:
    with shared_daemon.ws() as ws:
        reply = ws.call("screenshot", params)
    assert reply["ok"] is False, reply
    error = reply["error"]
    assert error["code"] == "invalid_params" and error["status"] == 400, error
    assert (error["details"][0]["loc"], error["details"][0]["type"]) == (loc, kind), error
    assert "screenshot" in error["message"]


def test_error_messages_say_what_works(shared_daemon: RunningDaemon) -> None:
    with shared_daemon.ws() as ws:
        gif = ws.call("screenshot", {"format": "gif"})["error"]["message"]
        assert all(f"'{f}'" in gif for f in ("png", "jpeg", "webp")), gif
        mismatch = ws.call("screenshot", {"filename": "shot.png", "format": "jpeg"})["error"]["message"]
        assert "'.jpg' or '.jpeg'" in mismatch and "shot.png" in mismatch, mismatch
        not_image = ws.call("screenshot", {"filename": "shot.txt"})["error"]["message"]
        assert "'.txt'" in not_image and ".webp" in not_image, not_image
        odd = ws.call("screenshot", {"coords": "what{ever}"})["error"]["message"]
        assert "x,y,width,height" in odd and "what{ever}" in odd, odd


def test_cli_string_forms(shared_daemon: RunningDaemon, site: str) -> None:
    from click.testing import CliRunner

    from personad.cli import main

    result = CliRunner().invoke(
        main,
        [
            "exec", "screenshot", "-p", f"url={site}/halves", "-p", "coords=40,40,100,50",
            "-p", "resolution=800x600", "-p", "format=webp", "-p", "quality=50",
            "--json", "--home", str(shared_daemon.home),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"width": 100' in result.output and '"height": 50' in result.output
    assert '"format": "webp"' in result.output


def test_http_serves_the_webp_artifact(shared_daemon: RunningDaemon, site: str) -> None:
    with shared_daemon.http(session="webp-http") as http:
        reply = http.post(
            "/api/commands/screenshot",
            json={"url": f"{site}/halves", "format": "webp", "coords": [0, 0, 64, 32]},
        ).json()
        assert reply["ok"], reply
        fetched = http.get(reply["result"]["url"])
        assert fetched.status_code == 200 and _is_webp(fetched.content)
        with Image.open(io.BytesIO(fetched.content)) as image:
            assert image.size == (64, 32)


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_a_hung_page_times_out(shared_daemon: RunningDaemon, fmt: str) -> None:
    """A renderer stuck in a loop: `timeout` (webp's DevTools call too), not internal_error."""
    with shared_daemon.ws() as ws:
        _ok(ws.call("browser_js", {"script": "setTimeout(() => { for (;;) {} }, 50); 1"}))
        time.sleep(0.5)
        hung = ws.call("screenshot", {"format": fmt, "timeout_ms": 500}, timeout=30)
        assert hung["ok"] is False and hung["error"]["code"] == "timeout", hung
