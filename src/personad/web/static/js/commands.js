// Commands: run any command through a form generated from its params schema; show its result.

import { BusError } from "./bus.js";
import { collectParams, renderField, schemaFields, showFieldErrors } from "./schema-form.js";
import { bus, token, ui, updateControls } from "./state.js";
import { $, el, IMAGE_FORMATS } from "./util.js";

// ---------------------------------------------------------------------------------------------------
// Commands: a form per command, generated from its pydantic params JSON schema

export async function loadCommands() {
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

export function renderCommandSelect() {
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

export function selectCommand(name) {
  const command = ui.commands.find((c) => c.name === name) ?? null;
  ui.command = command;
  $("command-select").value = command ? command.name : "";
  const description = $("command-description");
  const denied = command && !command.allowed ? ` — this session lacks the “${command.capability}” capability` : "";
  description.textContent = command ? `${command.description}${denied}` : "";
  ui.fields = command ? schemaFields(command.params_schema) : [];
  const container = $("command-fields");
  container.replaceChildren(...ui.fields.map((spec) => renderField(spec)));
  if (command && ui.fields.length === 0) container.append(el("p", { class: "help" }, "No parameters."));
  updateControls();
}

/** Follow $ref (into $defs) and single-member allOf; keywords beside a $ref win (pydantic puts them there). */
export async function runCommand(event) {
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
export function imageUrl(result) {
  if (!result || typeof result.url !== "string" || !result.url.startsWith("/api/sessions/")) return null;
  if (!IMAGE_FORMATS.has(String(result.format).toLowerCase())) return null;
  const separator = result.url.includes("?") ? "&" : "?";
  return `${result.url}${separator}token=${encodeURIComponent(token)}`;
}

export function showResult({ command, result, error, ms }) {
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
