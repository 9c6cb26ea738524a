// Helpers the adapters view's modules share (js/adapters-view.js, adapter-tree.js, adapter-stack.js,
// adapter-train.js): sizes, hashes, and daemon errors shown with their code and details.

import { el } from "./util.js";

/** Bytes as a short size: 1536 → "1.5 KB". */
export function formatBytes(bytes) {
  if (typeof bytes !== "number") return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function shortHash(hash) {
  return typeof hash === "string" ? hash.slice(0, 12) : "–";
}

export function dateTime(ts) {
  if (typeof ts !== "number") return "–";
  return new Date(ts * 1000).toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

/** A number for a table cell: integers as they are, others to 4 significant digits. */
export function num(value) {
  if (typeof value !== "number") return value === null || value === undefined ? "–" : String(value);
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
}

/** Show a daemon error in `node` (a role=alert element) as its code, message and details; null hides it. */
export function showBusError(node, error) {
  if (!error) {
    node.hidden = true;
    node.replaceChildren();
    delete node.dataset.code;
    return;
  }
  const code = error.code || "error";
  node.hidden = false;
  node.dataset.code = code;
  node.replaceChildren(
    el("strong", { class: "error-code", text: code }),
    " ",
    el("span", { class: "error-message", text: error.message || String(error) }),
  );
  if (error.details !== undefined && error.details !== null) {
    node.append(el("pre", { class: "error-details", text: JSON.stringify(error.details, null, 2) }));
  }
}

/** A <dl> of [label, value, key] rows (value: text or a node; rows with undefined values are skipped). */
export function defList(rows, attrs = {}) {
  const dl = el("dl", { class: "adapter-facts", ...attrs });
  for (const [label, value, key] of rows) {
    if (value === undefined) continue;
    dl.append(el("div", { dataset: { field: key ?? label } }, el("dt", { text: label }), el("dd", {}, value ?? "–")));
  }
  return dl;
}
