"""A small local site for the browser action tests: a form, a second page, dialogs, uploads, drag."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FORM = b"""<!doctype html><html><head><title>form</title></head><body>
<h1>Order</h1>
<form id="f" novalidate>
  <label for="first">First name</label> <input id="first">
  <label>Email <input id="email" type="email"></label>
  <label for="color">Color</label>
  <select id="color"><option value="r">Red</option><option value="g">Green</option></select>
  <label><input type="checkbox" id="agree"> Agree</label>
  <button type="submit">Submit</button>
  <button type="button" id="off" disabled>Off</button>
</form>
<p id="result"></p>
<a href="/second">Second page</a>
<button id="ask">Ask</button> <button id="named">Prompt</button>
<p id="answer"></p>
<label for="upload">Attachment</label> <input type="file" id="upload" multiple>
<p id="files"></p>
<div id="drag" draggable="true" style="width:80px;height:30px;background:#ccc">Drag me</div>
<div id="drop" style="width:200px;height:60px;border:1px solid #000">Drop here</div>
<div id="hov" onmouseenter="this.textContent = 'hovered'" style="width:100px;height:30px">Hover me</div>
<button id="later">Later</button>
<img src="/pixel.png" alt="pixel">
<script>
const $ = (id) => document.getElementById(id);
$("f").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = [$("first").value, $("email").value, $("color").value, $("agree").checked].join("|");
  $("result").textContent = "Result: " + text;
  document.title = "Result: " + text;
});
$("ask").onclick = () => { $("answer").textContent = confirm("Sure?") ? "answer: yes" : "answer: no"; };
$("named").onclick = () => { $("answer").textContent = "name: " + prompt("Name?", "x"); };
$("upload").onchange = function () {
  $("files").textContent = "files: " + Array.from(this.files).map((f) => f.name + ":" + f.size).join(",");
};
$("drag").addEventListener("dragstart", (e) => e.dataTransfer.setData("text/plain", "drag"));
$("drop").addEventListener("dragover", (e) => e.preventDefault());
$("drop").addEventListener("drop", (e) => {
  e.preventDefault(); $("drop").textContent = "dropped " + e.dataTransfer.getData("text/plain");
});
$("later").onclick = () => setTimeout(() => {
  const p = document.createElement("p"); p.textContent = "Arrived"; document.body.append(p);
}, 300);
fetch("/api/data").then((r) => r.text());
</script>
</body></html>"""

SECOND = b"""<!doctype html><title>second</title><h1>Second</h1><a href="/form">Back to the form</a>"""

PAGES = {"/form": FORM, "/second": SECOND, "/api/data": b'{"ok": true}'}


def _handler(pages: Mapping[str, bytes]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path.split("?")[0])
            self.send_response(200 if body else 404)
            kind = "application/json" if self.path.startswith("/api/") else "text/html; charset=utf-8"
            self.send_header("Content-Type", kind)
            self.end_headers()
            self.wfile.write(body or b"not found")

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve(pages: Mapping[str, bytes] = PAGES) -> Iterator[str]:
    """A local site serving ``pages`` (path -> body) on 127.0.0.1; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(pages))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def ref(snapshot: str, role: str, name: str) -> str:
    """The ref of the element with this role and accessible name in a browser_snapshot text."""
    named = rf'- {role} "{re.escape(name)}"[^\n]*\[ref=(e\d+)\]'
    holding = rf'- {role} \[ref=(e\d+)\]: "{re.escape(name)}"$'  # an element that holds only text
    match = re.search(named, snapshot) or re.search(holding, snapshot, re.M)
    assert match, f"no {role} {name!r} in snapshot:\n{snapshot}"
    return match[1]
