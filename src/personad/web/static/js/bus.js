// Bus: the WebSocket to the daemon, request/response matching by id, events, reconnect with backoff.

import { $, KEEPALIVE_MS, newSessionId, PONG_TIMEOUT_MS, RETRY_MAX_MS, RETRY_MIN_MS, STORAGE, store } from "./util.js";

// ---------------------------------------------------------------------------------------------------
// Bus: the WebSocket, request/response matching by id, events, reconnect with backoff

export class BusError extends Error {
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

export class Bus extends EventTarget {
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
