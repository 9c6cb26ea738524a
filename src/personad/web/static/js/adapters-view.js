// The adapters view (#/adapters, #/adapters/<name>): the LoRA adapter registry as a tree by dotted name
// (js/adapter-tree.js), the selected adapter's details with export and delete (js/adapter-details.js), a
// persona's stack (js/adapter-stack.js) and training from an uploaded JSONL file (js/adapter-train.js). This
// module lays them out, reads the registry (lora_list) and the selection (lora_show), and refreshes on events.

import { StackPanel } from "./adapter-stack.js";
import { TrainPanel } from "./adapter-train.js";
import { AdapterTree } from "./adapter-tree.js";
import { renderDetails as fillDetails, setDetailHooks } from "./adapter-details.js";
import { showBusError } from "./adapter-util.js";
import { bus } from "./state.js";
import { $, el } from "./util.js";
import { currentView, openView, registerView } from "./views.js";

const view = {
  built: false,
  adapters: [], // the last lora_list
  loaded: false,
  selected: null, // the route's adapter name
  listSeq: 0,
  showSeq: 0,
  visible: false, // the view is shown
};

let tree;
let stack;
let trainer;
const parts = {};

function build() {
  if (view.built) return;
  view.built = true;
  parts.count = el("p", { id: "adapters-count", class: "help", role: "status" });
  parts.refresh = el("button", {
    type: "button",
    id: "adapters-refresh",
    class: "small",
    text: "↻ Refresh",
    title: "Reload the registry",
    onclick: () => void refreshList(),
  });
  parts.treeBox = el("div", { id: "adapters-tree", class: "adapters-tree-box" });
  parts.listError = el("div", { id: "adapters-error", class: "error", role: "alert", hidden: true });
  parts.details = el("div", { id: "adapter-details", class: "adapter-details", "aria-live": "polite" });
  tree = new AdapterTree(parts.treeBox, {
    onSelect: (name) => openView("adapters", name),
    onPick: (name) => stack.add(name),
  });
  stack = new StackPanel({ onSelect: (name) => openView("adapters", name) });
  trainer = new TrainPanel({
    onTrained: (manifest) => {
      if (currentView() === "adapters") openView("adapters", manifest.name);
      void refreshList();
    },
  });
  // Wide: the registry, the stack and training on the left, the details on the right; narrow: one column,
  // the details right after the registry (css/adapters.css orders them).
  $("adapters-view-body").append(
    el(
      "div",
      { class: "adapters-layout" },
      el(
        "div",
        { class: "adapters-column" },
        el(
          "section",
          { class: "card adapters-registry", id: "adapters-registry", "aria-labelledby": "adapters-registry-title" },
          el(
            "div",
            { class: "card-head" },
            el("h3", { id: "adapters-registry-title", text: "Registry" }),
            parts.refresh,
          ),
          parts.count,
          parts.treeBox,
          parts.listError,
        ),
        stack.node,
        trainer.node,
      ),
      el(
        "div",
        { class: "adapters-column" },
        el(
          "section",
          {
            class: "card adapters-detail-card",
            id: "adapters-details-card",
            "aria-labelledby": "adapter-details-title",
          },
          el("h3", { id: "adapter-details-title", text: "Details" }),
          parts.details,
        ),
      ),
    ),
  );
  setDetailHooks({
    onSelect: (name) => openView("adapters", name),
    onAdd: (name) => stack.add(name),
    onChanged: () => void refreshList(),
    onDeleted: () => {
      openView("adapters");
      void refreshList();
    },
  });
  renderDetails(null);
}

function renderDetails(shown) {
  fillDetails(parts.details, shown);
}

async function refreshList() {
  if (bus.state !== "open") return;
  const seq = ++view.listSeq;
  parts.refresh.disabled = true;
  try {
    const { adapters } = await bus.call("lora_list", {});
    if (seq !== view.listSeq) return;
    view.adapters = adapters;
    view.loaded = true;
    showBusError(parts.listError, null);
    parts.count.textContent = `${adapters.length} adapter${adapters.length === 1 ? "" : "s"}`;
    tree.render(adapters);
    tree.mark(view.selected);
  } catch (error) {
    if (seq === view.listSeq) showBusError(parts.listError, error);
  } finally {
    if (seq === view.listSeq) parts.refresh.disabled = bus.state !== "open";
  }
}

async function select(name) {
  view.selected = name;
  tree.mark(name);
  const seq = ++view.showSeq;
  if (!name) return renderDetails(null);
  parts.details.dataset.name = name;
  parts.details.dataset.state = "loading";
  if (bus.state !== "open") return;
  try {
    const shown = await bus.call("lora_show", { name });
    if (seq === view.showSeq) renderDetails(shown);
  } catch (error) {
    if (seq !== view.showSeq) return;
    const alert = el("div", { class: "error", role: "alert" });
    showBusError(alert, error);
    parts.details.replaceChildren(alert);
    parts.details.dataset.state = "error";
  }
}

function show(args) {
  build();
  const name = args[0] ?? null;
  if (!view.visible) {
    // Opened from another view (a selection within the view changes only the route's argument).
    view.visible = true;
    void stack.refreshPersonas();
    trainer.updateButtons();
  }
  if (!view.loaded) void refreshList();
  if (name !== view.selected || parts.details.dataset.state !== "ready") void select(name);
}

function hide() {
  view.visible = false;
}

bus.on("welcome", () => {
  if (!view.built || currentView() !== "adapters") {
    view.loaded = false; // read again when the view opens
    if (view.built) parts.details.dataset.state = "stale";
    return;
  }
  void refreshList();
  void stack.refreshPersonas();
  void select(view.selected);
});

/** Whether a change to adapter `name` (null: unknown) may show in `selected`'s details. */
function related(name, selected) {
  return !name || name === selected || name.startsWith(`${selected}.`) || selected.startsWith(`${name}.`);
}

const queueRefresh = (() => {
  let timer = null;
  const changed = new Set(); // adapter names the events since the last refresh named (null: unknown)
  return (data) => {
    changed.add(data?.name ?? null);
    clearTimeout(timer);
    timer = setTimeout(() => {
      // The details are read again only when the change may show in them (the adapter, a parent, a child).
      const selected = view.selected;
      const reselect = selected !== null && [...changed].some((name) => related(name, selected));
      changed.clear();
      if (view.built && currentView() === "adapters") {
        void refreshList();
        if (reselect) void select(selected);
      } else {
        view.loaded = false; // read again when the view opens
        if (reselect && view.built) parts.details.dataset.state = "stale";
      }
    }, 150);
  };
})();
// New or deleted adapters, and manifests whose metrics changed (an evolution, an Academy graduation).
for (const event of ["lora_trained", "lora_deleted", "mesh_skill_acquired", "persona_evolved", "persona_graduated"]) {
  bus.on(`event:${event}`, queueRefresh);
}

// Personas come and go, and their stacks change (persona_updated, an evolution): the stack card follows.
for (const event of ["persona_created", "persona_deleted", "persona_updated", "persona_evolved"]) {
  bus.on(`event:${event}`, () => {
    if (view.built && currentView() === "adapters") void stack.refreshPersonas();
  });
}

bus.on("state", () => {
  if (!view.built) return;
  parts.refresh.disabled = bus.state !== "open";
  stack.updateButtons();
  trainer.updateButtons();
});

registerView("adapters", { show, hide });
