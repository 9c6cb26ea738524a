// The personad browser page: start-up. Each concern is a module under js/; this one wires the static
// controls and connects. Plain ES modules, no build step.
//
// Untrusted text (chat, topics, names, results) only ever reaches the DOM as text nodes / textContent.

import { loadOlder, onChatKey, sendChat, sweepStreams } from "./chat.js";
import { runCommand, selectCommand } from "./commands.js";
import { refreshMesh } from "./mesh.js";
import { refreshPersonas } from "./personas.js";
import { createRoom, refreshRooms } from "./rooms.js";
import { onNameChange, startNewSession } from "./session.js";
import { bus, token, updateControls } from "./state.js";
import { $ } from "./util.js";
import "./views.js"; // the router: reads the hash on load, then on every hashchange
import "./academy.js"; // event handlers only
import "./graduation.js";
import "./personas-view.js";
import "./adapters-view.js";
import "./brain-view.js";
import "./academy-view.js";
import "./jobs-view.js";

// ---------------------------------------------------------------------------------------------------
// Start-up

function start() {
  $("display-name").value = bus.name;
  $("display-name").addEventListener("change", onNameChange);
  $("identity").addEventListener("submit", (event) => {
    event.preventDefault();
    onNameChange();
  });
  $("new-session").addEventListener("click", startNewSession);
  $("rooms-refresh").addEventListener("click", () => void refreshRooms());
  $("personas-refresh").addEventListener("click", () => void refreshPersonas());
  $("mesh-refresh").addEventListener("click", () => void refreshMesh());
  $("new-room").addEventListener("submit", createRoom);
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-input").addEventListener("keydown", onChatKey);
  $("chat-load-older").addEventListener("click", loadOlder);
  $("command-select").addEventListener("change", (event) => selectCommand(event.target.value));
  $("command-form").addEventListener("submit", runCommand);
  updateControls();
  setInterval(sweepStreams, 10_000);
  if (!token) {
    bus.setState("unauthorized", "no token in the URL — open the URL that `personad serve` printed");
    return;
  }
  bus.connect();
}

start();
