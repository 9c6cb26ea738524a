// Chat: the selected room's messages, history pages, and persona replies streamed as chat_delta events.

import { renderRooms } from "./rooms.js";
import { bus, ui, updateControls } from "./state.js";
import { $, el, errorText, formatTime, HISTORY_PAGE, showError, STORAGE, store, STREAM_STALE_MS } from "./util.js";

// ---------------------------------------------------------------------------------------------------
// Chat

export function clearChat() {
  ui.room = null;
  ui.messages = new Map();
  ui.nextBefore = null;
  ui.historyLoad += 1;
  $("chat-title").textContent = "No room selected";
  $("chat-topic").textContent = "";
  $("chat-log").replaceChildren();
  detachStreams();
  $("chat-empty").hidden = false;
  $("chat-empty").textContent = "Join a room on the left to chat.";
  $("chat-load-older").hidden = true;
  showError($("chat-error"), null);
  renderRooms();
  updateControls();
}

export async function selectRoom(room) {
  const switching = room !== ui.room;
  ui.room = room;
  store.set(STORAGE.room, room);
  ui.unread.delete(room);
  const load = ++ui.historyLoad;
  const info = ui.rooms.find((r) => r.id === room);
  $("chat-title").textContent = `#${room}`;
  $("chat-topic").textContent = info?.topic ?? "";
  if (switching) {
    ui.messages = new Map();
    ui.nextBefore = null;
    $("chat-log").replaceChildren();
    detachStreams();
    $("chat-load-older").hidden = true;
  }
  renderStreams(); // replies being written in this room right now
  $("chat-empty").hidden = $("chat-log").childElementCount > 0;
  $("chat-empty").textContent = "Loading…";
  showError($("chat-error"), null);
  renderRooms();
  updateControls();
  try {
    const page = await bus.call("chat_history", { room, limit: HISTORY_PAGE });
    if (load !== ui.historyLoad) return; // another room was selected meanwhile
    for (const message of page.messages) addMessage(message);
    if (switching) ui.nextBefore = page.next_before;
    $("chat-empty").textContent = "No messages yet — say hello.";
    $("chat-empty").hidden = $("chat-log").childElementCount > 0;
    $("chat-load-older").hidden = ui.nextBefore === null;
    scrollChatToBottom();
  } catch (error) {
    if (load === ui.historyLoad) showError($("chat-error"), error);
  }
  if (document.activeElement === document.body) $("chat-input").focus();
}

export async function loadOlder() {
  const room = ui.room;
  const load = ui.historyLoad;
  if (room === null || ui.nextBefore === null) return;
  const button = $("chat-load-older");
  button.disabled = true;
  try {
    const page = await bus.call("chat_history", { room, limit: HISTORY_PAGE, before: ui.nextBefore });
    if (load !== ui.historyLoad) return;
    const scroller = $("chat-scroll");
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    for (const message of page.messages) addMessage(message);
    ui.nextBefore = page.next_before;
    scroller.scrollTop = scroller.scrollHeight - fromBottom; // keep the view where it was
    button.hidden = ui.nextBefore === null;
  } catch (error) {
    showError($("chat-error"), error);
  } finally {
    button.disabled = false;
  }
}

/** Insert a message of the selected room in id order; a message already shown is skipped (dedupe).
 * A persona's final reply replaces the bubble its stream was written into. Bubbles stay below messages. */
export function addMessage(message) {
  finishStream(message.meta?.stream_id);
  if (message.room !== ui.room || ui.messages.has(message.id)) return false;
  ui.messages.set(message.id, message);
  const log = $("chat-log");
  const node = messageItem(message);
  let after = log.lastElementChild;
  while (after && (after.dataset.id === undefined || Number(after.dataset.id) > message.id)) {
    after = after.previousElementSibling;
  }
  if (after) after.after(node);
  else log.prepend(node);
  $("chat-empty").hidden = true;
  return true;
}

export function chatNearBottom() {
  const scroller = $("chat-scroll");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
}

export function addLiveMessage(message) {
  const nearBottom = chatNearBottom();
  if (addMessage(message) && (nearBottom || message.sender.session_id === bus.sessionId)) scrollChatToBottom();
}

export function senderHead(sender) {
  const kind = String(sender.kind || "").replace(/[^a-z]/g, "");
  return [
    el("span", { class: "sender", title: sender.session_id }, sender.name || sender.session_id || "?"),
    kind ? el("span", { class: `kind kind-${kind}` }, kind) : null,
  ];
}

export function messageItem(message) {
  const sender = message.sender || {};
  const meta = message.meta && typeof message.meta === "object" ? message.meta : {};
  const mine = sender.session_id === bus.sessionId;
  const persona = sender.kind === "persona";
  const failed = meta.error !== undefined && meta.error !== null;
  const when = new Date(message.ts * 1000);
  const classes = ["message", mine && "mine", persona && "from-persona", failed && "failed"].filter(Boolean);
  return el(
    "li",
    { class: classes.join(" "), dataset: { id: String(message.id) } },
    el(
      "div",
      { class: "message-head" },
      ...senderHead(sender),
      failed ? el("span", { class: "badge error", title: errorText(meta.error) }, "error") : null,
      replyInfo(meta),
      el("time", { datetime: when.toISOString(), title: when.toLocaleString() }, formatTime(message.ts)),
    ),
    el("p", { class: "message-text" }, message.text),
  );
}
/** "1.2 s · 40 tokens" under a persona's reply, from its meta. */
export function replyInfo(meta) {
  const parts = [];
  if (typeof meta.seconds === "number") parts.push(`${meta.seconds.toFixed(1)} s`);
  const tokens = meta.usage?.completion_tokens;
  if (typeof tokens === "number") parts.push(`${tokens} token${tokens === 1 ? "" : "s"}`);
  if (typeof meta.observations === "number" && meta.observations > 0) {
    parts.push(`${meta.observations} command${meta.observations === 1 ? "" : "s"}`);
  }
  return parts.length ? el("span", { class: "reply-info" }, parts.join(" · ")) : null;
}

// Streaming replies: a persona writes its answer as chat_delta events, then posts it as a chat_message
// whose meta.stream_id names the stream. Deltas of every joined room are kept, so switching to a room shows
// the replies being written there; the selected room shows each as a .streaming bubble at the bottom.

export function onChatDelta(data) {
  if (!data || typeof data.stream_id !== "string" || typeof data.room !== "string") return;
  if (ui.finishedStreams.has(data.stream_id)) return; // a straggler after the final message
  let stream = ui.streams.get(data.stream_id);
  const isNew = stream === undefined;
  if (isNew) {
    stream = { id: data.stream_id, room: data.room, sender: data.sender || {}, text: "", last: 0, node: null };
    ui.streams.set(stream.id, stream);
  }
  stream.text += typeof data.delta === "string" ? data.delta : "";
  stream.last = Date.now();
  if (stream.room === ui.room) showStream(stream);
  else if (isNew) renderRooms(); // the room gets a "writing" marker
}

export function showStream(stream) {
  const nearBottom = chatNearBottom();
  if (stream.node === null) {
    const text = el("p", { class: "message-text" });
    stream.node = el(
      "li",
      {
        class: `message streaming${stream.sender.kind === "persona" ? " from-persona" : ""}`,
        dataset: { stream: stream.id },
        "aria-busy": "true",
      },
      el(
        "div",
        { class: "message-head" },
        ...senderHead(stream.sender),
        el("span", { class: "typing", title: "writing…", "aria-label": "writing" }),
      ),
      text,
    );
    $("chat-log").append(stream.node);
    $("chat-empty").hidden = true;
  }
  stream.node.querySelector(".message-text").textContent = stream.text;
  if (nearBottom) scrollChatToBottom();
}

export function finishStream(streamId) {
  if (typeof streamId !== "string") return;
  ui.finishedStreams.add(streamId);
  if (ui.finishedStreams.size > 500) ui.finishedStreams.delete(ui.finishedStreams.values().next().value);
  const stream = ui.streams.get(streamId);
  if (stream === undefined) return;
  stream.node?.remove();
  ui.streams.delete(streamId);
  if (stream.room !== ui.room) renderRooms();
}

export function renderStreams() {
  for (const stream of ui.streams.values()) if (stream.room === ui.room) showStream(stream);
}

/** The chat log was emptied: the bubbles are gone with it (the streams themselves are kept). */
export function detachStreams() {
  for (const stream of ui.streams.values()) stream.node = null;
}

export function dropStreams() {
  for (const stream of ui.streams.values()) stream.node?.remove();
  ui.streams.clear();
}

export function roomIsWriting(room) {
  for (const stream of ui.streams.values()) if (stream.room === room) return true;
  return false;
}

/** Drop streams whose writer went quiet for good (a crashed persona never posts its final message). */
export function sweepStreams() {
  const cutoff = Date.now() - STREAM_STALE_MS;
  let changed = false;
  for (const stream of [...ui.streams.values()]) {
    if (stream.last >= cutoff) continue;
    stream.node?.remove();
    ui.streams.delete(stream.id);
    changed = true;
  }
  if (changed) renderRooms();
}

export function scrollChatToBottom() {
  const scroller = $("chat-scroll");
  scroller.scrollTop = scroller.scrollHeight;
}

export async function sendChat(event) {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value;
  const room = ui.room;
  if (!text.trim() || room === null) return;
  $("chat-send").disabled = true;
  try {
    const { message } = await bus.call("chat", { room, text });
    if (input.value === text) input.value = "";
    showError($("chat-error"), null);
    addLiveMessage(message); // the chat_message event for it may come first or later: addMessage dedupes
  } catch (error) {
    showError($("chat-error"), error);
  } finally {
    updateControls();
    input.focus();
  }
}

export function onChatKey(event) {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("chat-form").requestSubmit();
  }
}

bus.on("event:chat_message", (message) => {
  if (message.room === ui.room) {
    addLiveMessage(message);
  } else {
    finishStream(message.meta?.stream_id);
    ui.unread.set(message.room, (ui.unread.get(message.room) || 0) + 1);
    renderRooms();
  }
});

bus.on("event:chat_delta", onChatDelta);
