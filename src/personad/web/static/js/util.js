// Small helpers every module uses: DOM building, local storage, errors, formatting, page constants.

export const STORAGE = {
  session: "personad.session",
  name: "personad.name",
  room: "personad.room",
  greeted: "personad.greeted", // the last session id that was joined to the default room
};
export const DEFAULT_ROOM = "general";
export const SESSION_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
export const ROOM_ID = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
export const HISTORY_PAGE = 50;
export const KEEPALIVE_MS = 25_000;
export const PONG_TIMEOUT_MS = 10_000;
export const RETRY_MIN_MS = 500;
export const RETRY_MAX_MS = 10_000;
export const LONG_TEXT_PARAMS = /^(script|content|text|body|code|prompt|message|source)$/;
export const IMAGE_FORMATS = new Set(["png", "jpeg", "jpg"]);
export const PERSONA_REFRESH_MS = 5_000;
export const STREAM_STALE_MS = 120_000; // a reply stream with no delta for this long is dropped (its writer died)
export const MAX_ROOM_ID = 64;
export const DIRECT_TOPIC = "Direct chat with "; // the topic of the direct rooms this page opens
// ---------------------------------------------------------------------------------------------------
// Helpers

export const $ = (id) => document.getElementById(id);

/** Build an element. attrs: class, dataset, text, on<event> listeners, or plain attributes. */
export function el(tag, attrs = {}, ...children) {
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

export const store = {
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

export function randomHex(length) {
  const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil(length / 2)));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("").slice(0, length);
}

export function newSessionId() {
  return `web-${randomHex(12)}`;
}

export function storedSessionId() {
  let sid = store.get(STORAGE.session);
  if (!sid || !SESSION_ID.test(sid)) {
    sid = newSessionId();
    store.set(STORAGE.session, sid);
  }
  return sid;
}

export function storedName() {
  const name = (store.get(STORAGE.name) || "").trim();
  return name || "human";
}

/** Show (or with null, hide) an error. source "list" marks one from a background refresh, which the next
 * good refresh clears (clearListError) without hiding what a click went wrong with. */
export function showError(node, error, source = "action") {
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


export function clearListError(node) {
  if (node.dataset.source === "list") showError(node, null);
}

export function formatTime(ts) {
  const date = new Date(ts * 1000);
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return sameDay ? time : `${date.toLocaleDateString()} ${time}`;
}


export function percent(value) {
  return typeof value === "number" ? `${(100 * value).toFixed(1)}%` : "–";
}


export function errorLine(error) {
  return error?.code ? `${error.code}: ${error.message}` : String(error?.message || error);
}

export function signed(value) {
  return typeof value === "number" ? `${value > 0 ? "+" : ""}${value.toFixed(2)}` : "–";
}


export function errorText(error) {
  if (error && typeof error === "object") return error.code ? `${error.code}: ${error.message ?? ""}` : "";
  return String(error);
}
