// Connection state, session info, the display name and starting a new session.

import { clearChat, dropStreams, selectRoom } from "./chat.js";
import { loadCommands } from "./commands.js";
import { routeFromHash } from "./graduation.js";
import { refreshMesh } from "./mesh.js";
import { loadPersonaDetails, refreshPersonas, renderPersonas, startPersonaPolling, stopPersonaPolling } from "./personas.js";
import { refreshRooms, renderRooms } from "./rooms.js";
import { bus, hasCapability, isJoined, ui, updateControls } from "./state.js";
import { $, DEFAULT_ROOM, newSessionId, STORAGE, store } from "./util.js";

// ---------------------------------------------------------------------------------------------------
// Connection state and session info

bus.on("state", ({ state, text }) => {
  const node = $("connection-state");
  node.dataset.state = state;
  node.textContent = text;
  document.body.dataset.connection = state;
  if (state === "open") {
    startPersonaPolling();
  } else {
    stopPersonaPolling();
    dropStreams(); // their ends may never arrive on this connection
  }
  renderRooms();
  renderPersonas();
  updateControls();
});

bus.on("bus-error", (error) => console.warn("personad:", error.code, error.message));

bus.on("welcome", (info) => {
  $("session-id").textContent = info.session_id;
  $("session-kind").textContent = info.kind;
  const caps = info.capabilities;
  $("session-capabilities").textContent = caps.includes("*") ? "all (*)" : caps.join(", ") || "(none)";
  $("session-info").title = `client ${info.client_id} · name ${info.name} · ${info.directory}`;
  updateNameHint();
  void refreshAll();
});

export async function refreshAll() {
  await greetNewSession();
  await Promise.all([refreshRooms(), loadCommands(), refreshPersonas(), refreshMesh()]);
  const wanted = ui.room ?? store.get(STORAGE.room);
  if (wanted && isJoined(wanted)) await selectRoom(wanted);
  else if (ui.room === null && isJoined(DEFAULT_ROOM)) await selectRoom(DEFAULT_ROOM);
  routeFromHash(); // a linked #graduation/<persona> view, now that the daemon can fill it in
  for (const personaId of ui.personaOpen) void loadPersonaDetails(personaId);
}

/** A session's first connection joins the default room, where the default persona answers everyone. */
export async function greetNewSession() {
  if (store.get(STORAGE.greeted) === bus.sessionId || !hasCapability("chat")) return;
  try {
    await bus.call("room_join", { room: DEFAULT_ROOM });
    store.set(STORAGE.greeted, bus.sessionId);
  } catch (error) {
    if (error.code === "room_not_found") store.set(STORAGE.greeted, bus.sessionId);
    else console.warn("personad: could not join", DEFAULT_ROOM, error.code, error.message);
  }
}

export function updateNameHint() {
  const current = bus.welcome?.name;
  const wanted = $("display-name").value.trim();
  $("name-hint").hidden = !current || !wanted || current === wanted;
}

export function onNameChange() {
  const name = $("display-name").value.trim();
  if (!name) return;
  store.set(STORAGE.name, name);
  bus.name = name;
  updateNameHint();
}

export function startNewSession() {
  onNameChange();
  bus.sessionId = newSessionId();
  store.set(STORAGE.session, bus.sessionId);
  clearChat();
  ui.unread.clear();
  bus.reconnect();
}
