"""Hypothesis strategies for command params: valid-shaped (from each params JSON schema) and hostile."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import hypothesis_jsonschema._from_schema as _hjs
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as _cu
from hypothesis_jsonschema import from_schema

from tests.fuzz.names import PERSONA


class _LoopMany:
    """hypothesis-jsonschema 0.23.1 (the latest) drives ``cu.many`` as ``while elements.more():``; newer
    Hypothesis made ``many`` a ``with many(...) as e: for _ in e:`` object. This adapts the old calls."""

    _END = object()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._many = _cu.many(*args, **kwargs)
        self._many.__enter__()
        self._steps = iter(self._many)

    def more(self) -> bool:
        if next(self._steps, self._END) is self._END:
            self._many.__exit__(None, None, None)
            return False
        return True

    def reject(self, why: str | None = None) -> None:
        self._many.reject(why)


class _CompatUtils:
    many = _LoopMany

    def __getattr__(self, name: str) -> Any:
        return getattr(_cu, name)


if not hasattr(_cu.many, "more"):
    _hjs.cu = _CompatUtils()  # type: ignore[assignment]

# A marker value: rendered as a NaN / Infinity literal in the JSON text (json.dumps(allow_nan=True)).
NAN, INF = float("nan"), float("inf")

NASTY_STRINGS: tuple[str, ...] = (
    "",
    " ",
    "\x00",
    "\ud800",  # lone surrogates: legal as JSON escapes, not encodable as UTF-8
    "\udfff",
    "a\ud83d",
    "💥",
    "💥" * 40,
    "é",
    "名前.txt",
    "\u202eevil",
    "\ufeff",
    "x" * 256,
    "y" * 300,
    "z" * 5000,
    "a/" * 200,
    "../../etc/passwd",
    "/etc/passwd",
    "C:\\x",
    "..",
    ".",
    "NaN",
    "null",
    "%00",
    "\\",
    "\n\r\t",
    "SELECT 1",
    "<script>alert(1)</script>",
    "Traceback",
)

surrogates = st.integers(0xD800, 0xDFFF).map(chr)
any_chars = st.characters(codec=None, exclude_categories=())  # includes lone surrogates
hostile_text = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.text(any_chars, max_size=40),
    st.lists(st.sampled_from(["💥", "é", "\ud800", "a", "/", ".", "\x00", "名"]), max_size=30).map("".join),
    st.integers(200, 3000).map(lambda n: "n" * n),
)
special_numbers = st.sampled_from([NAN, INF, -INF, 10**30, -(10**30), 2**63, -(2**63) - 1, 1e308, -0.0, 0.5])

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    special_numbers,
    hostile_text,
)
json_junk = st.recursive(
    _leaf,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)


def deep(depth: int, leaf: Any = 0) -> Any:
    value: Any = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


nested_junk = st.one_of(json_junk, st.integers(20, 300).map(deep))


def wrong_type_for(value: Any) -> st.SearchStrategy[Any]:
    """A value of another JSON type than ``value``."""
    options: list[st.SearchStrategy[Any]] = [st.none(), st.just([]), st.just({}), st.just([value])]
    if not isinstance(value, str):
        options.append(hostile_text)
    if not isinstance(value, bool):
        options.append(st.booleans())
    if isinstance(value, bool) or not isinstance(value, int | float):
        options.append(special_numbers)
    if isinstance(value, int | float) and not isinstance(value, bool):
        options.append(st.sampled_from([str(value), "1", "ten"]))
    return st.one_of(options)


# Field-name hints: values that reach past "not found" into the handlers (the fuzz daemon has these).

HINTS: dict[str, st.SearchStrategy[Any]] = {
    "persona": st.sampled_from([PERSONA, "nobody", "Fuzzp", "fuzzp/../x"]),
    "student": st.sampled_from([PERSONA, "nobody"]),
    "room": st.sampled_from(["general", "fuzzroom", "nope", "Bad Room", "a" * 80]),
    "session": st.sampled_from(["api", PERSONA, "nobody", "bad id!"]),
    "path": st.sampled_from(["notes.txt", "a/b.txt", ".", "screenshots", "名前.txt", "..", "x" * 300]),
    "name": st.sampled_from(["continuum.legal", "x", "Bad.Name", "a..b", "fuzz"]),
    "sql": st.sampled_from(
        ["SELECT 1", "SELECT * FROM memories", "SELECT :a", "SELECT ?", "DELETE FROM memories", "PRAGMA x"]
    ),
    "params": st.one_of(st.just([]), st.just({}), json_junk),
    "query": st.sampled_from(["hello", "fuzz", "memory", "x y z", "*", "AND", '"', "NEAR("]),
    "script": st.sampled_from(
        [
            "1+1",
            "document.title",
            "() => [1, 'a', null, {b: 2}]",
            "NaN",
            "1/0",
            "throw new Error('boom')",
            "fetch('http://example.org/').then(r => r.status).catch(e => String(e))",
            "location.href",
            "undefined",
            "new Date()",
        ]
    ),
    "selector": st.sampled_from(["body", "h1", "#nope", ">>>", "xpath=//body", "::", "text=hello"]),
    "memory": st.one_of(
        st.just({"type": "fact", "content": "the sky is blue", "importance": 0.5}),
        st.just({"type": "observation", "content": "fuzz", "key": "k"}),
        st.dictionaries(st.sampled_from(["type", "content", "importance", "key", "context"]), json_junk),
    ),
    "goal_id": st.sampled_from(["g1", "nope", ""]),
}


def url_values(daemon_port: int) -> st.SearchStrategy[str]:
    """Only loopback, about: and data: URLs (and junk the daemon refuses before any navigation)."""
    path = st.text(st.characters(codec="ascii", categories=["L", "N"]), max_size=10)
    return st.one_of(
        st.sampled_from(["about:blank", "about:version", "data:text/html,<h1>hi</h1>", "data:,"]),
        path.map(lambda p: f"http://127.0.0.1:{daemon_port}/{p}"),
        st.just(f"http://127.0.0.1:{daemon_port}/healthz"),
        st.integers(1, 65535).map(lambda port: f"http://127.0.0.1:{port}/"),
        path.map(lambda p: f"data:text/html,<p>{p}</p><img src='http://example.org/{p}'>"),
        st.sampled_from(["file:///etc/passwd", "javascript:1", "chrome://version", "nope", ""]),
    )


_SAFE_URL = re.compile(r"^(about:|data:|http://127\.0\.0\.1(:\d{1,5})?(/|$))", re.IGNORECASE)
NAVIGABLE_SCHEMES = ("http", "https", "data", "about")  # personad.browser.commands.ALLOWED_SCHEMES


def is_safe_url(value: str) -> bool:
    """A URL Chromium may be sent to: loopback/about:/data:, or one the daemon refuses by scheme."""
    if _SAFE_URL.match(value):
        return True
    return urlsplit(value).scheme.lower() not in NAVIGABLE_SCHEMES


def confine_urls(params: Any) -> Any:
    """Belt and braces on top of the Chromium proxy: any ``url`` field that could leave 127.0.0.1 goes."""
    if isinstance(params, dict):
        for key, value in list(params.items()):
            if key == "url" and isinstance(value, str) and not is_safe_url(value):
                params[key] = "about:blank"
    return params


@st.composite
def valid_params(draw: st.DrawFn, schema: dict[str, Any], daemon_port: int) -> dict[str, Any]:
    """Params the schema accepts, with some fields swapped for values that reach deeper into handlers."""
    params = draw(from_schema(schema))
    properties = schema.get("properties", {})
    for key in properties:
        hint = url_values(daemon_port) if key == "url" else HINTS.get(key)
        if hint is not None and draw(st.integers(0, 2)) > 0:
            params[key] = draw(hint)
    return params


@st.composite
def hostile_params(draw: st.DrawFn, schema: dict[str, Any], daemon_port: int) -> Any:
    """A valid-shaped params object broken one or more ways, or something that is not an object at all."""
    base = draw(valid_params(schema, daemon_port))
    properties = list(schema.get("properties", {}))
    keys = properties or ["x"]
    kind = draw(
        st.sampled_from(
            [
                "wrong_type",
                "nasty_string",
                "special_number",
                "extra_key",
                "drop_key",
                "junk_value",
                "not_object",
                "many",
            ]
        )
    )
    if kind == "not_object":
        return draw(st.one_of(st.none(), st.lists(json_junk, max_size=3), hostile_text, special_numbers))
    for _ in range(draw(st.integers(2, 5)) if kind == "many" else 1):
        step = (
            kind
            if kind != "many"
            else draw(
                st.sampled_from(["wrong_type", "nasty_string", "special_number", "extra_key", "junk_value"])
            )
        )
        key = draw(st.sampled_from(keys))
        if step == "wrong_type":
            base[key] = draw(wrong_type_for(base.get(key)))
        elif step == "nasty_string":
            base[key] = draw(hostile_text)
        elif step == "special_number":
            base[key] = draw(special_numbers)
        elif step == "extra_key":
            base[draw(st.one_of(hostile_text, st.just("k" * 10_000)))] = draw(json_junk)
        elif step == "drop_key":
            base.pop(key, None)
        else:
            base[key] = draw(nested_junk)
    return base


def dumps(value: Any) -> str:
    """JSON text as a hostile client sends it: NaN/Infinity literals allowed, surrogates as \\u escapes."""
    return json.dumps(value, allow_nan=True, ensure_ascii=True)
