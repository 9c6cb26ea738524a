// The Personas view: #/personas lists every persona (with Open, Start/Stop, Chat and a New persona form),
// #/personas/<id> is one persona (js/persona-detail.js), #/personas/<id>/edit its form (js/persona-form.js).
// It refreshes when shown, on the daemon's persona_* events, and every few seconds while shown (a crash and
// its restart change the process without an event the page hears).

import { confirmDialog, deletePersona, detailSkeleton, loadDetail, replaceKeepingFocus, updateDetail } from "./persona-detail.js";
import { buildPersonaForm } from "./persona-form.js";
import { chatWithPersona, refreshPersonas, RUNNING_STATES } from "./personas.js";
import { bus, hasCapability } from "./state.js";
import { $, el, errorLine, PERSONA_REFRESH_MS } from "./util.js";
import { openView, registerView, viewHash } from "./views.js";

const EVENTS = ["persona_started", "persona_stopped", "persona_updated", "persona_created", "persona_deleted", "persona_crashed"];

const body = $("personas-view-body");
const title = $("personas-view-title");
const view = {
  shown: false,
  args: [],
  token: 0, // bumps on every route change: late answers for an older route are dropped
  timer: null,
  busy: new Map(), // persona id → "starting" | "stopping" | "restarting" while a click is in flight
  list: null, // {table, error, key} of the list page
  detail: null, // detail skeleton parts
  notice: null, // a line to show once on the next detail page (e.g. "restart to apply …")
};

function setTitle(text) {
  title.textContent = text;
  document.title = `${text} · personad`;
}

function errorBox(error) {
  return el("p", { class: "error", role: "alert" }, errorLine(error));
}

async function render() {
  const token = ++view.token;
  view.list = null;
  view.detail = null;
  const [id, sub] = view.args;
  if (bus.state !== "open") {
    setTitle("Personas");
    body.replaceChildren(el("p", { class: "help" }, "Not connected — the view loads once the page is connected."));
    return;
  }
  if (!hasCapability("personas")) {
    setTitle("Personas");
    body.replaceChildren(el("p", { class: "help persona-denied" }, "This session lacks the “personas” capability, so it cannot list or run personas."));
    return;
  }
  if (!id) return renderList(token);
  if (sub === "edit") return renderEdit(token, id);
  return renderDetail(token, id);
}

// -- the list ---------------------------------------------------------------------------------------

async function renderList(token) {
  setTitle("Personas");
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const slot = el("div", { class: "persona-form-slot" });
  const table = el("div", { class: "card personas-list", "aria-live": "polite" }, el("p", { class: "help" }, "loading…"));
  const newButton = el("button", { type: "button", id: "personas-new", class: "primary", "aria-expanded": "false" }, "New persona");
  newButton.addEventListener("click", () => void openCreate(slot, newButton, error));
  const refresh = el("button", { type: "button", class: "small", "aria-label": "Refresh the personas", title: "Refresh", onclick: () => void refreshList() }, "↻ Refresh");
  body.replaceChildren(el("div", { class: "personas-toolbar" }, newButton, refresh), slot, error, table);
  view.list = { table, error, key: "" };
  if (token === view.token) await refreshList();
}

async function openCreate(slot, button, error) {
  if (slot.firstChild) {
    slot.replaceChildren();
    button.setAttribute("aria-expanded", "false");
    return;
  }
  try {
    const form = await buildPersonaForm({
      onSaved: (result) => {
        void refreshPersonas();
        openView("personas", result.id);
      },
      onCancel: () => {
        slot.replaceChildren();
        button.setAttribute("aria-expanded", "false");
        button.focus();
      },
    });
    slot.replaceChildren(form);
    button.setAttribute("aria-expanded", "true");
    form.querySelector("input, select, textarea")?.focus();
  } catch (problem) {
    error.hidden = false;
    error.textContent = errorLine(problem);
  }
}

async function refreshList() {
  const list = view.list;
  if (!list) return;
  const token = view.token;
  try {
    const { personas } = await bus.call("persona_list");
    if (token !== view.token || view.list !== list) return;
    list.error.hidden = true;
    const key = JSON.stringify([personas, [...view.busy], bus.state]);
    if (key === list.key) return;
    list.key = key;
    replaceKeepingFocus(list.table, personasTable(personas));
  } catch (error) {
    if (token !== view.token) return;
    list.error.hidden = false;
    list.error.textContent = errorLine(error);
  }
}

function personasTable(personas) {
  if (personas.length === 0) return el("p", { class: "help" }, "No personas yet — create one with “New persona”.");
  const head = ["Name", "Id", "Provider", "Model", "State", "Stack", "Status", "Actions"];
  return el(
    "table",
    { class: "data-table personas-table" },
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...personas.map(personaRow)),
  );
}

function personaRow(persona) {
  const name = persona.name || persona.id;
  const actual = persona.process?.state || "stopped";
  const busy = view.busy.get(persona.id);
  const state = busy || actual;
  const running = RUNNING_STATES.has(actual);
  const stack = persona.lora_adapters || [];
  const offline = bus.state !== "open";
  const toggle = running
    ? el("button", { type: "button", class: "small persona-stop", dataset: { focus: `stop-${persona.id}` }, "aria-label": `Stop ${name}`, disabled: offline || !!busy, onclick: () => void act(persona.id, "stopping", () => bus.call("persona_stop", { persona: persona.id })) }, "Stop")
    : el("button", { type: "button", class: "small persona-start", dataset: { focus: `start-${persona.id}` }, "aria-label": `Start ${name}`, disabled: offline || !!busy, onclick: () => void act(persona.id, "starting", () => bus.call("persona_start", { persona: persona.id })) }, "Start");
  return el(
    "tr",
    { dataset: { persona: persona.id, state: actual } },
    el("td", { "data-label": "Name" }, el("a", { href: viewHash("personas", persona.id), class: "persona-name" }, name)),
    el("td", { "data-label": "Id" }, el("code", {}, persona.id)),
    el("td", { "data-label": "Provider" }, persona.model_provider),
    el("td", { "data-label": "Model" }, persona.model_config?.model || "–"),
    el("td", { "data-label": "State" }, el("span", { class: "persona-state", dataset: { state } }, state), persona.process?.pid ? el("small", { class: "help" }, ` pid ${persona.process.pid}`) : null),
    el("td", { "data-label": "Stack", title: stack.join(" → ") || null }, stack.length ? stack.join(" → ") : "–"),
    el("td", { "data-label": "Status" }, persona.status || "active"),
    el("td", { "data-label": "Actions", class: "persona-row-actions" },
      el("a", { class: "button small persona-open", href: viewHash("personas", persona.id), "aria-label": `Open ${name}` }, "Open"),
      toggle,
      el("button", { type: "button", class: "small persona-chat", dataset: { focus: `chat-${persona.id}` }, "aria-label": `Chat with ${name}`, disabled: offline || !hasCapability("chat"), onclick: () => void chatWithPersona(persona) }, "Chat"),
    ),
  );
}

/** Run a start/stop (or restart) for a persona, showing it busy meanwhile; errors go to the view. */
async function act(personaId, busy, work) {
  view.busy.set(personaId, busy);
  void refreshCurrent();
  let failure = null;
  try {
    await work();
  } catch (error) {
    failure = error;
  } finally {
    view.busy.delete(personaId);
    void refreshPersonas(); // the sidebar too
    await refreshCurrent();
  }
  const box = view.detail?.error ?? view.list?.error;
  if (box) {
    box.hidden = !failure;
    box.textContent = failure ? errorLine(failure) : "";
  }
}

// -- one persona ------------------------------------------------------------------------------------

async function renderDetail(token, personaId) {
  setTitle(personaId);
  const parts = detailSkeleton();
  body.replaceChildren(parts.root);
  view.detail = parts;
  if (view.notice) {
    parts.notice.hidden = false;
    parts.notice.textContent = view.notice;
    view.notice = null;
  }
  if (token === view.token) await refreshDetail();
}

async function refreshDetail() {
  const parts = view.detail;
  const personaId = view.args[0];
  if (!parts) return;
  const token = view.token;
  try {
    const data = await loadDetail(personaId);
    if (token !== view.token || view.detail !== parts) return;
    setTitle(data.persona.name || data.persona.id);
    updateDetail(parts, data, {
      busy: view.busy.get(personaId),
      act: (kind, work) => void act(personaId, kind, work),
      confirmDelete: (persona) => void removePersona(parts, persona),
    });
  } catch (error) {
    if (token !== view.token) return;
    if (error.code === "persona_not_found") {
      body.replaceChildren(
        errorBox(error),
        el("p", {}, el("a", { href: viewHash("personas") }, "Back to all personas")),
      );
      view.detail = null;
      return;
    }
    parts.error.hidden = false;
    parts.error.textContent = errorLine(error);
  }
}

async function removePersona(parts, persona) {
  if (!(await confirmDialog(body, persona))) {
    parts.root.querySelector('[data-focus="delete"]')?.focus();
    return;
  }
  try {
    await deletePersona(persona);
  } catch (error) {
    parts.error.hidden = false;
    parts.error.textContent = errorLine(error);
  }
}

async function renderEdit(token, personaId) {
  setTitle(`Edit ${personaId}`);
  body.replaceChildren(el("p", { class: "help" }, "loading…"));
  try {
    const persona = await bus.call("persona_show", { persona: personaId });
    if (token !== view.token) return;
    const form = await buildPersonaForm({
      persona,
      onSaved: (result) => {
        view.notice = result.restart_needed
          ? `Saved. It is running with the old ${result.changed.join(", ")}: restart it to apply them.`
          : `Saved${result.changed?.length ? `: ${result.changed.join(", ")}` : ""}.`;
        void refreshPersonas();
        openView("personas", personaId);
      },
      onCancel: () => openView("personas", personaId),
    });
    if (token !== view.token) return;
    setTitle(`Edit ${persona.name || persona.id}`);
    body.replaceChildren(form, el("p", {}, el("a", { href: viewHash("personas", personaId) }, `Back to ${persona.name || persona.id}`)));
    form.querySelector("input, select, textarea")?.focus();
  } catch (error) {
    if (token === view.token) body.replaceChildren(errorBox(error), el("p", {}, el("a", { href: viewHash("personas") }, "Back to all personas")));
  }
}

// -- refresh ----------------------------------------------------------------------------------------

function refreshCurrent() {
  if (!view.shown) return Promise.resolve();
  if (view.list) return refreshList();
  if (view.detail) return refreshDetail();
  return Promise.resolve(); // the edit form: never re-rendered under the user's typing
}

registerView("personas", {
  show(args) {
    view.shown = true;
    view.args = args;
    void render();
    clearInterval(view.timer);
    view.timer = setInterval(() => {
      if (!document.hidden) void refreshCurrent();
    }, PERSONA_REFRESH_MS);
  },
  hide() {
    view.shown = false;
    view.token++;
    clearInterval(view.timer);
    view.timer = null;
  },
});

for (const name of EVENTS) {
  bus.on(`event:${name}`, (data) => {
    if (!view.shown) return;
    if (name === "persona_deleted" && view.detail && data?.persona === view.args[0]) return void refreshDetail();
    void refreshCurrent();
  });
}
// After a (re)connect the capabilities are known: a view opened before that renders again.
bus.on("welcome", () => view.shown && void render());
