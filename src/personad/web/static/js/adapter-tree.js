// The adapter registry as a tree (js/adapters-view.js): parents above children by dotted name (a.b.c under
// a.b under a; a dotted prefix that is no adapter is a namespace), an adapter with no dotted parent under the
// first parent its manifest names, and further manifest parents shown on the row. Collapsible; each row is
// buttons (toggle with aria-expanded, select, add to the stack), and the arrow keys move between rows.

import { dateTime, formatBytes, shortHash } from "./adapter-util.js";
import { el } from "./util.js";

/** The tree's nodes: {name, adapter (its lora_list entry, or null for a namespace), children, also}. */
export function buildTree(adapters) {
  const nodes = new Map();
  const node = (name, adapter = null) => {
    let found = nodes.get(name);
    if (!found) {
      found = { name, adapter: null, children: [], also: [], parent: null };
      nodes.set(name, found);
    }
    if (adapter) found.adapter = adapter;
    return found;
  };
  for (const adapter of adapters) {
    node(adapter.name, adapter);
    const parts = adapter.name.split(".");
    for (let i = 1; i < parts.length; i += 1) node(parts.slice(0, i).join("."));
  }
  const isAncestor = (candidate, of) => {
    for (let at = candidate; at; at = at.parent) if (at === of) return true;
    return false;
  };
  // Dotted prefixes first (every prefix is a node now), so the name decides where an adapter sits.
  for (const current of nodes.values()) {
    const cut = current.name.lastIndexOf(".");
    if (cut > 0) current.parent = nodes.get(current.name.slice(0, cut));
  }
  // An adapter at the top level with manifest parents goes under the first one that is in the registry.
  for (const current of nodes.values()) {
    const parents = current.adapter?.parents ?? [];
    if (current.parent === null) {
      const first = parents.map((p) => nodes.get(p)).find((p) => p?.adapter && !isAncestor(p, current));
      if (first) current.parent = first;
    }
    current.also = parents.filter((p) => p !== current.parent?.name);
  }
  const roots = [];
  for (const current of nodes.values()) (current.parent ? current.parent.children : roots).push(current);
  const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  for (const current of nodes.values()) current.children.sort(byName);
  roots.sort(byName);
  return { roots, nodes };
}

export class AdapterTree {
  /** container: where the tree goes; onSelect(name), onPick(name) when a row's buttons are pressed. */
  constructor(container, { onSelect, onPick }) {
    this.container = container;
    this.onSelect = onSelect;
    this.onPick = onPick;
    this.collapsed = new Set(); // names whose children are hidden
    this.selected = null;
    this.nodes = new Map();
    this.container.addEventListener("keydown", (event) => this.onKey(event));
  }

  render(adapters) {
    const focused = document.activeElement?.closest?.(".adapter-tree [data-name]");
    const focusedName = focused?.dataset.name;
    const focusedClass = ["tree-toggle", "tree-select", "tree-pick"].find((c) =>
      document.activeElement?.classList?.contains(c),
    );
    const { roots, nodes } = buildTree(adapters);
    this.nodes = nodes;
    if (roots.length === 0) {
      this.container.replaceChildren(
        el("p", { class: "placeholder", text: "No adapters yet: train one below, or with personad lora train." }),
      );
      return;
    }
    const list = el("ul", { class: "adapter-tree", "aria-label": "Adapters by name" });
    for (const root of roots) list.append(this.item(root, 1));
    this.container.replaceChildren(list);
    this.mark(this.selected);
    if (focusedName) {
      const again = this.container.querySelector(
        `li[data-name="${CSS.escape(focusedName)}"] > .tree-row .${focusedClass}`,
      );
      again?.focus();
    }
  }

  item(node, level) {
    const adapter = node.adapter;
    const hasChildren = node.children.length > 0;
    const open = !this.collapsed.has(node.name);
    const groupId = `adapter-group-${level}-${node.name.replace(/[^a-z0-9_-]/g, "_")}`;
    const dot = node.name.lastIndexOf(".");
    const label = el(
      "span",
      { class: "tree-name" },
      dot > 0 ? el("span", { class: "tree-prefix", text: node.name.slice(0, dot + 1) }) : null,
      node.name.slice(dot + 1),
    );
    const row = el(
      "div",
      { class: "tree-row" },
      hasChildren
        ? el("button", {
            type: "button",
            class: "tree-toggle",
            "aria-expanded": String(open),
            "aria-controls": groupId,
            "aria-label": `${open ? "Collapse" : "Expand"} ${node.name}`,
            title: open ? "Collapse" : "Expand",
            text: open ? "▾" : "▸",
            onclick: () => this.toggle(node.name),
          })
        : el("span", { class: "tree-spacer", "aria-hidden": "true" }),
    );
    if (adapter) {
      row.append(
        el(
          "button",
          {
            type: "button",
            class: "tree-select",
            title: `Show ${node.name}`,
            onclick: () => this.onSelect(node.name),
          },
          label,
          el(
            "span",
            { class: "tree-meta" },
            el("span", { class: "tree-rank", text: `r${adapter.rank}` }),
            el("span", { class: "tree-size", text: formatBytes(adapter.size_bytes) }),
            el("code", { class: "tree-hash", title: adapter.lora_hash, text: shortHash(adapter.lora_hash) }),
            el("time", {
              class: "tree-created",
              datetime: new Date(adapter.created_at * 1000).toISOString(),
              text: dateTime(adapter.created_at),
            }),
          ),
          node.also.length ? el("span", { class: "tree-also", text: `also on ${node.also.join(", ")}` }) : null,
        ),
        el("button", {
          type: "button",
          class: "small tree-pick",
          "aria-label": `Add ${node.name} to the stack`,
          title: "Add to the stack below",
          text: "+ stack",
          onclick: () => this.onPick(node.name),
        }),
      );
    } else {
      row.append(el("span", { class: "tree-namespace", title: "a namespace: no adapter of this name" }, label));
    }
    const li = el(
      "li",
      { class: "tree-node", dataset: { name: node.name, kind: adapter ? "adapter" : "namespace" } },
      row,
    );
    if (hasChildren) {
      const group = el("ul", { id: groupId, class: "tree-children", role: "group", hidden: !open });
      for (const child of node.children) group.append(this.item(child, level + 1));
      li.append(group);
    }
    return li;
  }

  toggle(name, open = this.collapsed.has(name)) {
    if (open) this.collapsed.delete(name);
    else this.collapsed.add(name);
    const li = this.li(name);
    const button = li?.querySelector(":scope > .tree-row > .tree-toggle");
    const group = li?.querySelector(":scope > .tree-children");
    if (!button || !group) return;
    button.setAttribute("aria-expanded", String(open));
    button.setAttribute("aria-label", `${open ? "Collapse" : "Expand"} ${name}`);
    button.title = open ? "Collapse" : "Expand";
    button.textContent = open ? "▾" : "▸";
    group.hidden = !open;
  }

  li(name) {
    return this.container.querySelector(`li.tree-node[data-name="${CSS.escape(name)}"]`);
  }

  /** Highlight the selected adapter and open the branches above it. */
  mark(name) {
    this.selected = name;
    for (const row of this.container.querySelectorAll(".tree-row[aria-current]")) row.removeAttribute("aria-current");
    for (const button of this.container.querySelectorAll(".tree-select[aria-current]"))
      button.removeAttribute("aria-current");
    const li = name ? this.li(name) : null;
    if (!li) return;
    for (let up = li.parentElement?.closest("li.tree-node"); up; up = up.parentElement?.closest("li.tree-node")) {
      if (this.collapsed.has(up.dataset.name)) this.toggle(up.dataset.name, true);
    }
    li.querySelector(":scope > .tree-row").setAttribute("aria-current", "true");
    li.querySelector(":scope > .tree-row > .tree-select")?.setAttribute("aria-current", "true");
  }

  /** The rows' first buttons that are visible now, in order (toggle or select). */
  visibleRows() {
    return [...this.container.querySelectorAll("li.tree-node")].filter((li) => !li.closest(".tree-children[hidden]"));
  }

  onKey(event) {
    const li = event.target.closest?.("li.tree-node");
    if (!li || !["ArrowDown", "ArrowUp", "ArrowLeft", "ArrowRight", "Home", "End"].includes(event.key)) return;
    if (event.target.tagName !== "BUTTON") return;
    const rows = this.visibleRows();
    const index = rows.indexOf(li);
    const focusRow = (target) => {
      if (!target) return;
      const row = target.querySelector(":scope > .tree-row");
      (row.querySelector(".tree-select") ?? row.querySelector(".tree-toggle"))?.focus();
    };
    const name = li.dataset.name;
    const group = li.querySelector(":scope > .tree-children");
    if (event.key === "ArrowDown") focusRow(rows[index + 1]);
    else if (event.key === "ArrowUp") focusRow(rows[index - 1]);
    else if (event.key === "Home") focusRow(rows[0]);
    else if (event.key === "End") focusRow(rows[rows.length - 1]);
    else if (event.key === "ArrowRight") {
      if (group?.hidden) this.toggle(name, true);
      else if (group) focusRow(group.querySelector("li.tree-node"));
    } else if (event.key === "ArrowLeft") {
      if (group && !group.hidden) this.toggle(name, false);
      else focusRow(li.parentElement.closest("li.tree-node"));
    }
    event.preventDefault();
  }
}
