// Page state: the one Bus connection, what the page knows (ui), and which controls are enabled.

import { Bus } from "./bus.js";
import { $, storedName, storedSessionId } from "./util.js";

// ---------------------------------------------------------------------------------------------------
// Page state

export const token = new URLSearchParams(location.search).get("token");
export const bus = new Bus({ token, sessionId: storedSessionId(), name: storedName() });

export const ui = {
  rooms: [], // the last `rooms` result
  roomsLoaded: false,
  room: null, // the selected room's id
  messages: new Map(), // id → message, for the selected room
  nextBefore: null,
  historyLoad: 0, // bumps on every room switch so late history pages are dropped
  unread: new Map(), // room → live messages seen while another room was selected
  commands: [],
  command: null, // the selected command's description
  fields: [], // field specs of the selected command's form
  running: false,
  streams: new Map(), // stream_id → {id, room, sender, text, last, node}: persona replies being written
  finishedStreams: new Set(), // stream ids whose final message arrived (late deltas are dropped)
  personas: [], // the last `persona_list` result
  personasLoaded: false,
  personasDenied: false, // this session lacks the "personas" capability
  personaSeq: 0, // only the newest persona_list answer is applied
  personaBusy: new Map(), // persona id → "starting" | "stopping" | "opening" while a click is in flight
  personasRendered: "", // what the persona list shows now, to skip re-rendering the same thing
  personaOpen: new Set(), // persona ids whose details (goals, emotions) are open
  personaDetails: new Map(), // persona id → {loading, goals, emotions, goalsError, emotionsError}
};

export function hasCapability(name) {
  const caps = bus.welcome?.capabilities ?? [];
  return caps.includes("*") || caps.includes(name);
}

export function isJoined(room) {
  return ui.rooms.some((r) => r.id === room && r.joined);
}

export function updateControls() {
  const open = bus.state === "open";
  const canChat = open && ui.room !== null && isJoined(ui.room);
  $("chat-input").disabled = !canChat;
  $("chat-send").disabled = !canChat;
  $("new-room-create").disabled = !open;
  $("rooms-refresh").disabled = !open;
  $("personas-refresh").disabled = !open || ui.personasDenied;
  $("command-select").disabled = !open || ui.commands.length === 0;
  $("command-run").disabled = !open || !ui.command || ui.running || !ui.command.allowed;
}
