// The Academy view's "Start a run" form: generated from academy_train's params schema (its defaults and
// limits), the student chosen from the persona list. Checks the schema's limits before sending; the daemon's
// invalid_params details land on the same fields.

import { collectParams, renderField, schemaFields, showFieldErrors } from "./schema-form.js";
import { bus, ui } from "./state.js";
import { $, el, showError } from "./util.js";

export const PREFIX = "academy-param";
const MAIN = ["rounds", "attacks", "heldout", "benign", "steps", "max_tokens", "seed"];
const MORE = ["domain", "threshold", "anchor_weight", "droid", "sheriff"];

const form = { fields: [], command: null, loaded: false, busy: false };

/** Problems the schema's own limits show without asking the daemon (minimum, maximum, required). */
export function limitProblems(fields, params) {
  const problems = [];
  for (const spec of fields) {
    const value = params[spec.name];
    const s = spec.schema;
    if (value === undefined) {
      if (spec.required) problems.push({ name: spec.name, message: "is required" });
      continue;
    }
    if (typeof value !== "number") continue;
    if (s.minimum !== undefined && value < s.minimum) problems.push({ name: spec.name, message: `must be ≥ ${s.minimum}` });
    if (s.maximum !== undefined && value > s.maximum) problems.push({ name: spec.name, message: `must be ≤ ${s.maximum}` });
    if (s.exclusiveMinimum !== undefined && value <= s.exclusiveMinimum) problems.push({ name: spec.name, message: `must be > ${s.exclusiveMinimum}` });
    if (s.exclusiveMaximum !== undefined && value >= s.exclusiveMaximum) problems.push({ name: spec.name, message: `must be < ${s.exclusiveMaximum}` });
  }
  return problems;
}

function studentField(spec) {
  const id = `${PREFIX}-student`;
  return el(
    "div",
    { class: "field field-student", dataset: { param: "student" } },
    el("label", { for: id }, "Student persona"),
    el("select", { id, name: "student", required: true, "aria-describedby": `${id}-help ${id}-error` }, el("option", { value: "" }, "loading…")),
    el("small", { id: `${id}-help`, class: "help" }, spec?.description || "the persona to train (local model)"),
    el("small", { id: `${id}-error`, class: "field-error", hidden: true }),
  );
}

/** The form's card; onStarted(student, job) runs once academy_train returned its job. */
export function buildForm(onStarted) {
  const card = el(
    "section",
    { class: "card academy-form-card", "aria-labelledby": "academy-form-title" },
    el("h3", { id: "academy-form-title" }, "Start a run"),
    el("p", { id: "academy-form-note", class: "help" }, "Rounds of droid attacks → sheriff verdicts → a defense adapter → a held-out exam."),
    el(
      "form",
      { id: "academy-form", class: "academy-form", novalidate: true, autocomplete: "off", onsubmit: (e) => void submit(e, onStarted) },
      el("div", { id: "academy-fields", class: "academy-fields" }, studentField(null)),
      el("details", { id: "academy-more", class: "academy-more" }, el("summary", {}, "More settings"), el("div", { id: "academy-more-fields", class: "academy-fields" })),
      el("div", { class: "academy-form-actions" }, el("button", { id: "academy-start", type: "submit", disabled: true }, "Start training")),
    ),
    el("p", { id: "academy-form-error", class: "error", role: "alert", hidden: true }),
  );
  return card;
}

/** Fill the fields from the daemon's `commands` (once) and the student list (each time). */
export async function loadForm(preferred) {
  if (bus.state !== "open") return;
  try {
    if (!form.loaded) {
      const { commands } = await bus.call("commands");
      form.command = commands.find((c) => c.name === "academy_train") || null;
      if (!form.command) throw new Error("this daemon has no academy_train command");
      form.fields = schemaFields(form.command.params_schema);
      const byName = new Map(form.fields.map((f) => [f.name, f]));
      $("academy-fields").replaceChildren(
        studentField(byName.get("student")),
        ...MAIN.filter((n) => byName.has(n)).map((n) => renderField(byName.get(n), PREFIX)),
      );
      const rest = [...MORE, ...form.fields.map((f) => f.name)].filter((n, i, all) => all.indexOf(n) === i);
      $("academy-more-fields").replaceChildren(
        ...rest.filter((n) => byName.has(n) && n !== "student" && !MAIN.includes(n)).map((n) => renderField(byName.get(n), PREFIX)),
      );
      form.loaded = true;
    }
    await loadStudents(preferred);
    const denied = form.command && !form.command.allowed;
    $("academy-form-note").textContent = denied
      ? `This session lacks the “${form.command.capability}” capability: it can watch runs but not start one.`
      : "Rounds of droid attacks → sheriff verdicts → a defense adapter → a held-out exam.";
    updateForm();
    showError($("academy-form-error"), null);
  } catch (error) {
    showError($("academy-form-error"), error);
  }
}

async function loadStudents(preferred) {
  const select = $(`${PREFIX}-student`);
  let personas = ui.personas;
  if (!personas.length) {
    try {
      ({ personas } = await bus.call("persona_list"));
    } catch {
      personas = [];
    }
  }
  const keep = preferred || select.value;
  const options = personas.map((p) =>
    el("option", { value: p.id }, p.name && p.name !== p.id ? `${p.name} (@${p.id})` : p.id),
  );
  select.replaceChildren(el("option", { value: "" }, personas.length ? "— choose —" : "no personas"), ...options);
  if (keep && personas.some((p) => p.id === keep)) select.value = keep;
}

export function updateForm() {
  const button = $("academy-start");
  if (!button) return;
  button.disabled = bus.state !== "open" || !form.loaded || form.busy || !form.command?.allowed;
  button.textContent = form.busy ? "Starting…" : "Start training";
}

async function submit(event, onStarted) {
  event.preventDefault();
  if (!form.loaded || form.busy) return;
  const container = $("academy-form");
  const { params, problems } = collectParams(form.fields.filter((f) => f.name !== "student"), PREFIX);
  const student = $(`${PREFIX}-student`).value;
  if (student) params.student = student;
  if (!student) problems.unshift({ name: "student", message: "choose a persona" });
  problems.push(...limitProblems(form.fields, params).filter((p) => !problems.some((q) => q.name === p.name)));
  showFieldErrors(problems, container, PREFIX);
  showError($("academy-form-error"), null);
  if (problems.length) {
    $(`${PREFIX}-${problems[0].name}`)?.focus();
    return;
  }
  form.busy = true;
  updateForm();
  try {
    const result = await bus.call("academy_train", params);
    onStarted(student, result.job, params);
  } catch (error) {
    if (error.code === "invalid_params" && Array.isArray(error.details)) {
      showFieldErrors(error.details.map((d) => ({ name: String(d.loc?.[0] ?? ""), message: d.msg })), container, PREFIX);
    }
    showError($("academy-form-error"), error);
  } finally {
    form.busy = false;
    updateForm();
  }
}
