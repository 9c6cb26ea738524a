// Personas in the sidebar: list, start/stop, a direct room to chat with one, goals and emotions.

import { selectRoom } from "./chat.js";
import { openGraduation } from "./graduation.js";
import { refreshRooms } from "./rooms.js";
import { sha256Hex } from "./sha256.js";
import { openView, viewHash } from "./views.js";
import { bus, hasCapability, ui, updateControls } from "./state.js";
import { $, clearListError, DIRECT_TOPIC, el, errorLine, formatTime, MAX_ROOM_ID, PERSONA_REFRESH_MS, showError, signed } from "./util.js";

// ---------------------------------------------------------------------------------------------------
// Personas: list, start/stop, and a direct room to chat with one

export let personaTimer = null;

export function startPersonaPolling() {
  stopPersonaPolling();
  personaTimer = setInterval(() => {
    if (!document.hidden) void refreshPersonas();
  }, PERSONA_REFRESH_MS);
}

export function stopPersonaPolling() {
  clearInterval(personaTimer);
  personaTimer = null;
}

export async function refreshPersonas() {
  if (bus.state !== "open") return;
  if (!hasCapability("personas")) {
    ui.personasDenied = true;
    renderPersonas();
    updateControls();
    return;
  }
  const seq = ++ui.personaSeq;
  try {
    const { personas } = await bus.call("persona_list");
    if (seq !== ui.personaSeq) return; // a newer refresh was started meanwhile
    ui.personas = personas;
    ui.personasLoaded = true;
    ui.personasDenied = false;
    clearListError($("personas-error"));
  } catch (error) {
    if (seq !== ui.personaSeq) return;
    if (error.code === "capability_denied") ui.personasDenied = true;
    else if (error.code !== "disconnected" && error.code !== "not_connected") {
      showError($("personas-error"), error, "list");
    }
  }
  renderPersonas();
  updateControls();
}

export function renderPersonas() {
  const offline = bus.state !== "open";
  const key = JSON.stringify([
    ui.personas,
    [...ui.personaBusy],
    ui.personasDenied,
    ui.personasLoaded,
    offline,
    [...ui.personaOpen],
    [...ui.personaDetails],
  ]);
  if (key === ui.personasRendered) return; // unchanged: keep the DOM (and the focus) as it is
  ui.personasRendered = key;
  const note = $("personas-note");
  const list = $("persona-list");
  if (ui.personasDenied) {
    note.hidden = false;
    note.textContent = "This session lacks the “personas” capability, so it cannot list or run personas.";
    list.replaceChildren();
    return;
  }
  note.hidden = true;
  note.textContent = "";
  if (ui.personas.length === 0) {
    const text = ui.personasLoaded ? "no personas — create one with persona_create" : "loading…";
    list.replaceChildren(el("li", { class: "placeholder" }, text));
    return;
  }
  list.replaceChildren(...ui.personas.map((persona) => personaItem(persona, offline)));
}

export const RUNNING_STATES = new Set(["running", "starting", "backoff", "stopping"]);

export function personaItem(persona, offline) {
  const busy = ui.personaBusy.get(persona.id);
  const actual = String(persona.process?.state || "stopped");
  const state = busy === "starting" || busy === "stopping" ? busy : actual;
  const name = persona.name || persona.id;
  const process = persona.process || {};
  const details = [`process: ${actual}`];
  if (process.pid) details.push(`pid ${process.pid}`);
  if (process.restarts) details.push(`${process.restarts} restart${process.restarts === 1 ? "" : "s"}`);
  if (process.last_exit !== null && process.last_exit !== undefined) {
    details.push(`last exit ${JSON.stringify(process.last_exit)}`);
  }
  const model = persona.model_config?.model;
  const adapters = Array.isArray(persona.lora_adapters) ? persona.lora_adapters : [];
  const about = [`@${persona.id}`, persona.model_provider, typeof model === "string" && model ? model : null]
    .filter(Boolean)
    .join(" · ");
  const running = RUNNING_STATES.has(actual);
  const toggle = running
    ? el(
        "button",
        {
          type: "button",
          class: "persona-stop small",
          "aria-label": `Stop ${name}`,
          disabled: offline || busy !== undefined || actual === "stopping",
          onclick: () => void stopPersona(persona.id),
        },
        "Stop",
      )
    : el(
        "button",
        {
          type: "button",
          class: "persona-start small",
          "aria-label": `Start ${name}`,
          disabled: offline || busy !== undefined,
          onclick: () => void startPersona(persona.id),
        },
        "Start",
      );
  const chat = el(
    "button",
    {
      type: "button",
      class: "persona-chat small",
      "aria-label": `Chat with ${name}`,
      title: running ? `Open a direct room with ${name}` : `Open a direct room with ${name} (start it to get answers)`,
      disabled: offline || busy === "opening" || !hasCapability("chat"),
      onclick: () => void chatWithPersona(persona),
    },
    "Chat",
  );
  return el(
    "li",
    {
      class: `persona${busy ? " busy" : ""}`,
      dataset: { persona: persona.id, state },
      "aria-busy": busy ? "true" : null,
    },
    el(
      "div",
      { class: "persona-head" },
      el("span", { class: "persona-name", title: persona.system_prompt || null }, name),
      persona.status === "graduated"
        ? el(
            "button",
            {
              type: "button",
              class: "persona-badge",
              title: "graduated from the Academy: show the graduation",
              "aria-label": `Show ${name}'s graduation`,
              onclick: () => openGraduation(persona.id),
            },
            "🎓",
          )
        : null,
      el("span", { class: "persona-state", dataset: { state }, title: details.join(" · ") }, state),
    ),
    el(
      "div",
      { class: "persona-meta", title: adapters.length ? `adapters: ${adapters.join(", ")}` : null },
      about,
      adapters.length ? ` · ${adapters.length} adapter${adapters.length === 1 ? "" : "s"}` : null,
    ),
    el(
      "div",
      { class: "persona-actions" },
      toggle,
      chat,
      detailsToggle(persona, name, offline),
      el("a", { class: "persona-page-link", href: viewHash("personas", persona.id), "aria-label": `Open ${name}'s page` }, "Page"),
    ),
    ui.personaOpen.has(persona.id) ? personaDetails(persona.id) : null,
  );
}

// A persona's details: its current goals (goal_list) and latest emotions (persona_emotions), read when opened.

export const PERSONA_EMOTIONS_SHOWN = 5;

export function detailsToggle(persona, name, offline) {
  const open = ui.personaOpen.has(persona.id);
  return el(
    "button",
    {
      type: "button",
      class: "persona-details-toggle small",
      "aria-expanded": open ? "true" : "false",
      "aria-label": `${open ? "Hide" : "Show"} ${name}'s goals and emotions`,
      title: "Goals and emotions",
      disabled: offline && !open,
      onclick: () => togglePersonaDetails(persona.id),
    },
    open ? "Less" : "More",
  );
}

export function togglePersonaDetails(personaId) {
  if (ui.personaOpen.has(personaId)) {
    ui.personaOpen.delete(personaId);
    ui.personaDetails.delete(personaId);
    renderPersonas();
    return;
  }
  ui.personaOpen.add(personaId);
  void loadPersonaDetails(personaId);
}

export async function loadPersonaDetails(personaId) {
  const previous = ui.personaDetails.get(personaId) || {};
  ui.personaDetails.set(personaId, { ...previous, loading: true });
  renderPersonas();
  const [goals, emotions] = await Promise.allSettled([
    bus.call("goal_list", { persona: personaId }),
    bus.call("persona_emotions", { persona: personaId, limit: PERSONA_EMOTIONS_SHOWN }),
  ]);
  if (!ui.personaOpen.has(personaId)) return; // closed meanwhile
  const problem = (result) => (result.status === "rejected" ? errorLine(result.reason) : null);
  ui.personaDetails.set(personaId, {
    loading: false,
    goals: goals.status === "fulfilled" ? goals.value.goals : null,
    emotions: emotions.status === "fulfilled" ? emotions.value.emotions : null,
    goalsError: problem(goals),
    emotionsError: problem(emotions),
  });
  renderPersonas();
}
export function goalItem(goal) {
  const progress = typeof goal.progress === "number" ? ` · ${Math.round(goal.progress * 100)}%` : "";
  return el(
    "li",
    { class: "persona-goal", dataset: { goal: goal.id, status: goal.status } },
    el("span", { class: "persona-goal-text" }, goal.description),
    el("small", { class: "help" }, ` ${goal.status}${progress} · priority ${signed(goal.priority).replace("+", "")}`),
  );
}

export function emotionItem(emotion) {
  return el(
    "li",
    { class: "persona-emotion", dataset: { emotion: emotion.id }, title: emotion.cause || null },
    el("span", { class: "persona-emotion-label" }, emotion.label),
    el(
      "small",
      { class: "help" },
      ` valence ${signed(emotion.valence)} · arousal ${typeof emotion.arousal === "number" ? emotion.arousal.toFixed(2) : "–"}` +
        (emotion.cause ? ` · ${emotion.cause}` : "") +
        (emotion.timestamp ? ` · ${formatTime(emotion.timestamp)}` : ""),
    ),
  );
}

export function detailsList(items, error, loading, render, empty, cls) {
  if (error) return el("p", { class: "error" }, error);
  if (!items) return el("p", { class: "help" }, loading ? "loading…" : "–");
  if (items.length === 0) return el("p", { class: "help" }, empty);
  return el("ul", { class: cls }, ...items.map(render));
}

export function personaDetails(personaId) {
  const details = ui.personaDetails.get(personaId) || { loading: true };
  const active = Array.isArray(details.goals)
    ? details.goals.filter((g) => g.status === "active" || g.status === "blocked")
    : details.goals;
  return el(
    "div",
    { class: "persona-details", dataset: { loading: details.loading ? "true" : "false" } },
    el(
      "div",
      { class: "persona-details-head" },
      el("h4", {}, "Goals"),
      el(
        "button",
        {
          type: "button",
          class: "icon persona-details-refresh",
          title: "Refresh goals and emotions",
          "aria-label": "Refresh goals and emotions",
          disabled: details.loading,
          onclick: () => void loadPersonaDetails(personaId),
        },
        "↻",
      ),
    ),
    detailsList(active, details.goalsError, details.loading, goalItem, "no current goals", "persona-goals"),
    el("h4", {}, "Latest emotions"),
    detailsList(details.emotions, details.emotionsError, details.loading, emotionItem, "none recorded", "persona-emotions"),
  );
}

export async function personaAction(personaId, busy, work) {
  ui.personaBusy.set(personaId, busy);
  renderPersonas();
  try {
    await work();
    showError($("personas-error"), null);
  } catch (error) {
    showError($("personas-error"), error);
  } finally {
    await refreshPersonas();
    ui.personaBusy.delete(personaId);
    renderPersonas();
  }
}

export function startPersona(personaId) {
  return personaAction(personaId, "starting", () => bus.call("persona_start", { persona: personaId }));
}

export function stopPersona(personaId) {
  return personaAction(personaId, "stopping", () => bus.call("persona_stop", { persona: personaId }));
}

/** This session's direct room with a persona: dm-<session>-<persona>, hashed when over 64 characters. */
export async function directRoomId(sessionId, personaId) {
  const room = `dm-${sessionId}-${personaId}`.toLowerCase();
  if (room.length <= MAX_ROOM_ID) return room;
  return `dm-${(await sha256Hex(room)).slice(0, 32)}`;
}

export function chatWithPersona(persona) {
  return personaAction(persona.id, "opening", async () => {
    const room = await directRoomId(bus.sessionId, persona.id);
    const topic = `${DIRECT_TOPIC}${persona.name || persona.id}`;
    try {
      await bus.call("room_create", { room, topic, direct: true, invite: [persona.id] });
    } catch (error) {
      if (error.code !== "room_exists") throw error;
      await bus.call("room_join", { room });
      await bus.call("room_invite", { room, session: persona.id });
    }
    await refreshRooms();
    await selectRoom(room);
    openView("chat"); // from any view: the conversation is in the chat view
    $("chat-input").focus();
  });
}
