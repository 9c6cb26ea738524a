// One persona in the Personas view (#/personas/<id>): process, config (secrets masked as the daemon sends
// them), its adapter stack in application order, recent commands and log tail (persona_logs), and the
// actions: Start/Stop, Restart, Edit, Chat, Delete (after a confirm dialog), links to its Brain and Academy.

import { chatWithPersona, refreshPersonas, RUNNING_STATES } from "./personas.js";
import { bus, hasCapability } from "./state.js";
import { el, errorLine } from "./util.js";
import { openView, viewHash } from "./views.js";

const LOG_LINES = 200;
const COMMANDS_SHOWN = 25;

/** Replace a container's children, keeping the focus on the control with the same data-focus key. */
export function replaceKeepingFocus(container, ...nodes) {
  const active = document.activeElement;
  const key = container.contains(active) ? active?.dataset?.focus : undefined;
  container.replaceChildren(...nodes.filter((node) => node !== null && node !== undefined));
  if (key) container.querySelector(`[data-focus="${CSS.escape(key)}"]`)?.focus();
}

export function timeOf(ts) {
  if (typeof ts !== "number") return "–";
  const date = new Date(ts * 1000);
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return date.toDateString() === new Date().toDateString() ? time : `${date.toLocaleDateString()} ${time}`;
}

function row(label, value) {
  const text = value === null || value === undefined || value === "" ? "–" : value;
  return el("div", {}, el("dt", {}, label), el("dd", {}, text instanceof Node ? text : String(text)));
}

function list(values) {
  return Array.isArray(values) && values.length ? values.join(", ") : "none";
}

function lastExit(exit) {
  if (!exit) return null;
  return `code ${exit.code ?? "?"} at ${timeOf(exit.at)} after ${exit.ran_seconds ?? "?"} s`;
}

/** The detail page's sections, filled by update(). */
export function detailSkeleton() {
  const parts = {
    head: el("div", { class: "persona-detail-head card" }),
    error: el("p", { class: "error", role: "alert", hidden: true }),
    notice: el("p", { class: "persona-notice", role: "status", hidden: true }),
    process: el("section", { class: "card persona-process", "aria-label": "Process" }),
    config: el("section", { class: "card persona-config", "aria-label": "Configuration" }),
    stack: el("section", { class: "card persona-stack-card", "aria-label": "Adapter stack" }),
    commands: el("section", { class: "card persona-commands", "aria-label": "Recent commands" }),
    logs: el("section", { class: "card persona-logs", "aria-label": "Log tail" }),
  };
  parts.root = el(
    "div",
    { class: "persona-detail" },
    parts.head,
    parts.error,
    parts.notice,
    el("div", { class: "cards" }, parts.process, parts.config, parts.stack),
    parts.commands,
    parts.logs,
  );
  parts.keys = {};
  return parts;
}

export async function loadDetail(personaId) {
  const [persona, logs] = await Promise.allSettled([
    bus.call("persona_show", { persona: personaId }),
    bus.call("persona_logs", { persona: personaId, lines: LOG_LINES, commands: COMMANDS_SHOWN }),
  ]);
  if (persona.status === "rejected") throw persona.reason;
  return {
    persona: persona.value,
    logs: logs.status === "fulfilled" ? logs.value : null,
    logsError: logs.status === "rejected" ? errorLine(logs.reason) : null,
  };
}

function section(parts, name, key, ...nodes) {
  if (parts.keys[name] === key) return; // unchanged: keep the DOM, the focus and the scroll
  parts.keys[name] = key;
  replaceKeepingFocus(parts[name], ...nodes);
}

/** Fill the sections from loadDetail()'s data. ctx: {busy, act(kind, work), confirmDelete()}. */
export function updateDetail(parts, data, ctx) {
  const { persona } = data;
  const name = persona.name || persona.id;
  const process = persona.process || {};
  const state = ctx.busy || process.state || "stopped";
  const running = RUNNING_STATES.has(process.state);
  const offline = bus.state !== "open";
  parts.root.dataset.persona = persona.id;
  parts.root.dataset.state = process.state || "stopped";
  const button = (focus, label, title, onclick, disabled = false) =>
    el("button", { type: "button", class: `persona-${focus}`, dataset: { focus }, title, disabled: offline || !!ctx.busy || disabled, onclick }, label);
  section(
    parts,
    "head",
    JSON.stringify([persona.id, name, state, running, offline, persona.status, hasCapability("chat")]),
    el("div", { class: "persona-detail-title" },
      el("span", { class: "persona-state", dataset: { state } }, state),
      el("span", { class: "persona-id" }, `@${persona.id}`),
      persona.status && persona.status !== "active" ? el("span", { class: "persona-status" }, persona.status) : null,
    ),
    el("div", { class: "persona-detail-actions" },
      running
        ? button("stop", "Stop", `Stop ${name}`, () => ctx.act("stopping", () => bus.call("persona_stop", { persona: persona.id })))
        : button("start", "Start", `Start ${name}`, () => ctx.act("starting", () => bus.call("persona_start", { persona: persona.id }))),
      button("restart", "Restart", `Stop and start ${name} (applies provider, model, rooms and capabilities)`, () =>
        ctx.act("restarting", async () => {
          await bus.call("persona_stop", { persona: persona.id });
          await bus.call("persona_start", { persona: persona.id });
        }), !running),
      el("a", { class: "button", href: viewHash("personas", persona.id, "edit"), dataset: { focus: "edit" } }, "Edit"),
      button("chat", "Chat", `Open a direct room with ${name}`, () => void chatWithPersona(persona), !hasCapability("chat")),
      button("delete", "Delete", `Delete ${name}: its config, brain and logs`, () => ctx.confirmDelete(persona)),
    ),
    el("nav", { class: "persona-detail-links", "aria-label": `${name} elsewhere` },
      el("a", { href: viewHash("brain", persona.id) }, "Brain"),
      el("a", { href: viewHash("academy") }, "Academy"),
      el("a", { href: viewHash("personas") }, "All personas"),
    ),
  );
  section(
    parts,
    "process",
    JSON.stringify(process),
    el("h3", {}, "Process"),
    el("dl", { class: "persona-facts" },
      row("State", process.state || "stopped"),
      row("PID", process.pid),
      row("Restarts", process.restarts ?? 0),
      row("Started", process.started_at ? timeOf(process.started_at) : null),
      row("Last exit", lastExit(process.last_exit)),
    ),
  );
  const { process: _p, stack: _s, ...config } = persona;
  section(
    parts,
    "config",
    JSON.stringify(config),
    el("h3", {}, "Configuration"),
    el("dl", { class: "persona-facts" },
      row("Name", persona.name),
      row("Provider", persona.model_provider),
      row("Model", persona.model_config?.model),
      row("System prompt", el("span", { class: "persona-prompt" }, persona.system_prompt || "–")),
      row("Role", persona.role),
      row("Secret", persona.secret ? "set (hidden)" : "none"),
      row("Capabilities", list(persona.capabilities)),
      row("Rooms", list(persona.rooms)),
      row("Answers every message in", list(persona.respond_in)),
      row("Temperature", persona.temperature),
      row("Max tokens", persona.max_tokens),
      row("Memory budget (tokens)", persona.memory_budget_tokens),
      row("Autostart", persona.autostart ? "yes" : "no"),
    ),
    el("details", {}, el("summary", {}, "persona.json (secrets masked)"), el("pre", { class: "persona-json" }, JSON.stringify(config, null, 2))),
  );
  const named = new Set(persona.lora_adapters || []);
  const resolved = persona.stack?.resolved || [];
  section(
    parts,
    "stack",
    JSON.stringify([persona.lora_adapters, persona.lora_scales, persona.stack]),
    el("h3", {}, "Adapter stack"),
    resolved.length
      ? el("ol", { class: "persona-stack", "aria-label": "Adapters in the order they are applied" },
          ...resolved.map((adapter) =>
            el("li", { dataset: { adapter } }, el("code", {}, adapter),
              named.has(adapter) ? null : el("small", { class: "help" }, " (parent)"),
              persona.lora_scales?.[adapter] !== undefined ? el("small", { class: "help" }, ` × ${persona.lora_scales[adapter]}`) : null),
          ))
      : el("p", { class: "help" }, named.size ? "–" : "no adapters: the base model answers"),
    persona.stack?.error ? el("p", { class: "error" }, errorLine(persona.stack.error)) : null,
  );
  updateLogs(parts, data);
}

function updateLogs(parts, data) {
  const { logs, logsError } = data;
  const records = logs?.commands ?? [];
  section(
    parts,
    "commands",
    JSON.stringify([records.map((r) => [r.ts, r.command, r.ok, r.error?.code]), logsError]),
    el("h3", {}, "Recent commands"),
    logsError ? el("p", { class: "error" }, logsError) : null,
    records.length
      ? el("table", { class: "data-table persona-commands-table" },
          el("thead", {}, el("tr", {}, el("th", {}, "Time"), el("th", {}, "Command"), el("th", {}, "Outcome"), el("th", { class: "num" }, "ms"))),
          el("tbody", {}, ...[...records].reverse().map((r) =>
            el("tr", { dataset: { command: r.command, ok: r.ok ? "true" : "false" } },
              el("td", { "data-label": "Time" }, timeOf(r.ts)),
              el("td", { "data-label": "Command" }, el("code", {}, String(r.command))),
              el("td", { "data-label": "Outcome", class: r.ok ? "ok" : "error" }, r.ok ? "ok" : String(r.error?.code || "error")),
              el("td", { "data-label": "ms", class: "num" }, typeof r.duration_ms === "number" ? r.duration_ms.toFixed(1) : "–"),
            ))),
        )
      : el("p", { class: "help" }, logs ? "none yet: it has not run a command" : "–"),
  );
  const lines = logs?.process_log ?? [];
  const crashes = logs?.crashes ?? [];
  section(
    parts,
    "logs",
    JSON.stringify([lines, crashes]),
    el("h3", {}, "Log tail"),
    el("pre", { class: "persona-log", tabindex: "0", "aria-label": "Process log, newest last" }, lines.length ? lines.join("\n") : "(empty)"),
    crashes.length ? el("h4", {}, "Crashes") : null,
    crashes.length ? el("pre", { class: "persona-crashes", tabindex: "0" }, crashes.join("\n")) : null,
  );
}

/** The delete confirmation: resolves true when the user confirms. */
export function confirmDialog(container, persona) {
  const name = persona.name || persona.id;
  return new Promise((resolve) => {
    const cancel = el("button", { type: "button", class: "persona-delete-cancel", value: "cancel" }, "Cancel");
    const confirm = el("button", { type: "button", class: "danger persona-delete-confirm", value: "delete" }, `Delete ${persona.id}`);
    const dialog = el(
      "dialog",
      { class: "persona-delete-dialog", "aria-labelledby": "persona-delete-title" },
      el("h3", { id: "persona-delete-title" }, `Delete ${name}?`),
      el("p", {}, "This stops it and removes its folder: config, brain (memories, goals), artifacts and logs. It cannot be undone."),
      el("div", { class: "persona-form-actions" }, cancel, confirm),
    );
    const finish = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    cancel.addEventListener("click", () => finish(false));
    confirm.addEventListener("click", () => finish(true));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault(); // Escape
      finish(false);
    });
    container.append(dialog);
    dialog.showModal();
    cancel.focus(); // the safe choice has the focus
  });
}

export async function deletePersona(persona) {
  await bus.call("persona_delete", { persona: persona.id });
  void refreshPersonas();
  openView("personas");
}
