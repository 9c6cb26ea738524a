"""An accessibility snapshot of the session's page: a compact role tree whose elements carry stable refs.

Refs (``e1``, ``e2``, …) are written onto elements as a ``data-personad-ref`` attribute, so an element keeps
its ref across snapshots while it lives, and a ref from a page that is gone matches nothing. The counter
belongs to the session, so a ref is never reused for another element, not even on another page or tab.
"""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Error as PlaywrightError
from pydantic import BaseModel, ConfigDict, Field

from personad.browser.manager import SessionBrowser

REF_ATTRIBUTE = "data-personad-ref"
MAX_NODES = 3000
NAME_LIMIT = 120

# Walks the DOM (open shadow roots included, frames not), computing a role and accessible name the way
# ARIA does for the common cases, and writes one line per node: `- role "name" [state] [ref=eN]: value`.
_SNAPSHOT_JS = r"""([start, maxNodes, nameLimit, maxChars]) => {
  const ATTR = "data-personad-ref";
  let counter = start, nodes = 0, truncated = false, refs = 0;
  const lines = [];
  const clip = (s) => { s = (s || "").replace(/\s+/g, " ").trim();
    return s.length > nameLimit ? s.slice(0, nameLimit - 1) + "…" : s; };
  const q = (s) => JSON.stringify(s);
  const INPUT_ROLES = { button: "button", submit: "button", reset: "button", image: "button",
    checkbox: "checkbox", radio: "radio", range: "slider", number: "spinbutton", search: "searchbox",
    file: "button", color: "button" };
  const TAG_ROLES = { a: (e) => e.hasAttribute("href") ? "link" : null, button: () => "button",
    select: (e) => (e.multiple || e.size > 1) ? "listbox" : "combobox", option: () => "option",
    textarea: () => "textbox", h1: () => "heading", h2: () => "heading", h3: () => "heading",
    h4: () => "heading", h5: () => "heading", h6: () => "heading", img: (e) => e.alt === "" ? null : "img",
    ul: () => "list", ol: () => "list", li: () => "listitem", nav: () => "navigation", main: () => "main",
    form: () => "form", table: () => "table", tr: () => "row", td: () => "cell", th: () => "columnheader",
    dialog: () => "dialog", label: () => null, summary: () => "button", p: () => "paragraph",
    progress: () => "progressbar", iframe: () => "iframe", fieldset: () => "group" };
  const NAME_FROM_CONTENT = new Set(["button", "link", "heading", "option", "cell", "columnheader",
    "listitem", "menuitem", "tab", "checkbox", "radio", "switch", "treeitem", "row"]);
  const LEAF = new Set(["button", "textbox", "searchbox", "checkbox", "radio", "slider", "spinbutton",
    "img", "option", "switch", "combobox", "progressbar", "iframe"]);
  const roleOf = (e) => {
    const explicit = (e.getAttribute("role") || "").trim().split(/\s+/)[0];
    if (explicit && explicit !== "none" && explicit !== "presentation") return explicit;
    if (explicit) return null;
    const tag = e.localName;
    if (tag === "input") {
      const type = (e.getAttribute("type") || "text").toLowerCase();
      if (type === "hidden") return null;
      return INPUT_ROLES[type] || "textbox";
    }
    const f = TAG_ROLES[tag];
    if (f) return f(e);
    if (e.isContentEditable && !(e.parentElement && e.parentElement.isContentEditable)) return "textbox";
    return null;
  };
  const textOf = (e) => clip(e.innerText !== undefined ? e.innerText : e.textContent);
  const byIds = (ids) => ids.split(/\s+/).map((id) => document.getElementById(id))
    .filter(Boolean).map((n) => textOf(n)).join(" ");
  const nameOf = (e, role) => {
    const lb = e.getAttribute("aria-labelledby");
    if (lb) { const t = byIds(lb); if (t) return clip(t); }
    const al = e.getAttribute("aria-label");
    if (al && al.trim()) return clip(al);
    if (e.labels && e.labels.length) {
      const t = Array.from(e.labels).map((l) => textOf(l)).join(" ");
      if (t) return clip(t);
    }
    const tag = e.localName;
    if (tag === "img" || (tag === "input" && e.type === "image")) return clip(e.getAttribute("alt"));
    if (tag === "input" && ["button", "submit", "reset"].includes(e.type))
      return clip(e.value || (e.type === "submit" ? "Submit" : e.type === "reset" ? "Reset" : ""));
    if (NAME_FROM_CONTENT.has(role) || tag === "summary") { const t = textOf(e); if (t) return t; }
    if (e.getAttribute("placeholder")) return clip(e.getAttribute("placeholder"));
    return clip(e.getAttribute("title"));
  };
  const hidden = (e) => {
    if (e.getAttribute("aria-hidden") === "true") return true;
    if (e.localName === "option") return false;  // options of a closed select are not rendered
    if (e.checkVisibility) return !e.checkVisibility({ checkVisibilityCSS: true });
    const s = getComputedStyle(e); return s.display === "none" || s.visibility === "hidden";
  };
  const refFor = (e) => {
    let ref = e.getAttribute(ATTR);
    if (!ref) { counter += 1; ref = "e" + counter; e.setAttribute(ATTR, ref); }
    return ref;
  };
  const emit = (line) => {
    if (nodes >= maxNodes) { truncated = true; return false; }
    nodes += 1; lines.push(line); return true;
  };
  const walk = (node, depth) => {
    if (truncated) return;
    const pad = "  ".repeat(depth);
    if (node.nodeType === Node.TEXT_NODE) {
      const t = clip(node.textContent);
      if (t) emit(`${pad}- text: ${q(t)}`);
      return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    const e = node;
    if (["script", "style", "noscript", "template", "head", "meta", "link"].includes(e.localName)) return;
    if (hidden(e)) return;
    let role = roleOf(e);
    const children = e.shadowRoot ? [...e.shadowRoot.childNodes, ...e.childNodes] : [...e.childNodes];
    const ownText = children.every((c) => c.nodeType !== Node.ELEMENT_NODE)
      ? clip(children.map((c) => c.nodeType === Node.TEXT_NODE ? c.textContent : "").join(" ")) : null;
    // Any element that holds text itself (or can be dragged / clicked) is something to point at.
    if (!role && (ownText || e.getAttribute("draggable") === "true" || e.hasAttribute("onclick"))) {
      role = "generic";
    }
    if (role === "paragraph" && !ownText && !e.children.length) return;
    if (!role) { for (const c of children) walk(c, depth); return; }
    const plain = role === "generic" || role === "paragraph";
    const name = plain ? "" : nameOf(e, role);
    let line = `${pad}- ${role}${name ? " " + q(name) : ""}`;
    if (role === "heading") {
      const level = (e.localName.match(/^h(\d)$/) || [0, e.getAttribute("aria-level") || 2])[1];
      line += ` [level=${level}]`;
    }
    if (role === "checkbox" || role === "radio" || role === "switch") {
      const checked = e.indeterminate ? "mixed"
        : e.checked !== undefined ? e.checked : e.getAttribute("aria-checked") === "true";
      if (checked) line += checked === "mixed" ? " [checked=mixed]" : " [checked]";
    }
    if (role === "option" && e.selected) line += " [selected]";
    if (e.disabled || e.getAttribute("aria-disabled") === "true") line += " [disabled]";
    if (e === document.activeElement && e !== document.body) line += " [active]";
    line += ` [ref=${refFor(e)}]`;
    refs += 1;
    let value = null;
    if (e.localName === "input" && e.type === "file") {
      value = Array.from(e.files || []).map((f) => f.name).join(", ");
    }
    else if (["textbox", "searchbox", "spinbutton", "slider"].includes(role) && "value" in e) value = e.value;
    else if (role === "textbox" && e.isContentEditable) value = textOf(e);
    else if (role === "combobox" && e.localName === "select") {
      value = Array.from(e.selectedOptions).map((o) => o.label).join(", ");
    }
    if (plain && ownText) value = ownText;
    if (value) line += `: ${q(clip(value))}`;
    const href = role === "link" ? e.getAttribute("href") : null;
    if (plain && ownText !== null) return void emit(line);
    const nested = href || (!LEAF.has(role) && !NAME_FROM_CONTENT.has(role) && children.length);
    if (!emit(line + (nested ? ":" : ""))) return;
    if (href) emit(`${pad}  - /url: ${q(clip(href))}`);
    if (role === "combobox" || role === "listbox") {
      for (const o of e.querySelectorAll("option")) walk(o, depth + 1);
      return;
    }
    const inner = "a,button,input,select,textarea,[role],[draggable=true]";
    if (LEAF.has(role) || (NAME_FROM_CONTENT.has(role) && !e.querySelector(inner))) return;
    for (const c of children) walk(c, depth + 1);
  };
  walk(document.body || document.documentElement, 0);
  let text = lines.join("\n");
  if (text.length > maxChars) { text = text.slice(0, maxChars); truncated = true; }
  return { text, counter, truncated, refs };
}"""


class SnapshotParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_chars: int = Field(default=40_000, ge=1000, le=400_000, description="cut the snapshot text here")
    timeout_ms: int = Field(default=10_000, ge=100, le=60_000)


async def take_snapshot(
    state: SessionBrowser, *, max_chars: int = 40_000, timeout_ms: int = 10_000
) -> dict[str, Any]:
    """`{url, title, snapshot, refs, truncated}` of the current tab; retries while a navigation commits."""
    page = state.page
    for attempt in range(3):
        try:
            reply = await asyncio.wait_for(
                page.evaluate(_SNAPSHOT_JS, [state.ref_counter, MAX_NODES, NAME_LIMIT, max_chars]),
                timeout_ms / 1000,
            )
            title = await asyncio.wait_for(page.title(), timeout_ms / 1000)
            break
        except PlaywrightError as exc:
            # The document was replaced under us (a click that navigates): wait for the new one, retry.
            if attempt == 2 or ("context was destroyed" not in str(exc) and "navigat" not in str(exc)):
                raise
            await page.wait_for_load_state("domcontentloaded", timeout=timeout_ms)
    state.ref_counter = max(state.ref_counter, int(reply["counter"]))
    return {
        "url": page.url,
        "title": title,
        "snapshot": reply["text"],
        "refs": reply["refs"],
        "truncated": reply["truncated"],
    }
