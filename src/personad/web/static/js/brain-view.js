// The brain view (#/brain, #/brain/<persona>): one persona's memory browser. This module builds the frame
// (persona picker, refresh) and loads each part for the chosen persona: memories (search, browse, remember:
// brain-memories.js), facts by key, skills, goals and emotions (brain-records.js), and the evolution history
// (brain-timeline.js). Everything is read with recall, brain_query, goal_list and persona_emotions.

import { createMemories } from "./brain-memories.js";
import { createRecords } from "./brain-records.js";
import { createTimeline } from "./brain-timeline.js";
import { bus, hasCapability, ui } from "./state.js";
import { $, el, errorLine, showError } from "./util.js";
import { currentView, registerView, viewHash } from "./views.js";

const view = {
  built: false,
  persona: null, // the persona shown now (the route's, or the first one)
  wanted: null, // the route's persona ("" for none), applied once connected
  seq: 0, // bumps on every load: answers for an older persona are dropped
  parts: [],
};

function build() {
  const body = $("brain-view-body");
  const select = el("select", { id: "brain-persona", onchange: onPick });
  const refresh = el(
    "button",
    { id: "brain-refresh", type: "button", class: "small", title: "Reload this brain", onclick: () => load() },
    "↻ Refresh",
  );
  const head = el(
    "div",
    { class: "brain-head card" },
    el("label", { for: "brain-persona" }, "Persona"),
    select,
    refresh,
    el("p", { id: "brain-status", class: "help", role: "status", "aria-live": "polite" }),
  );
  const error = el("p", { id: "brain-error", class: "error", role: "alert", hidden: true });
  const context = {
    persona: () => view.persona,
    currentSeq: () => view.seq,
    fresh: (seq) => seq === view.seq,
    reload: (what) => reload(what),
  };
  const memories = createMemories(context);
  const records = createRecords(context);
  const timeline = createTimeline(context);
  view.parts = [memories, records, timeline];
  body.replaceChildren(head, error, memories.node, records.node, timeline.node);
  view.built = true;
}

function onPick(event) {
  const persona = event.target.value;
  if (persona) location.hash = viewHash("brain", persona);
}

/** The personas the picker offers: the sidebar's last list, or a fresh one. */
async function personaChoices() {
  if (ui.personas.length > 0 || !hasCapability("personas")) return ui.personas;
  try {
    const { personas } = await bus.call("persona_list");
    return personas;
  } catch {
    return ui.personas; // the picker still offers the route's persona
  }
}

function fillPicker(personas, chosen) {
  const select = $("brain-persona");
  const options = personas.map((p) =>
    el("option", { value: p.id, selected: p.id === chosen }, p.name && p.name !== p.id ? `${p.name} (@${p.id})` : p.id),
  );
  if (chosen && !personas.some((p) => p.id === chosen)) {
    options.unshift(el("option", { value: chosen, selected: true }, chosen));
  }
  if (options.length === 0) options.push(el("option", { value: "" }, "no personas"));
  select.replaceChildren(...options);
  select.disabled = personas.length === 0 && !chosen;
}

async function open(wanted) {
  const personas = await personaChoices();
  const chosen = wanted || view.persona || personas[0]?.id || null;
  fillPicker(personas, chosen);
  if (!wanted && chosen) {
    history.replaceState(null, "", viewHash("brain", chosen)); // #/brain shows the first persona's brain
  }
  view.persona = chosen;
  $("brain-view-title").textContent = chosen ? `Brain — ${chosen}` : "Brain";
  if (!chosen) {
    $("brain-status").textContent = "No personas yet: create one in the Personas view.";
    for (const part of view.parts) part.clear();
    return;
  }
  await load();
}

/** Load every part for the persona shown now. */
async function load() {
  if (!view.persona || bus.state !== "open") return;
  const seq = ++view.seq;
  showError($("brain-error"), null);
  $("brain-status").textContent = "loading…";
  $("brain-view-body").dataset.state = "loading";
  const results = await Promise.allSettled(view.parts.map((part) => part.load(seq)));
  if (seq !== view.seq) return;
  const failed = [...new Set(results.filter((r) => r.status === "rejected").map((r) => errorLine(r.reason)))];
  if (failed.length) showError($("brain-error"), { message: failed.join(" · ") });
  $("brain-status").textContent = failed.length ? "" : `Showing the brain of ${view.persona}.`;
  $("brain-view-body").dataset.state = failed.length ? "error" : "ready";
}

/** After a change (a new memory): reload the parts that show it. */
async function reload(what) {
  const seq = view.seq;
  for (const part of view.parts) {
    if (part.reloads?.includes(what)) await part.load(seq).catch((error) => showError($("brain-error"), error));
  }
}

registerView("brain", {
  show(args) {
    if (!view.built) build();
    view.wanted = args[0] ?? "";
    if (bus.state === "open") void open(view.wanted);
    else $("brain-status").textContent = "waiting for the daemon…";
  },
});

// The first welcome (and every reconnect) loads the view if it is the one shown.
bus.on("welcome", () => {
  if (view.built && currentView() === "brain") void open(view.wanted);
});
