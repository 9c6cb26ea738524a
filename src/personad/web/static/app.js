// The personad browser page: one WebSocket to the daemon's command bus, rooms and chat, and a runner
// for any command with a form generated from its params JSON schema. Plain ES module, no build step.
//
// Layout of this file: small helpers · Bus (connection, call(), events) · rooms · chat (with streamed persona
// replies) · personas · commands · start-up. New panels (sessions, …) subscribe to the same Bus the way rooms,
// chat and personas do.
//
// Untrusted text (chat, topics, names, results) only ever reaches the DOM as text nodes / textContent.

const STORAGE = {
  session: "personad.session",
  name: "personad.name",
  room: "personad.room",
  greeted: "personad.greeted", // the last session id that was joined to the default room
};
const DEFAULT_ROOM = "general";
const SESSION_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const ROOM_ID = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const HISTORY_PAGE = 50;
const KEEPALIVE_MS = 25_000;
const PONG_TIMEOUT_MS = 10_000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10_000;
const LONG_TEXT_PARAMS = /^(script|content|text|body|code|prompt|message|source)$/;
const IMAGE_FORMATS = new Set(["png", "jpeg", "jpg"]);
const PERSONA_REFRESH_MS = 5_000;
const STREAM_STALE_MS = 120_000; // a reply stream with no delta for this long is dropped (its writer died)
const MAX_ROOM_ID = 64;
const DIRECT_TOPIC = "Direct chat with "; // the topic of the direct rooms this page opens

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

/** Show (or with null, hide) an error. source "list" marks one from a background refresh, which the next
 * good refresh clears (clearListError) without hiding what a click went wrong with. */
function showError(node, error, source = "action") {
  if (!error) {
    node.hidden = true;
    node.textContent = "";
    delete node.dataset.source;
    return;
  }
  node.dataset.source = source;
  node.hidden = false;
  node.textContent = error.code ? `${error.code}: ${error.message}` : String(error.message || error);
}

/** Hex SHA-256 of a string: crypto.subtle where the page is a secure context, else a small JS fallback. */
async function sha256Hex(text) {
  const bytes = new TextEncoder().encode(text);
  const digest = globalThis.crypto?.subtle?.digest
    ? new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))
    : sha256Bytes(bytes); // plain http:// on a LAN address has no crypto.subtle
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

const SHA256_K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

/** SHA-256 (FIPS 180-4) of a byte array, for pages without crypto.subtle. */
function sha256Bytes(bytes) {
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  const padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bytes.length / 0x20000000)); // the bit length, big-endian
  view.setUint32(padded.length - 4, (bytes.length << 3) >>> 0);
  const hash = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(offset + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1; // the Uint32Array keeps it mod 2^32
    }
    let [a, b, c, d, e, f, g, h] = hash;
    for (let i = 0; i < 64; i++) {
      const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + SHA256_K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      [h, g, f, e, d, c, b, a] = [g, f, e, (d + t1) >>> 0, c, b, a, (t1 + t2) >>> 0];
    }
    hash[0] += a;
    hash[1] += b;
    hash[2] += c;
    hash[3] += d;
    hash[4] += e;
    hash[5] += f;
    hash[6] += g;
    hash[7] += h;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  hash.forEach((word, i) => outView.setUint32(i * 4, word));
  return out;
}

function clearListError(node) {
  if (node.dataset.source === "list") showError(node, null);
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

function hasCapability(name) {
  const caps = bus.welcome?.capabilities ?? [];
  return caps.includes("*") || caps.includes(name);
}

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
  $("personas-refresh").disabled = !open || ui.personasDenied;
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

async function refreshAll() {
  await greetNewSession();
  await Promise.all([refreshRooms(), loadCommands(), refreshPersonas(), refreshMesh()]);
  const wanted = ui.room ?? store.get(STORAGE.room);
  if (wanted && isJoined(wanted)) await selectRoom(wanted);
  else if (ui.room === null && isJoined(DEFAULT_ROOM)) await selectRoom(DEFAULT_ROOM);
  routeFromHash(); // a linked #graduation/<persona> view, now that the daemon can fill it in
  for (const personaId of ui.personaOpen) void loadPersonaDetails(personaId);
}

/** A session's first connection joins the default room, where the default persona answers everyone. */
async function greetNewSession() {
  if (store.get(STORAGE.greeted) === bus.sessionId || !hasCapability("chat")) return;
  try {
    await bus.call("room_join", { room: DEFAULT_ROOM });
    store.set(STORAGE.greeted, bus.sessionId);
  } catch (error) {
    if (error.code === "room_not_found") store.set(STORAGE.greeted, bus.sessionId);
    else console.warn("personad: could not join", DEFAULT_ROOM, error.code, error.message);
  }
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
    clearListError($("rooms-error"));
  } catch (error) {
    showError($("rooms-error"), error, "list");
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
  // Other people's direct rooms are listed by the daemon too; only the ones this session is in are shown.
  const rooms = ui.rooms.filter((room) => room.joined || !room.direct);
  if (rooms.length === 0) {
    list.replaceChildren(el("li", { class: "placeholder" }, ui.roomsLoaded ? "no rooms" : "loading…"));
    return;
  }
  list.replaceChildren(...rooms.map(roomItem));
}

function roomItem(room) {
  const offline = bus.state !== "open";
  const current = room.id === ui.room;
  const unread = ui.unread.get(room.id) || 0;
  let label = `#${room.id}`;
  if (room.direct && room.topic) {
    label = room.topic.startsWith(DIRECT_TOPIC) ? room.topic.slice(DIRECT_TOPIC.length) : room.topic;
  }
  const name = el("span", { class: "room-name", title: `#${room.id}` }, label);
  const badge = unread ? el("span", { class: "badge", title: `${unread} unread` }, String(unread)) : null;
  const writing =
    !current && roomIsWriting(room.id)
      ? el("span", { class: "typing", title: "a reply is being written", "aria-label": "a reply is being written" })
      : null;
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
        writing,
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
  const about = room.direct ? "direct" : room.topic;
  const meta = el("span", { class: "room-meta" }, about ? `${members} · ${about}` : members);
  const classes = `room${current ? " current" : ""}${room.joined ? " joined" : ""}${room.direct ? " direct" : ""}`;
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
    showError($("rooms-error"), null);
    await refreshRooms();
    await selectRoom(room);
  } catch (error) {
    showError($("rooms-error"), error);
  }
}

async function leaveRoom(room) {
  try {
    await bus.call("room_leave", { room });
    showError($("rooms-error"), null);
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
  detachStreams();
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

/** Insert a message of the selected room in id order; a message already shown is skipped (dedupe).
 * A persona's final reply replaces the bubble its stream was written into. Bubbles stay below messages. */
function addMessage(message) {
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

function chatNearBottom() {
  const scroller = $("chat-scroll");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
}

function addLiveMessage(message) {
  const nearBottom = chatNearBottom();
  if (addMessage(message) && (nearBottom || message.sender.session_id === bus.sessionId)) scrollChatToBottom();
}

function senderHead(sender) {
  const kind = String(sender.kind || "").replace(/[^a-z]/g, "");
  return [
    el("span", { class: "sender", title: sender.session_id }, sender.name || sender.session_id || "?"),
    kind ? el("span", { class: `kind kind-${kind}` }, kind) : null,
  ];
}

function messageItem(message) {
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

function errorText(error) {
  if (error && typeof error === "object") return error.code ? `${error.code}: ${error.message ?? ""}` : "";
  return String(error);
}

/** "1.2 s · 40 tokens" under a persona's reply, from its meta. */
function replyInfo(meta) {
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

function onChatDelta(data) {
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

function showStream(stream) {
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

function finishStream(streamId) {
  if (typeof streamId !== "string") return;
  ui.finishedStreams.add(streamId);
  if (ui.finishedStreams.size > 500) ui.finishedStreams.delete(ui.finishedStreams.values().next().value);
  const stream = ui.streams.get(streamId);
  if (stream === undefined) return;
  stream.node?.remove();
  ui.streams.delete(streamId);
  if (stream.room !== ui.room) renderRooms();
}

function renderStreams() {
  for (const stream of ui.streams.values()) if (stream.room === ui.room) showStream(stream);
}

/** The chat log was emptied: the bubbles are gone with it (the streams themselves are kept). */
function detachStreams() {
  for (const stream of ui.streams.values()) stream.node = null;
}

function dropStreams() {
  for (const stream of ui.streams.values()) stream.node?.remove();
  ui.streams.clear();
}

function roomIsWriting(room) {
  for (const stream of ui.streams.values()) if (stream.room === room) return true;
  return false;
}

/** Drop streams whose writer went quiet for good (a crashed persona never posts its final message). */
function sweepStreams() {
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
    finishStream(message.meta?.stream_id);
    ui.unread.set(message.room, (ui.unread.get(message.room) || 0) + 1);
    renderRooms();
  }
});

bus.on("event:chat_delta", onChatDelta);

// ---------------------------------------------------------------------------------------------------
// Personas: list, start/stop, and a direct room to chat with one

let personaTimer = null;

function startPersonaPolling() {
  stopPersonaPolling();
  personaTimer = setInterval(() => {
    if (!document.hidden) void refreshPersonas();
  }, PERSONA_REFRESH_MS);
}

function stopPersonaPolling() {
  clearInterval(personaTimer);
  personaTimer = null;
}

async function refreshPersonas() {
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

function renderPersonas() {
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

const RUNNING_STATES = new Set(["running", "starting", "backoff", "stopping"]);

function personaItem(persona, offline) {
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
    el("div", { class: "persona-actions" }, toggle, chat, detailsToggle(persona, name, offline)),
    ui.personaOpen.has(persona.id) ? personaDetails(persona.id) : null,
  );
}

// A persona's details: its current goals (goal_list) and latest emotions (persona_emotions), read when opened.

const PERSONA_EMOTIONS_SHOWN = 5;

function detailsToggle(persona, name, offline) {
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

function togglePersonaDetails(personaId) {
  if (ui.personaOpen.has(personaId)) {
    ui.personaOpen.delete(personaId);
    ui.personaDetails.delete(personaId);
    renderPersonas();
    return;
  }
  ui.personaOpen.add(personaId);
  void loadPersonaDetails(personaId);
}

async function loadPersonaDetails(personaId) {
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

function errorLine(error) {
  return error?.code ? `${error.code}: ${error.message}` : String(error?.message || error);
}

function signed(value) {
  return typeof value === "number" ? `${value > 0 ? "+" : ""}${value.toFixed(2)}` : "–";
}

function goalItem(goal) {
  const progress = typeof goal.progress === "number" ? ` · ${Math.round(goal.progress * 100)}%` : "";
  return el(
    "li",
    { class: "persona-goal", dataset: { goal: goal.id, status: goal.status } },
    el("span", { class: "persona-goal-text" }, goal.description),
    el("small", { class: "help" }, ` ${goal.status}${progress} · priority ${signed(goal.priority).replace("+", "")}`),
  );
}

function emotionItem(emotion) {
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

function detailsList(items, error, loading, render, empty, cls) {
  if (error) return el("p", { class: "error" }, error);
  if (!items) return el("p", { class: "help" }, loading ? "loading…" : "–");
  if (items.length === 0) return el("p", { class: "help" }, empty);
  return el("ul", { class: cls }, ...items.map(render));
}

function personaDetails(personaId) {
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

async function personaAction(personaId, busy, work) {
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

function startPersona(personaId) {
  return personaAction(personaId, "starting", () => bus.call("persona_start", { persona: personaId }));
}

function stopPersona(personaId) {
  return personaAction(personaId, "stopping", () => bus.call("persona_stop", { persona: personaId }));
}

/** This session's direct room with a persona: dm-<session>-<persona>, hashed when over 64 characters. */
async function directRoomId(sessionId, personaId) {
  const room = `dm-${sessionId}-${personaId}`.toLowerCase();
  if (room.length <= MAX_ROOM_ID) return room;
  return `dm-${(await sha256Hex(room)).slice(0, 32)}`;
}

function chatWithPersona(persona) {
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
    $("chat-input").focus();
  });
}

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

// --- Academy: live rounds and graduation notifications ---------------------------------------------------

function percent(value) {
  return typeof value === "number" ? `${(100 * value).toFixed(1)}%` : "–";
}

function academyRow(student, round, exam) {
  return el(
    "tr",
    { dataset: { student, round: String(round) } },
    el("td", {}, student),
    el("td", {}, round === 0 ? "before" : String(round)),
    el("td", {}, percent(exam.attack_success)),
    el("td", {}, percent(exam.attack_success_upper95)),
    el("td", {}, percent(exam.benign_pass)),
  );
}

bus.on("event:academy_started", (data) => {
  $("academy-note").textContent = `${data.student}: ${data.heldout_attacks} held-out attacks, ${data.benign} benign questions…`;
});

bus.on("event:academy_round", (data) => {
  const table = $("academy-rounds");
  table.hidden = false;
  table.querySelector("tbody").append(academyRow(data.student, data.round, data.exam));
});

bus.on("event:academy_finished", (data) => {
  const reduction = data.relative_reduction;
  $("academy-note").textContent =
    `${data.student}: held-out attack success ${percent(data.baseline.attack_success)} → ${percent(data.final.attack_success)}` +
    (typeof reduction === "number" ? ` (${percent(reduction)} less)` : "") +
    `, benign ${percent(data.baseline.benign_pass)} → ${percent(data.final.benign_pass)}` +
    (data.graduated ? " — graduated" : "");
});

// Graduations: the daemon's `persona_graduated` event carries `actions` (assign_tasks "Assign Tasks",
// view_details "View Details"). The in-page note shows them as buttons and is the real control: an OS
// notification can carry action buttons only when a service worker shows it (registration.showNotification),
// and this page registers none (no build step, and a worker's scope and lifetime are more than a notification
// needs), so the OS Notification is title + body and a click on it opens the celebration view.

const GRADUATIONS_KEY = "personad.graduations"; // persona → its last graduation event, for #graduation/<id>
const GRADUATIONS_KEPT = 20;
const GRADUATION_NOTE_MS = 60_000;
const GRADUATION_HASH = /^#graduation\/(.+)$/;
const DEFAULT_ACTIONS = [
  { id: "assign_tasks", title: "Assign Tasks" },
  { id: "view_details", title: "View Details" },
];
const graduation = { seq: 0, shown: null };

function storedGraduations() {
  try {
    const parsed = JSON.parse(store.get(GRADUATIONS_KEY) || "{}");
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

function keepGraduation(data) {
  const kept = storedGraduations();
  delete kept[data.persona];
  kept[data.persona] = data;
  const names = Object.keys(kept);
  for (const old of names.slice(0, Math.max(0, names.length - GRADUATIONS_KEPT))) delete kept[old];
  store.set(GRADUATIONS_KEY, JSON.stringify(kept));
}

function graduationActions(data) {
  const actions = Array.isArray(data.actions) ? data.actions : DEFAULT_ACTIONS;
  return actions.filter((a) => a && (a.id === "assign_tasks" || a.id === "view_details"));
}

function runGraduationAction(action, personaId) {
  if (action === "assign_tasks") void assignTasks(personaId);
  else openGraduation(personaId);
}

function notifyInPage(data, title, body) {
  const persona = String(data.persona);
  const note = el("div", { class: "graduation", role: "status", dataset: { persona } });
  const dismiss = () => note.remove();
  note.append(
    el(
      "button",
      {
        type: "button",
        class: "graduation-open",
        title: "Open the graduation",
        onclick: () => openGraduation(persona),
      },
      el("strong", {}, title),
      " ",
      body,
    ),
    el(
      "div",
      { class: "graduation-actions" },
      ...graduationActions(data).map((action) =>
        el(
          "button",
          {
            type: "button",
            class: "small",
            dataset: { action: action.id },
            onclick: () => runGraduationAction(action.id, persona),
          },
          action.title,
        ),
      ),
      el("button", { type: "button", class: "small graduation-dismiss", "aria-label": "Dismiss", onclick: dismiss }, "×"),
    ),
  );
  for (const old of $("graduations").querySelectorAll(".graduation")) {
    if (old.dataset.persona === persona) old.remove(); // the newest graduation of a persona replaces its last
  }
  $("graduations").append(note);
  setTimeout(dismiss, GRADUATION_NOTE_MS);
}

async function notifyGraduation(data) {
  const name = data.name || data.persona;
  const title = `🎓 ${name} graduated!`;
  const body = `${data.body || `${name} mastered ${data.achievement || "the Academy"}!`} · score ${percent(data.academy_score)}` +
    (data.lora_hash ? ` · adapter ${String(data.lora_hash).slice(0, 12)}` : "");
  // The Notification API when the user allows it; the in-page note always (and alone when not allowed).
  notifyInPage(data, title, body);
  if (!("Notification" in window)) return;
  try {
    let permission = Notification.permission;
    if (permission === "default") permission = await Notification.requestPermission();
    if (permission !== "granted") return;
    // Plain Notifications cannot have actions (see above): a click opens the celebration view instead.
    const shown = new Notification(title, { body, tag: `graduation-${data.persona}` });
    shown.onclick = () => {
      window.focus();
      openGraduation(String(data.persona));
      shown.close?.();
    };
  } catch (error) {
    console.warn("personad: notification failed", error);
  }
}

bus.on("event:persona_graduated", (data) => {
  if (!data || typeof data.persona !== "string") return;
  keepGraduation(data);
  void notifyGraduation(data);
  void refreshPersonas();
  if (graduation.shown === data.persona) void showGraduation(data.persona); // the open view shows the news
});

// --- The graduation celebration view: #graduation/<persona> ---------------------------------------------

function openGraduation(personaId) {
  const hash = `#graduation/${encodeURIComponent(personaId)}`;
  if (location.hash === hash) void showGraduation(personaId);
  else location.hash = hash; // hashchange shows it
}

function routeFromHash() {
  const match = GRADUATION_HASH.exec(location.hash);
  if (!match) {
    if ($("graduation-view").open) $("graduation-view").close();
    return;
  }
  let personaId;
  try {
    personaId = decodeURIComponent(match[1]);
  } catch {
    return;
  }
  void showGraduation(personaId);
}

function closeGraduationView() {
  if ($("graduation-view").open) $("graduation-view").close(); // the close handler drops the hash
}

function onGraduationViewClosed() {
  graduation.shown = null;
  graduation.seq += 1;
  if (GRADUATION_HASH.test(location.hash)) history.replaceState(null, "", `${location.pathname}${location.search}`);
}

/** The newest skill row of the persona's brain (the graduation's achievement and score), when readable. */
async function latestSkill(personaId, achievement) {
  const rows = (
    await bus.call("brain_query", {
      persona: personaId,
      sql: "SELECT skill_id, lora_hash, effectiveness, acquired_at FROM skills ORDER BY acquired_at DESC LIMIT 20",
    })
  ).rows;
  return rows.find((r) => r.skill_id === achievement) || rows[0] || null;
}

function metricsFromRun(last) {
  const data = last?.event === "academy_finished" ? last.data : null;
  if (!data || !data.graduated) return null;
  const metrics = {};
  if (data.baseline) metrics.baseline = data.baseline;
  if (data.final) metrics.final = data.final;
  if (typeof data.relative_reduction === "number") metrics.relative_reduction = data.relative_reduction;
  if (typeof data.benign_delta === "number") metrics.benign_delta = data.benign_delta;
  if (Array.isArray(data.rounds)) metrics.rounds = data.rounds.length;
  return Object.keys(metrics).length ? metrics : null;
}

/** Everything the page can learn about a graduation: the event it saw, the persona, its last Academy run
 * and its brain's skill row (each only as far as this session may read it). */
async function gatherGraduation(personaId) {
  const seen = storedGraduations()[personaId] || null;
  const found = { persona: personaId, record: { ...(seen || {}) }, config: null, problems: [] };
  if (bus.state !== "open") return found;
  const [config, status] = await Promise.allSettled([
    ui.personas.find((p) => p.id === personaId) ?? bus.call("persona_show", { persona: personaId }),
    bus.call("academy_status", { student: personaId }),
  ]);
  if (config.status === "fulfilled") found.config = config.value;
  else found.problems.push(config.reason);
  const record = found.record;
  if (status.status === "fulfilled") {
    const last = status.value.last;
    const fromRun = last?.event === "academy_finished" ? last.data?.graduation : null;
    if (fromRun && typeof fromRun === "object") {
      for (const [key, value] of Object.entries(fromRun)) if (!(key in record)) record[key] = value;
    }
    if (!record.metrics) {
      const metrics = metricsFromRun(last);
      if (metrics) record.metrics = metrics;
    }
  }
  if (record.academy_score === undefined || !record.achievement) {
    try {
      const skill = await latestSkill(personaId, record.achievement);
      if (skill) {
        record.achievement ??= skill.skill_id;
        record.academy_score ??= skill.effectiveness;
        record.lora_hash ??= skill.lora_hash;
        record.at ??= skill.acquired_at;
      }
    } catch (error) {
      if (error.code !== "capability_denied") found.problems.push(error);
    }
  }
  return found;
}

function factRow(label, value, field) {
  return el("div", { dataset: { field } }, el("dt", {}, label), el("dd", {}, value));
}

function metricsTable(metrics) {
  const before = metrics.baseline || {};
  const after = metrics.final || {};
  const row = (label, key, field) =>
    el("tr", { dataset: { metric: field } }, el("th", { scope: "row" }, label), el("td", {}, percent(before[key])), el("td", {}, percent(after[key])));
  return el(
    "table",
    { class: "celebration-metrics", id: "graduation-metrics" },
    el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", { scope: "col" }, "before"), el("th", { scope: "col" }, "after"))),
    el(
      "tbody",
      {},
      row("held-out attack success", "attack_success", "attack_success"),
      row("95% upper bound", "attack_success_upper95", "attack_success_upper95"),
      row("benign pass", "benign_pass", "benign_pass"),
    ),
  );
}

function tagList(items, empty, list) {
  if (!items.length) return el("p", { class: "help", dataset: { list } }, empty);
  return el("ul", { class: "celebration-tags", dataset: { list } }, ...items.map((item) => el("li", {}, item)));
}

function renderGraduation({ persona, record, config, problems }, loading) {
  const name = config?.name || record.name || persona;
  const graduated = (config?.status ?? record.status) === "graduated";
  const capabilities = Array.isArray(config?.capabilities) ? config.capabilities : [];
  const newCapabilities = Array.isArray(record.new_capabilities) ? record.new_capabilities : [];
  const specializations = Array.isArray(record.specializations) // as the daemon announces them
    ? record.specializations
    : [...new Set([record.achievement, ...newCapabilities].filter(Boolean))];
  const metrics = record.metrics && typeof record.metrics === "object" ? record.metrics : null;
  $("graduation-view").dataset.persona = persona;
  $("graduation-view-title").textContent = graduated || record.achievement ? `🎓 ${name} graduated!` : `${name}`;
  const facts = el(
    "dl",
    { class: "celebration-facts" },
    factRow("Persona", `${name} (@${persona})`, "name"),
    factRow("Achievement", record.achievement || "–", "achievement"),
    factRow("Academy score", percent(record.academy_score), "score"),
    factRow("Status", `${config?.status ?? record.status ?? "–"}${record.ready_for_deployment ? " · ready for deployment" : ""}`, "status"),
    record.lora_name || record.lora_hash
      ? factRow("Adapter", [record.lora_name, record.lora_hash ? String(record.lora_hash).slice(0, 16) : null].filter(Boolean).join(" · "), "adapter")
      : null,
    typeof record.at === "number" ? factRow("When", new Date(record.at * 1000).toLocaleString(), "at") : null,
  );
  const body = [
    facts,
    el("h3", {}, "New capabilities"),
    tagList(newCapabilities, capabilities.length ? `none new (has ${capabilities.join(", ")})` : "none new", "new_capabilities"),
    el("h3", {}, "Specializations"),
    tagList(specializations, "–", "specializations"),
    el("h3", {}, "Academy metrics"),
    metrics
      ? el(
          "div",
          {},
          metricsTable(metrics),
          typeof metrics.relative_reduction === "number"
            ? el("p", { class: "help" }, `attack success ${percent(metrics.relative_reduction)} lower` + (metrics.rounds ? ` after ${metrics.rounds} round${metrics.rounds === 1 ? "" : "s"}` : ""))
            : null,
        )
      : el("p", { class: "help", id: "graduation-no-metrics" }, loading ? "loading…" : "no Academy run recorded for this graduation"),
  ];
  if (!loading && !graduated && !record.achievement) {
    body.unshift(el("p", { class: "help" }, `${name} has not graduated (yet).`));
  }
  $("graduation-view-body").replaceChildren(...body);
  $("graduation-view").dataset.state = loading ? "loading" : "ready";
  const problem = problems.find((p) => p && p.code !== "not_connected" && p.code !== "disconnected");
  showError($("graduation-view-error"), problem || null);
}

async function showGraduation(personaId) {
  const dialog = $("graduation-view");
  const seq = ++graduation.seq;
  graduation.shown = personaId;
  const seen = storedGraduations()[personaId] || {};
  renderGraduation({ persona: personaId, record: { ...seen }, config: ui.personas.find((p) => p.id === personaId), problems: [] }, true);
  if (!dialog.open) dialog.showModal();
  const found = await gatherGraduation(personaId);
  if (seq !== graduation.seq) return; // closed, or another persona's view opened meanwhile
  renderGraduation(found, false);
}

window.addEventListener("hashchange", routeFromHash);
$("graduation-view").addEventListener("close", onGraduationViewClosed);
$("graduation-close").addEventListener("click", closeGraduationView);
$("graduation-assign").addEventListener("click", () => {
  const personaId = graduation.shown;
  if (personaId !== null) void assignTasks(personaId);
});
routeFromHash(); // from what this browser saw; refreshAll() routes again once connected

/** "Assign Tasks": open the direct room with the persona and address the chat input to it. */
async function assignTasks(personaId) {
  closeGraduationView();
  const persona = ui.personas.find((p) => p.id === personaId) || { id: personaId };
  if (hasCapability("chat")) await chatWithPersona(persona);
  const input = $("chat-input");
  if (input.disabled) {
    showError($("chat-error"), { message: `join a room to give @${personaId} a task` });
    return;
  }
  const handle = `@${personaId} `;
  if (!input.value.startsWith(handle)) input.value = handle + input.value.replace(/^@\S+\s*/, "");
  input.dataset.addressee = personaId;
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

// --- Mesh: peers, skills, transfers --------------------------------------------------------------------

const mesh = { seq: 0, timer: null, poll: null };
const MESH_POLL_MS = 5000; // trust scores and peer names change without an event of their own

async function refreshMesh() {
  if (bus.state !== "open") return;
  const seq = ++mesh.seq;
  try {
    const status = await bus.call("mesh_status");
    if (seq !== mesh.seq) return;
    if (!status.enabled) {
      $("mesh-note").textContent = "Off: start the daemon with `personad serve --mesh`.";
      $("mesh-peers").hidden = $("mesh-skills").hidden = true;
      return;
    }
    if (mesh.poll === null) mesh.poll = setInterval(() => void refreshMesh(), MESH_POLL_MS);
    const [{ peers }, { skills }] = await Promise.all([bus.call("mesh_peers"), bus.call("mesh_skills")]);
    if (seq !== mesh.seq) return;
    $("mesh-note").textContent =
      `node ${status.node.slice(0, 12)} on ${status.addr} · ${status.trusted_peers} trusted peers · ` +
      `seeding ${status.seeding.length ? status.seeding.join(", ") : "nothing"}`;
    renderMeshPeers(peers);
    renderMeshSkills(skills);
    clearListError($("mesh-error"));
  } catch (error) {
    if (seq !== mesh.seq) return;
    if (error.code !== "disconnected" && error.code !== "not_connected") showError($("mesh-error"), error, "mesh");
  }
}

function queueMeshRefresh() {
  clearTimeout(mesh.timer);
  mesh.timer = setTimeout(() => void refreshMesh(), 150);
}

function renderMeshPeers(peers) {
  const table = $("mesh-peers");
  table.hidden = peers.length === 0;
  table.querySelector("tbody").replaceChildren(
    ...peers.map((peer) =>
      el(
        "tr",
        { dataset: { node: peer.node }, class: peer.trusted ? "" : "untrusted" },
        el("td", { title: peer.node }, peer.name || peer.node.slice(0, 12)),
        el("td", {}, peer.addr || "–"),
        el("td", {}, `${peer.score.toFixed(2)}${peer.trusted ? "" : peer.retired_by ? " retired" : " dropped"}`),
      ),
    ),
  );
}

function renderMeshSkills(skills) {
  const table = $("mesh-skills");
  table.hidden = skills.length === 0;
  table.querySelector("tbody").replaceChildren(
    ...skills.map((skill) =>
      el(
        "tr",
        { dataset: { adapter: skill.adapter } },
        el("td", { title: skill.parents.length ? `on ${skill.parents.join(", ")}` : "" }, skill.skill),
        el("td", {}, skill.adapter + (skill.seeding_here ? " ✓" : "")),
        el("td", {}, String(skill.seeders.length)),
        el("td", {}, skill.demand_score.toFixed(2)),
      ),
    ),
  );
}

bus.on("event:mesh_transfer_progress", (data) => {
  $("mesh-transfer").hidden = false;
  $("mesh-transfer-label").textContent = `${data.adapter}: ${percent(data.progress)} from ${data.peers} peers`;
  $("mesh-progress").value = data.progress;
});

bus.on("event:mesh_skill_acquired", (data) => {
  $("mesh-transfer-label").textContent = `${data.adapter}: acquired and verified`;
  $("mesh-progress").value = 1;
  queueMeshRefresh();
});

bus.on("event:mesh_skill_rejected", (data) => {
  $("mesh-transfer").hidden = false;
  $("mesh-transfer-label").textContent = `${data.adapter || data.info_hash.slice(0, 12)}: rejected (${data.code})`;
  queueMeshRefresh();
});

for (const name of ["mesh_peer_joined", "mesh_peer_dropped", "mesh_skill_announced", "mesh_replicating"]) {
  bus.on(`event:${name}`, queueMeshRefresh);
}
