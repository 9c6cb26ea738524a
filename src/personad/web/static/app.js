// The personad browser page: one WebSocket to the daemon's command bus, rooms and chat, and a runner
// for any command with a form generated from its params JSON schema. Plain ES module, no build step.
//
// Layout of this file: small helpers · Bus (connection, call(), events) · rooms · chat · commands ·
// start-up. New panels (personas, sessions, …) subscribe to the same Bus the way rooms and chat do.
//
// Untrusted text (chat, topics, names, results) only ever reaches the DOM as text nodes / textContent.

const STORAGE = { session: "personad.session", name: "personad.name", room: "personad.room" };
const SESSION_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const ROOM_ID = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const HISTORY_PAGE = 50;
const KEEPALIVE_MS = 25_000;
const PONG_TIMEOUT_MS = 10_000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10_000;
const LONG_TEXT_PARAMS = /^(script|content|text|body|code|prompt|message|source)$/;
const IMAGE_FORMATS = new Set(["png", "jpeg", "jpg"]);

// ---------------------------------------------------------------------------------------------------
// Helpers

const $ = (id) => document.getElementById(id);

/** Build an element. attrs: class, dataset, text, on<event> listeners, or plain attributes. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child)); // strings become text nodes
  }
  return node;
}

const store = {
  get(key) {
    try {
      return localStorage.getItem(key);
    } catch {
      return null; // storage disabled: the page still works, it just forgets on reload
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(key, value);
    } catch {
      /* see get() */
    }
  },
};

function randomHex(length) {
  const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil(length / 2)));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("").slice(0, length);
}

function newSessionId() {
  return `web-${randomHex(12)}`;
}

function storedSessionId() {
  let sid = store.get(STORAGE.session);
  if (!sid || !SESSION_ID.test(sid)) {
    sid = newSessionId();
    store.set(STORAGE.session, sid);
  }
  return sid;
}

function storedName() {
  const name = (store.get(STORAGE.name) || "").trim();
  return name || "human";
}

function showError(node, error) {
  if (!error) {
    node.hidden = true;
    node.textContent = "";
    return;
  }
  node.hidden = false;
  node.textContent = error.code ? `${error.code}: ${error.message}` : String(error.message || error);
}

function formatTime(ts) {
  const date = new Date(ts * 1000);
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return sameDay ? time : `${date.toLocaleDateString()} ${time}`;
}

// ---------------------------------------------------------------------------------------------------
// Bus: the WebSocket, request/response matching by id, events, reconnect with backoff

class BusError extends Error {
  constructor({ code = "error", message = "", details } = {}) {
    super(message || code);
    this.code = code;
    this.details = details;
  }

  toJSON() {
    const out = { code: this.code, message: this.message };
    if (this.details !== undefined) out.details = this.details;
    return out;
  }
}

class Bus extends EventTarget {
  constructor({ token, sessionId, name }) {
    super();
    this.token = token;
    this.sessionId = sessionId;
    this.name = name;
    this.socket = null;
    this.state = "idle"; // idle | connecting | open | closed | unauthorized
    this.welcome = null;
    this.pending = new Map();
    this.nextId = 1;
    this.retries = 0;
    this.retryTimer = null;
    this.keepaliveTimer = null;
    this.lastError = null;
  }

  /** Subscribe to "state", "welcome", "event:<name>" or "bus-error"; fn gets the payload. */
  on(name, fn) {
    this.addEventListener(name, (event) => fn(event.detail));
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  setState(state, text) {
    this.state = state;
    this.emit("state", { state, text });
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({
      token: this.token,
      kind: "browser",
      session: this.sessionId,
      name: this.name,
    });
    return `${scheme}//${location.host}/ws?${query}`;
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.lastError = null;
    this.setState("connecting", "connecting…");
    const socket = new WebSocket(this.url());
    this.socket = socket;
    // Handlers ignore a socket we already replaced (reconnect() after a session change).
    socket.addEventListener("message", (event) => this.socket === socket && this.onMessage(event.data));
    socket.addEventListener("close", (event) => this.socket === socket && this.onClose(event));
  }

  /** Drop the current connection (if any) and connect again at once, e.g. with a new session id. */
  reconnect() {
    const old = this.socket;
    this.socket = null;
    this.stopKeepalive();
    this.failPending("disconnected", "reconnecting");
    if (old) old.close(1000, "reconnect");
    this.retries = 0;
    this.connect();
  }

  /** Run a command; resolves with its result, rejects with a BusError carrying the daemon's code. */
  call(command, params = {}) {
    return this.request({ type: "execute_command", data: { command, params } });
  }

  ping() {
    return this.request({ type: "ping" });
  }

  request(envelope) {
    if (this.state !== "open" || this.socket?.readyState !== WebSocket.OPEN) {
      return Promise.reject(new BusError({ code: "not_connected", message: "not connected to the daemon" }));
    }
    const id = `r${this.nextId++}`;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ ...envelope, id }));
    });
  }

  onMessage(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      console.warn("personad: ignoring a non-JSON frame");
      return;
    }
    switch (message.type) {
      case "welcome":
        this.retries = 0;
        this.welcome = message.data;
        this.setState("open", "connected");
        this.startKeepalive();
        this.emit("welcome", message.data);
        break;
      case "command_result":
      case "error":
      case "pong": {
        const waiter = message.id == null ? undefined : this.pending.get(String(message.id));
        if (waiter) {
          this.pending.delete(String(message.id));
          if (message.type === "pong") waiter.resolve(message.data);
          else if (message.ok) waiter.resolve(message.result);
          else waiter.reject(new BusError(message.error));
        } else if (message.type === "error") {
          this.lastError = message.error;
          this.emit("bus-error", message.error);
        }
        break;
      }
      case "event":
        this.emit(`event:${message.event}`, message.data);
        this.emit("event", message);
        break;
      default:
        console.warn("personad: unknown message type", message.type);
    }
  }

  onClose(event) {
    this.socket = null;
    this.stopKeepalive();
    this.failPending("disconnected", "the connection to the daemon closed");
    const error = this.lastError;
    if (event.code === 4401) {
      this.setState("unauthorized", "unauthorized — open the URL that `personad serve` printed");
      return; // retrying with the same token cannot help
    }
    if (event.code === 4400 && error?.code === "invalid_session_id") {
      this.sessionId = newSessionId();
      store.set(STORAGE.session, this.sessionId);
    }
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** this.retries) * (0.8 + Math.random() * 0.4);
    this.retries += 1;
    const reason = error ? ` (${error.code})` : "";
    this.setState("closed", `disconnected${reason} — retrying in ${Math.ceil(delay / 1000)} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  failPending(code, message) {
    for (const waiter of this.pending.values()) waiter.reject(new BusError({ code, message }));
    this.pending.clear();
  }

  startKeepalive() {
    this.stopKeepalive();
    this.keepaliveTimer = setInterval(() => {
      const socket = this.socket;
      const timeout = setTimeout(() => socket?.close(4000, "no pong"), PONG_TIMEOUT_MS);
      this.ping().then(
        () => clearTimeout(timeout),
        () => clearTimeout(timeout),
      );
    }, KEEPALIVE_MS);
  }

  stopKeepalive() {
    clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = null;
  }
}

// ---------------------------------------------------------------------------------------------------
// Page state

const token = new URLSearchParams(location.search).get("token");
const bus = new Bus({ token, sessionId: storedSessionId(), name: storedName() });

const ui = {
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
};

function isJoined(room) {
  return ui.rooms.some((r) => r.id === room && r.joined);
}

function updateControls() {
  const open = bus.state === "open";
  const canChat = open && ui.room !== null && isJoined(ui.room);
  $("chat-input").disabled = !canChat;
  $("chat-send").disabled = !canChat;
  $("new-room-create").disabled = !open;
  $("rooms-refresh").disabled = !open;
  $("command-select").disabled = !open || ui.commands.length === 0;
  $("command-run").disabled = !open || !ui.command || ui.running || !ui.command.allowed;
}

// ---------------------------------------------------------------------------------------------------
// Connection state and session info

bus.on("state", ({ state, text }) => {
  const node = $("connection-state");
  node.dataset.state = state;
  node.textContent = text;
  document.body.dataset.connection = state;
  renderRooms();
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

async function refreshAll() {
  await Promise.all([refreshRooms(), loadCommands()]);
  const wanted = ui.room ?? store.get(STORAGE.room);
  if (wanted && isJoined(wanted)) await selectRoom(wanted);
  else if (ui.room === null && isJoined("general")) await selectRoom("general");
}

function updateNameHint() {
  const current = bus.welcome?.name;
  const wanted = $("display-name").value.trim();
  $("name-hint").hidden = !current || !wanted || current === wanted;
}

function onNameChange() {
  const name = $("display-name").value.trim();
  if (!name) return;
  store.set(STORAGE.name, name);
  bus.name = name;
  updateNameHint();
}

function startNewSession() {
  onNameChange();
  bus.sessionId = newSessionId();
  store.set(STORAGE.session, bus.sessionId);
  clearChat();
  ui.unread.clear();
  bus.reconnect();
}

// ---------------------------------------------------------------------------------------------------
// Rooms

let roomsRefreshQueued = false;

async function refreshRooms() {
  try {
    const { rooms } = await bus.call("rooms");
    ui.rooms = rooms;
    ui.roomsLoaded = true;
    showError($("rooms-error"), null);
  } catch (error) {
    showError($("rooms-error"), error);
  }
  renderRooms();
  if (ui.room !== null && !isJoined(ui.room) && bus.state === "open") clearChat();
  updateControls();
}

/** Coalesce bursts of room_joined / room_left events into one refresh. */
function queueRoomsRefresh() {
  if (roomsRefreshQueued) return;
  roomsRefreshQueued = true;
  setTimeout(() => {
    roomsRefreshQueued = false;
    void refreshRooms();
  }, 100);
}

function renderRooms() {
  const list = $("room-list");
  if (ui.rooms.length === 0) {
    list.replaceChildren(el("li", { class: "placeholder" }, ui.roomsLoaded ? "no rooms" : "loading…"));
    return;
  }
  list.replaceChildren(...ui.rooms.map(roomItem));
}

function roomItem(room) {
  const offline = bus.state !== "open";
  const current = room.id === ui.room;
  const unread = ui.unread.get(room.id) || 0;
  const name = el("span", { class: "room-name" }, `#${room.id}`);
  const badge = unread ? el("span", { class: "badge", title: `${unread} unread` }, String(unread)) : null;
  const title = room.joined
    ? el(
        "button",
        {
          type: "button",
          class: "room-select",
          "aria-current": current ? "true" : null,
          disabled: offline,
          onclick: () => selectRoom(room.id),
        },
        name,
        badge,
      )
    : el("span", { class: "room-select not-joined" }, name);
  const verb = room.joined ? "Leave" : "Join";
  const action = el(
    "button",
    {
      type: "button",
      class: `room-${verb.toLowerCase()} small`,
      "aria-label": `${verb} ${room.id}`,
      disabled: offline,
      onclick: () => (room.joined ? leaveRoom(room.id) : joinRoom(room.id)),
    },
    verb,
  );
  const members = `${room.members} member${room.members === 1 ? "" : "s"}`;
  const meta = el("span", { class: "room-meta" }, room.topic ? `${members} · ${room.topic}` : members);
  const classes = `room${current ? " current" : ""}${room.joined ? " joined" : ""}`;
  return el(
    "li",
    { class: classes, dataset: { room: room.id, joined: String(room.joined) } },
    title,
    action,
    meta,
  );
}

async function joinRoom(room) {
  try {
    await bus.call("room_join", { room });
    await refreshRooms();
    await selectRoom(room);
  } catch (error) {
    showError($("rooms-error"), error);
  }
}

async function leaveRoom(room) {
  try {
    await bus.call("room_leave", { room });
    if (ui.room === room) clearChat();
    await refreshRooms();
  } catch (error) {
    showError($("rooms-error"), error);
  }
}

async function createRoom(event) {
  event.preventDefault();
  const room = $("new-room-name").value.trim();
  const topic = $("new-room-topic").value.trim();
  if (!ROOM_ID.test(room)) {
    showError($("rooms-error"), {
      code: "invalid_room",
      message: "use 1-64 lowercase letters, digits, '_', '-' or '.', starting with a letter or digit",
    });
    return;
  }
  try {
    await bus.call("room_create", { room, topic });
    $("new-room").reset();
    showError($("rooms-error"), null);
    await refreshRooms();
    await selectRoom(room);
  } catch (error) {
    showError($("rooms-error"), error);
  }
}

bus.on("event:room_joined", queueRoomsRefresh);
bus.on("event:room_left", (data) => {
  if (data.session_id === bus.sessionId && data.room === ui.room) clearChat(); // left in another tab
  queueRoomsRefresh();
});
bus.on("event:room_created", queueRoomsRefresh);

// ---------------------------------------------------------------------------------------------------
// Chat

function clearChat() {
  ui.room = null;
  ui.messages = new Map();
  ui.nextBefore = null;
  ui.historyLoad += 1;
  $("chat-title").textContent = "No room selected";
  $("chat-topic").textContent = "";
  $("chat-log").replaceChildren();
  $("chat-empty").hidden = false;
  $("chat-empty").textContent = "Join a room on the left to chat.";
  $("chat-load-older").hidden = true;
  showError($("chat-error"), null);
  renderRooms();
  updateControls();
}

async function selectRoom(room) {
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
    $("chat-load-older").hidden = true;
  }
  $("chat-empty").hidden = ui.messages.size > 0;
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
    $("chat-empty").hidden = ui.messages.size > 0;
    $("chat-load-older").hidden = ui.nextBefore === null;
    scrollChatToBottom();
  } catch (error) {
    if (load === ui.historyLoad) showError($("chat-error"), error);
  }
  if (document.activeElement === document.body) $("chat-input").focus();
}

async function loadOlder() {
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

/** Insert a message of the selected room in id order; a message already shown is skipped (dedupe). */
function addMessage(message) {
  if (message.room !== ui.room || ui.messages.has(message.id)) return false;
  ui.messages.set(message.id, message);
  const log = $("chat-log");
  const node = messageItem(message);
  let after = log.lastElementChild;
  while (after && Number(after.dataset.id) > message.id) after = after.previousElementSibling;
  if (after) after.after(node);
  else log.prepend(node);
  $("chat-empty").hidden = true;
  return true;
}

function addLiveMessage(message) {
  const scroller = $("chat-scroll");
  const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
  if (addMessage(message) && (nearBottom || message.sender.session_id === bus.sessionId)) scrollChatToBottom();
}

function messageItem(message) {
  const sender = message.sender || {};
  const mine = sender.session_id === bus.sessionId;
  const kind = String(sender.kind || "").replace(/[^a-z]/g, "");
  const when = new Date(message.ts * 1000);
  return el(
    "li",
    { class: `message${mine ? " mine" : ""}`, dataset: { id: String(message.id) } },
    el(
      "div",
      { class: "message-head" },
      el("span", { class: "sender", title: sender.session_id }, sender.name || sender.session_id || "?"),
      kind ? el("span", { class: `kind kind-${kind}` }, kind) : null,
      el("time", { datetime: when.toISOString(), title: when.toLocaleString() }, formatTime(message.ts)),
    ),
    el("p", { class: "message-text" }, message.text),
  );
}

function scrollChatToBottom() {
  const scroller = $("chat-scroll");
  scroller.scrollTop = scroller.scrollHeight;
}

async function sendChat(event) {
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

function onChatKey(event) {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("chat-form").requestSubmit();
  }
}

bus.on("event:chat_message", (message) => {
  if (message.room === ui.room) {
    addLiveMessage(message);
  } else {
    ui.unread.set(message.room, (ui.unread.get(message.room) || 0) + 1);
    renderRooms();
  }
});

// ---------------------------------------------------------------------------------------------------
// Commands: a form per command, generated from its pydantic params JSON schema

async function loadCommands() {
  let commands;
  try {
    ({ commands } = await bus.call("commands"));
  } catch (error) {
    showResult({ command: "commands", error });
    return;
  }
  const previous = ui.command;
  ui.commands = commands;
  renderCommandSelect();
  const again = previous && commands.find((c) => c.name === previous.name);
  if (again && JSON.stringify(again) === JSON.stringify(previous)) {
    ui.command = again; // same schema: keep what the user typed in the form
    $("command-select").value = again.name;
  } else {
    selectCommand(again ? again.name : "");
  }
  updateControls();
}

function renderCommandSelect() {
  const groups = new Map();
  for (const command of ui.commands) {
    const group = command.capability ?? "";
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group).push(command);
  }
  const names = [...groups.keys()].sort();
  const options = names.map((group) =>
    el(
      "optgroup",
      { label: group ? `needs “${group}”` : "any session" },
      ...groups
        .get(group)
        .map((c) => el("option", { value: c.name }, c.allowed ? c.name : `${c.name} (not allowed)`)),
    ),
  );
  $("command-select").replaceChildren(el("option", { value: "" }, "— choose a command —"), ...options);
}

function selectCommand(name) {
  const command = ui.commands.find((c) => c.name === name) ?? null;
  ui.command = command;
  $("command-select").value = command ? command.name : "";
  const description = $("command-description");
  const denied = command && !command.allowed ? ` — this session lacks the “${command.capability}” capability` : "";
  description.textContent = command ? `${command.description}${denied}` : "";
  ui.fields = command ? schemaFields(command.params_schema) : [];
  const container = $("command-fields");
  container.replaceChildren(...ui.fields.map(renderField));
  if (command && ui.fields.length === 0) container.append(el("p", { class: "help" }, "No parameters."));
  updateControls();
}

/** Follow $ref (into $defs) and single-member allOf; keywords beside a $ref win (pydantic puts them there). */
function resolveSchema(schema, root, depth = 0) {
  if (!schema || typeof schema !== "object") return {};
  if (depth > 32) return schema; // a cyclic $ref: stop resolving
  let out = schema;
  if (typeof out.$ref === "string") {
    const { $ref, ...rest } = out;
    out = { ...resolveSchema(lookupRef(root, $ref), root, depth + 1), ...rest };
  }
  if (Array.isArray(out.allOf) && out.allOf.length === 1) {
    const { allOf, ...rest } = out;
    out = { ...resolveSchema(allOf[0], root, depth + 1), ...rest };
  }
  return out;
}

function lookupRef(root, ref) {
  if (!ref.startsWith("#/")) return {};
  let node = root;
  for (const part of ref.slice(2).split("/")) {
    node = node?.[part.replaceAll("~1", "/").replaceAll("~0", "~")];
    if (node === undefined) return {};
  }
  return node;
}

function schemaFields(schema) {
  const top = resolveSchema(schema, schema);
  const required = new Set(top.required || []);
  return Object.entries(top.properties || {}).map(([name, property]) =>
    fieldSpec(name, property, schema, required.has(name)),
  );
}

/** Reduce one property schema to what the form needs: kind, options, default, help. */
function fieldSpec(name, property, root, required) {
  let schema = resolveSchema(property, root);
  let nullable = false;
  const union = schema.anyOf || schema.oneOf;
  if (Array.isArray(union)) {
    const branches = union.map((branch) => resolveSchema(branch, root));
    const nonNull = branches.filter((branch) => branch.type !== "null");
    nullable = nonNull.length < branches.length;
    const { anyOf, oneOf, ...outer } = schema;
    schema = nonNull.length === 1 ? { ...nonNull[0], ...outer } : { ...outer, type: undefined };
  }
  let type = schema.type;
  if (Array.isArray(type)) {
    nullable ||= type.includes("null");
    const rest = type.filter((t) => t !== "null");
    type = rest.length === 1 ? rest[0] : undefined;
  }
  let kind = "json";
  let options;
  if (Array.isArray(schema.enum)) {
    kind = "enum";
    options = schema.enum;
  } else if ("const" in schema) {
    kind = "enum";
    options = [schema.const];
  } else if (["string", "integer", "number", "boolean"].includes(type)) {
    kind = type;
  }
  return {
    name,
    required,
    nullable,
    kind,
    options,
    schema,
    hasDefault: "default" in schema && schema.default !== null,
    default: schema.default,
    description: schema.description || "",
  };
}

function constraintsText(spec) {
  const s = spec.schema;
  const parts = [];
  if (s.minimum !== undefined) parts.push(`≥ ${s.minimum}`);
  if (s.exclusiveMinimum !== undefined) parts.push(`> ${s.exclusiveMinimum}`);
  if (s.maximum !== undefined) parts.push(`≤ ${s.maximum}`);
  if (s.exclusiveMaximum !== undefined) parts.push(`< ${s.exclusiveMaximum}`);
  if (s.minLength !== undefined && s.minLength > 1) parts.push(`at least ${s.minLength} characters`);
  if (s.maxLength !== undefined) parts.push(`at most ${s.maxLength} characters`);
  if (s.pattern !== undefined) parts.push(`pattern ${s.pattern}`);
  if (spec.kind === "json") parts.push("JSON");
  return parts.join(", ");
}

function renderField(spec) {
  const id = `param-${spec.name}`;
  const helpId = `${id}-help`;
  const errorId = `${id}-error`;
  const help = [spec.description, constraintsText(spec)].filter(Boolean).join(" — ");
  const common = {
    id,
    name: spec.name,
    "aria-describedby": `${help ? `${helpId} ` : ""}${errorId}`,
    "aria-required": spec.required ? "true" : null,
  };
  const marker = spec.required
    ? el("abbr", { class: "required", title: "required" }, "*")
    : el("span", { class: "optional" }, "optional");
  const label = el("label", { for: id }, el("code", {}, spec.name), " ", marker);
  let control;
  let inline = false;
  switch (spec.kind) {
    case "boolean":
      if (spec.required || spec.hasDefault) {
        control = el("input", { ...common, type: "checkbox", checked: spec.default === true });
        inline = true;
      } else {
        control = el(
          "select",
          common,
          el("option", { value: "" }, "—"),
          el("option", { value: "true" }, "true"),
          el("option", { value: "false" }, "false"),
        );
      }
      break;
    case "enum": {
      const blank = !(spec.required && spec.hasDefault) ? el("option", { value: "" }, "—") : null;
      const defaultKey = JSON.stringify(spec.default);
      control = el(
        "select",
        common,
        blank,
        ...spec.options.map((value, index) =>
          el(
            "option",
            { value: String(index), selected: spec.hasDefault && JSON.stringify(value) === defaultKey },
            typeof value === "string" ? value : JSON.stringify(value),
          ),
        ),
      );
      break;
    }
    case "integer":
    case "number": {
      const s = spec.schema;
      control = el("input", {
        ...common,
        type: "number",
        inputmode: spec.kind === "integer" ? "numeric" : "decimal",
        step: spec.kind === "integer" ? "1" : "any",
        min: s.minimum ?? s.exclusiveMinimum,
        max: s.maximum ?? s.exclusiveMaximum,
        value: typeof spec.default === "number" ? String(spec.default) : null,
        placeholder: spec.nullable ? "blank = null" : null,
      });
      break;
    }
    case "string": {
      const long = LONG_TEXT_PARAMS.test(spec.name) || spec.schema.format === "textarea";
      const placeholder = spec.nullable || !spec.required ? "blank = leave out" : null;
      if (long) {
        control = el("textarea", { ...common, rows: "4", spellcheck: "false", placeholder });
        if (typeof spec.default === "string") control.value = spec.default;
      } else {
        control = el("input", { ...common, type: "text", spellcheck: "false", placeholder });
        if (typeof spec.default === "string") control.value = spec.default;
      }
      break;
    }
    default:
      control = el("textarea", {
        ...common,
        rows: "3",
        class: "json",
        spellcheck: "false",
        placeholder: "JSON, blank = leave out",
      });
      if (spec.hasDefault) control.value = JSON.stringify(spec.default, null, 2);
  }
  return el(
    "div",
    { class: `field field-${spec.kind}${inline ? " inline" : ""}`, dataset: { param: spec.name } },
    inline ? control : label,
    inline ? label : control,
    help ? el("small", { id: helpId, class: "help" }, help) : null,
    el("small", { id: errorId, class: "field-error", hidden: true }),
  );
}

/** Read the form into params: blank optional fields are left out, numbers and booleans converted. */
function collectParams(fields) {
  const params = {};
  const problems = [];
  for (const spec of fields) {
    const control = $(`param-${spec.name}`);
    const raw = control.value;
    switch (spec.kind) {
      case "boolean":
        if (control.type === "checkbox") params[spec.name] = control.checked;
        else if (raw !== "") params[spec.name] = raw === "true";
        break;
      case "enum":
        if (raw !== "") params[spec.name] = spec.options[Number(raw)];
        break;
      case "integer":
      case "number": {
        const text = raw.trim();
        if (text === "") {
          if (control.validity?.badInput) problems.push({ name: spec.name, message: "is not a number" });
          break;
        }
        const value = Number(text);
        if (!Number.isFinite(value)) problems.push({ name: spec.name, message: "is not a number" });
        else if (spec.kind === "integer" && !Number.isInteger(value)) {
          problems.push({ name: spec.name, message: "must be a whole number" });
        } else params[spec.name] = value;
        break;
      }
      case "string":
        if (raw !== "" || spec.required) params[spec.name] = raw;
        break;
      default: {
        const text = raw.trim();
        if (text === "") break;
        try {
          params[spec.name] = JSON.parse(text);
        } catch (error) {
          problems.push({ name: spec.name, message: `is not valid JSON (${error.message})` });
        }
      }
    }
  }
  return { params, problems };
}

function showFieldErrors(problems) {
  for (const node of $("command-fields").querySelectorAll(".field-error")) {
    node.hidden = true;
    node.textContent = "";
  }
  for (const node of $("command-fields").querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  for (const { name, message } of problems) {
    const control = $(`param-${name}`);
    const slot = $(`param-${name}-error`);
    if (!control || !slot) continue;
    control.setAttribute("aria-invalid", "true");
    slot.hidden = false;
    slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
  }
}

async function runCommand(event) {
  event.preventDefault();
  const command = ui.command;
  if (!command || ui.running) return;
  const { params, problems } = collectParams(ui.fields);
  showFieldErrors(problems);
  if (problems.length) {
    const message = problems.map((p) => `${p.name} ${p.message}`).join("; ");
    showResult({ command: command.name, error: { code: "invalid_input", message } });
    return;
  }
  ui.running = true;
  updateControls();
  const box = $("command-result");
  box.hidden = false;
  box.dataset.state = "running";
  $("command-status").textContent = `running ${command.name}…`;
  const started = performance.now();
  try {
    const result = await bus.call(command.name, params);
    showResult({ command: command.name, result, ms: performance.now() - started });
  } catch (error) {
    showResult({ command: command.name, error, ms: performance.now() - started });
    if (error.code === "invalid_params" && Array.isArray(error.details)) {
      showFieldErrors(error.details.map((d) => ({ name: String(d.loc?.[0] ?? ""), message: d.msg })));
    }
  } finally {
    ui.running = false;
    updateControls();
  }
}

/** An artifact image the daemon serves: a same-origin /api/sessions/… URL with format png/jpeg. */
function imageUrl(result) {
  if (!result || typeof result.url !== "string" || !result.url.startsWith("/api/sessions/")) return null;
  if (!IMAGE_FORMATS.has(String(result.format).toLowerCase())) return null;
  const separator = result.url.includes("?") ? "&" : "?";
  return `${result.url}${separator}token=${encodeURIComponent(token)}`;
}

function showResult({ command, result, error, ms }) {
  const box = $("command-result");
  const status = $("command-status");
  const figure = $("result-figure");
  const image = $("result-image");
  const took = ms === undefined ? "" : ` · ${Math.round(ms)} ms`;
  box.hidden = false;
  box.dataset.state = error ? "error" : "ok";
  if (error) {
    const { code = "error", message = String(error) } = error;
    status.replaceChildren(
      el("span", { class: "badge error" }, "error"),
      " ",
      el("code", { id: "command-error-code", class: "error-code" }, code),
      ` ${message}`,
      el("span", { class: "muted" }, ` — ${command}${took}`),
    );
    $("command-output").textContent = JSON.stringify(error instanceof BusError ? error.toJSON() : error, null, 2);
  } else {
    status.replaceChildren(
      el("span", { class: "badge ok" }, "ok"),
      ` ${command}`,
      el("span", { class: "muted" }, took),
    );
    $("command-output").textContent = JSON.stringify(result, null, 2);
  }
  const src = error ? null : imageUrl(result);
  if (src) {
    image.src = src;
    image.alt = `${command} result image`;
    $("result-caption").textContent =
      `${result.width ?? "?"} × ${result.height ?? "?"} px · ${result.format}` +
      (result.bytes !== undefined ? ` · ${result.bytes} bytes` : "");
    figure.hidden = false;
  } else {
    figure.hidden = true;
    image.removeAttribute("src");
    $("result-caption").textContent = "";
  }
  box.scrollIntoView({ block: "nearest" });
}

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
  $("new-room").addEventListener("submit", createRoom);
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-input").addEventListener("keydown", onChatKey);
  $("chat-load-older").addEventListener("click", loadOlder);
  $("command-select").addEventListener("change", (event) => selectCommand(event.target.value));
  $("command-form").addEventListener("submit", runCommand);
  updateControls();
  if (!token) {
    bus.setState("unauthorized", "no token in the URL — open the URL that `personad serve` printed");
    return;
  }
  bus.connect();
}

start();
