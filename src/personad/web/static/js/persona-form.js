// The persona create/edit form of the Personas view: fields and bounds from persona_create's params schema
// (so the page checks what the daemon checks), the daemon's invalid_params details shown per field.
// Create sends persona_create; edit sends persona_update with only the fields that changed (a secret left
// blank is unchanged: the page never holds the real one, only the mask persona_show returns).

import { collectParams, renderField, schemaFields, showFieldErrors } from "./schema-form.js";
import { bus } from "./state.js";
import { el, errorLine } from "./util.js";

const PREFIX = "pf";
const PERSONA_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const ROOM_ID = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const DEFAULT_CAPABILITIES = ["chat", "browser", "browser_js", "screenshot"]; // personas/config.py
// The schema-driven fields, in form order; the others (provider, capabilities, adapters, rooms) are below.
const PLAIN = ["name", "model", "system_prompt", "role", "secret", "temperature", "max_tokens", "memory_budget_tokens", "autostart"];
const LISTS = ["rooms", "respond_in"];
// Error codes the daemon raises for one field (without invalid_params details).
const CODE_FIELD = {
  invalid_persona_id: "id",
  persona_exists: "id",
  unknown_provider: "model_provider",
  adapter_not_found: "lora_adapters",
  adapters_unsupported: "lora_adapters",
  invalid_adapter_name: "lora_adapters",
};

let cache = null; // {schema, capabilities}: from `commands`, once per page

async function loadCommands() {
  if (cache) return cache;
  const { commands } = await bus.call("commands");
  const create = commands.find((c) => c.name === "persona_create");
  if (!create) throw new Error("the daemon has no persona_create command");
  const capabilities = [...new Set(commands.map((c) => c.capability).filter(Boolean))].sort();
  cache = { schema: create.params_schema, capabilities };
  return cache;
}

/** What the schema says a value must be; null when it fits. */
export function checkValue(spec, value) {
  const s = spec.schema;
  if (value === undefined || value === null) return null;
  if (typeof value === "number") {
    if (s.minimum !== undefined && value < s.minimum) return `must be ≥ ${s.minimum}`;
    if (s.maximum !== undefined && value > s.maximum) return `must be ≤ ${s.maximum}`;
    if (s.exclusiveMinimum !== undefined && value <= s.exclusiveMinimum) return `must be > ${s.exclusiveMinimum}`;
    if (s.exclusiveMaximum !== undefined && value >= s.exclusiveMaximum) return `must be < ${s.exclusiveMaximum}`;
  }
  if (typeof value === "string") {
    if (s.minLength !== undefined && value.length < s.minLength) return `needs at least ${s.minLength} characters`;
    if (s.maxLength !== undefined && value.length > s.maxLength) return `takes at most ${s.maxLength} characters`;
    if (s.pattern !== undefined && !new RegExp(s.pattern).test(value)) return `must match ${s.pattern}`;
  }
  return null;
}

/** The daemon's error as per-field problems (loc ["changes", field] for persona_update), or null. */
export function fieldProblems(error) {
  if (Array.isArray(error?.details)) {
    const problems = error.details
      .filter((d) => Array.isArray(d.loc))
      .map((d) => {
        const loc = d.loc[0] === "changes" ? d.loc.slice(1) : d.loc;
        const name = loc[0] === "model_config" ? "model" : String(loc[0] ?? "");
        return { name, message: loc.length > 1 ? `${loc.slice(1).join(".")}: ${d.msg}` : d.msg };
      });
    if (problems.length) return problems;
  }
  const name = CODE_FIELD[error?.code];
  return name ? [{ name, message: errorLine(error) }] : null;
}

function fieldWrap(name, labelText, control, help) {
  const id = `${PREFIX}-${name}`;
  return el(
    "div",
    { class: `field persona-field-${name}`, dataset: { param: name } },
    el("label", { for: id }, labelText),
    control,
    help ? el("small", { id: `${id}-help`, class: "help" }, help) : null,
    el("small", { id: `${id}-error`, class: "field-error", hidden: true }),
  );
}

function describedBy(name, help = true) {
  return `${help ? `${PREFIX}-${name}-help ` : ""}${PREFIX}-${name}-error`;
}

function providerField(spec, value) {
  const options = (spec.description.split(":")[1] || "local, anthropic, openai").split(",").map((p) => p.trim());
  const input = el("input", {
    id: `${PREFIX}-model_provider`,
    name: "model_provider",
    type: "text",
    list: `${PREFIX}-providers`,
    required: true,
    spellcheck: "false",
    autocomplete: "off",
    "aria-describedby": describedBy("model_provider"),
  });
  input.value = value ?? spec.default ?? "local";
  const list = el("datalist", { id: `${PREFIX}-providers` }, ...options.map((p) => el("option", { value: p })));
  return fieldWrap("model_provider", "Provider", el("span", { class: "combo" }, input, list), `${options.join(", ")} — or another registered provider`);
}

function capabilitiesField(known, chosen) {
  const all = [...new Set([...known, ...chosen])].sort();
  const boxes = all.map((cap) =>
    el(
      "label",
      { class: "check" },
      el("input", { type: "checkbox", name: "capability", value: cap, checked: chosen.includes(cap) }),
      ` ${cap}`,
    ),
  );
  return el(
    "fieldset",
    { class: "field persona-capabilities", id: `${PREFIX}-capabilities`, "aria-describedby": `${PREFIX}-capabilities-error` },
    el("legend", {}, "Capabilities"),
    el("div", { class: "checks" }, ...boxes),
    el("small", { id: `${PREFIX}-capabilities-error`, class: "field-error", hidden: true }),
  );
}

/** The adapter stack, base first: add from the registry, move up/down, remove. */
function adaptersField(available, chosen) {
  const stack = [...chosen];
  const list = el("ol", { class: "persona-stack-edit", "aria-label": "Adapter stack, base first" });
  const picker = el("select", { id: `${PREFIX}-lora_adapters`, "aria-describedby": describedBy("lora_adapters") });
  const add = el("button", { type: "button", class: "small persona-stack-add" }, "Add adapter");
  const render = () => {
    const left = available.filter((name) => !stack.includes(name));
    picker.replaceChildren(
      el("option", { value: "" }, left.length ? "— pick an adapter —" : "no other registered adapters"),
      ...left.map((name) => el("option", { value: name }, name)),
    );
    add.disabled = left.length === 0;
    list.replaceChildren(
      ...stack.map((name, index) => {
        const move = (to) => () => {
          stack.splice(index, 1);
          stack.splice(to, 0, name);
          render();
        };
        return el(
          "li",
          { dataset: { adapter: name } },
          el("code", {}, name),
          el("span", { class: "persona-stack-buttons" },
            el("button", { type: "button", class: "small", "aria-label": `Move ${name} up`, disabled: index === 0, onclick: move(index - 1) }, "↑"),
            el("button", { type: "button", class: "small", "aria-label": `Move ${name} down`, disabled: index === stack.length - 1, onclick: move(index + 1) }, "↓"),
            el("button", { type: "button", class: "small", "aria-label": `Remove ${name}`, onclick: () => { stack.splice(index, 1); render(); } }, "Remove"),
          ),
        );
      }),
    );
  };
  add.addEventListener("click", () => {
    if (!picker.value) return;
    stack.push(picker.value);
    render();
    picker.focus();
  });
  render();
  const node = fieldWrap("lora_adapters", "Adapter stack", el("div", { class: "persona-stack-picker" }, list, el("span", { class: "row" }, picker, add)), "base first; parents are applied before their children");
  return { node, value: () => [...stack] };
}

function listField(spec, value) {
  const id = `${PREFIX}-${spec.name}`;
  const input = el("input", { id, name: spec.name, type: "text", spellcheck: "false", autocomplete: "off", "aria-describedby": describedBy(spec.name) });
  input.value = (value ?? []).join(", ");
  const label = spec.name === "rooms" ? "Rooms (joined on start)" : "Answer every message in";
  return fieldWrap(spec.name, label, input, `${spec.description}; comma-separated${spec.name === "respond_in" ? ", * = every room" : ""}`);
}

/**
 * Build the form. persona: the persona as persona_show returns it (edit), or null (create).
 * onSaved(result, {created}) runs after the daemon accepted it; onCancel when the user cancels.
 */
export async function buildPersonaForm({ persona = null, onSaved, onCancel }) {
  const { schema, capabilities } = await loadCommands();
  const specs = new Map(schemaFields(schema).map((spec) => [spec.name, spec]));
  const editing = persona !== null;
  const original = editing
    ? { ...persona, model: persona.model_config?.model ?? null, secret: null }
    : null;
  const plain = PLAIN.filter((name) => specs.has(name)).map((name) => {
    const spec = { ...specs.get(name), required: false };
    if (name === "system_prompt") spec.schema = { ...spec.schema, format: "textarea" };
    if (editing && name !== "secret") spec.default = original[name];
    if (editing) spec.hasDefault = spec.default !== null && spec.default !== undefined;
    return spec;
  });
  const idSpec = { ...specs.get("id"), schema: { ...specs.get("id").schema, pattern: PERSONA_ID.source } };
  const nodes = new Map(plain.map((spec) => [spec.name, renderField(spec, PREFIX)]));
  const secret = nodes.get("secret")?.querySelector("input");
  if (secret) {
    secret.type = "password";
    secret.autocomplete = "new-password";
    secret.placeholder = editing && persona.secret ? "set — blank keeps it" : "none — blank leaves it unset";
  }
  const adapters = adaptersField(await adapterNames(), editing ? persona.lora_adapters ?? [] : []);
  const status = el("p", { class: "persona-form-status", role: "status", "aria-live": "polite" });
  const formError = el("p", { class: "error", role: "alert", hidden: true });
  const submit = el("button", { type: "submit", class: "primary" }, editing ? "Save changes" : "Create persona");
  const form = el(
    "form",
    { class: "persona-form card", id: "persona-form", novalidate: true, autocomplete: "off", "aria-labelledby": "persona-form-title" },
    el("h3", { id: "persona-form-title" }, editing ? `Edit ${persona.name || persona.id}` : "New persona"),
    el("div", { class: "persona-form-grid" },
      editing ? null : renderField({ ...idSpec, description: "lowercase letters, digits, “_” or “-”; it names its folder" }, PREFIX),
      nodes.get("name"),
      providerField(specs.get("model_provider"), original?.model_provider),
      nodes.get("model"),
      nodes.get("temperature"),
      nodes.get("max_tokens"),
      nodes.get("memory_budget_tokens"),
      nodes.get("role"),
      nodes.get("secret"),
      ...LISTS.filter((n) => specs.has(n)).map((n) => listField(specs.get(n), editing ? persona[n] : n === "rooms" ? ["general"] : [])),
      nodes.get("autostart"),
    ),
    el("div", { class: "persona-form-wide" },
      nodes.get("system_prompt"),
      capabilitiesField(capabilities, editing ? persona.capabilities ?? [] : DEFAULT_CAPABILITIES),
      adapters.node,
    ),
    formError,
    el("div", { class: "persona-form-actions" },
      submit,
      el("button", { type: "button", onclick: () => onCancel?.() }, "Cancel"),
      status,
    ),
  );

  const read = () => {
    const { params, problems } = collectParams(editing ? plain : [idSpec, ...plain], PREFIX);
    params.model_provider = form.querySelector(`#${PREFIX}-model_provider`).value.trim();
    if (!params.model_provider) problems.push({ name: "model_provider", message: "is required" });
    const checked = [...form.querySelectorAll('input[name="capability"]:checked')].map((box) => box.value);
    // The persona's own order first, so an unchanged set is not sent as a change (it needs a restart).
    const before = editing ? (persona.capabilities ?? []).filter((cap) => checked.includes(cap)) : [];
    params.capabilities = [...before, ...checked.filter((cap) => !before.includes(cap))];
    params.lora_adapters = adapters.value();
    for (const name of LISTS) {
      const text = form.querySelector(`#${PREFIX}-${name}`)?.value ?? "";
      params[name] = text.split(",").map((r) => r.trim()).filter(Boolean);
      const bad = params[name].filter((room) => room !== "*" && !ROOM_ID.test(room));
      if (bad.length) problems.push({ name, message: `not a room id: ${bad.join(", ")}` });
    }
    if (editing) {
      if (params.role === undefined) params.role = null; // cleared
      for (const name of ["name", "system_prompt"]) params[name] ??= "";
      if (params.model === undefined) params.model = original.model ?? null;
    }
    for (const spec of editing ? plain : [idSpec, ...plain]) {
      const message = checkValue(spec, params[spec.name]);
      if (message) problems.push({ name: spec.name, message });
    }
    return { params, problems };
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(formError, null);
    const { params, problems } = read();
    showFieldErrors(problems, form, PREFIX);
    if (problems.length) {
      status.textContent = "Fix the marked fields.";
      form.querySelector("[aria-invalid]")?.focus();
      return;
    }
    let command = "persona_create";
    let body = params;
    if (editing) {
      const changes = {};
      for (const [key, value] of Object.entries(params)) {
        if (value === undefined || (key === "secret" && !value)) continue; // blank: unchanged
        if (JSON.stringify(value ?? null) !== JSON.stringify(original[key] ?? null)) changes[key] = value;
      }
      if (Object.keys(changes).length === 0) {
        status.textContent = "Nothing changed.";
        return;
      }
      command = "persona_update";
      body = { persona: persona.id, changes };
    } else if (params.model === undefined || params.model === "") delete params.model;
    submit.disabled = true;
    status.textContent = editing ? "Saving…" : "Creating…";
    try {
      const result = await bus.call(command, body);
      status.textContent = editing ? "Saved." : "Created.";
      onSaved?.(result, { created: !editing });
    } catch (error) {
      status.textContent = "";
      const perField = fieldProblems(error);
      if (perField) {
        showFieldErrors(perField, form, PREFIX);
        form.querySelector("[aria-invalid]")?.focus();
      }
      showError(formError, error);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function showError(node, error) {
  node.hidden = !error;
  node.textContent = error ? errorLine(error) : "";
}

async function adapterNames() {
  try {
    const { adapters } = await bus.call("lora_list");
    return adapters.map((a) => a.name).sort();
  } catch {
    return []; // no lora capability: the stack can still be kept or emptied, just not extended
  }
}
