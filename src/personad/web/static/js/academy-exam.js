// The Academy view's exam card: run `academy_exam` on the shown persona (its current stack) and show each
// suite's rates — the Academy's own held-out split, over-refusal, garak's probes — with their 95% intervals.
// The last exam comes from academy_status (`exam`); a running one from academy_exam_suite events.

import { bus, hasCapability } from "./state.js";
import { $, el, percent, showError } from "./util.js";

const SUITES = [
  ["all", "all suites"],
  ["own", "own (held-out attacks, benign)"],
  ["overrefusal", "over-refusal"],
  ["garak", "garak (through /v1)"],
];
const LABELS = { own: "own held-out attacks", overrefusal: "over-refusal (refused)", garak: "garak probes" };

const exams = new Map(); // persona → {report, running: Set of suites, finished: {suite: result}, error}
let shown = null;

function entry(persona) {
  if (!exams.has(persona)) exams.set(persona, { report: null, running: new Set(), finished: {}, error: null });
  return exams.get(persona);
}

/** The card, built once into the Academy view. */
export function buildExamCard() {
  return el(
    "section",
    { class: "card academy-exam", id: "academy-exam", "aria-labelledby": "academy-exam-card-title" },
    el("h3", { id: "academy-exam-card-title" }, "Exam on suites the Academy did not write"),
    el(
      "form",
      { id: "academy-exam-form", class: "academy-exam-form", onsubmit: (event) => void runExam(event) },
      el("label", { for: "academy-exam-suite" }, "Suite"),
      el("select", { id: "academy-exam-suite" }, ...SUITES.map(([value, text]) => el("option", { value }, text))),
      el("button", { id: "academy-exam-run", type: "submit" }, "Run exam"),
    ),
    el("p", { id: "academy-exam-note", class: "help", role: "status", "aria-live": "polite" }, ""),
    el("p", { id: "academy-exam-error", class: "error", role: "alert", hidden: true }),
    el("div", { id: "academy-exam-results" }),
  );
}

/** Show the exam of ``persona`` (null: none chosen); ``exam`` is academy_status's last report, if read. */
export function showExam(persona, exam) {
  shown = persona;
  if (persona && exam !== undefined) {
    const state = entry(persona);
    if (state.running.size === 0 && exam) state.report = exam;
  }
  render();
}

function render() {
  const card = $("academy-exam");
  if (!card) return;
  card.hidden = !shown;
  if (!shown) return;
  const state = entry(shown);
  card.dataset.persona = shown;
  card.dataset.state = state.running.size ? "running" : state.report ? "done" : "none";
  $("academy-exam-run").disabled = bus.state !== "open" || state.running.size > 0 || !hasCapability("academy");
  const suites = state.running.size ? state.finished : state.report?.suites ?? {};
  $("academy-exam-note").textContent = state.running.size
    ? `examining ${shown}: ${[...state.running].join(", ")}…`
    : state.report
      ? `last exam of ${shown} (stack: ${state.report.stack?.join(", ") || "base model"}), ${state.report.seconds} s`
      : `${shown} has not been examined yet.`;
  showError($("academy-exam-error"), state.error);
  $("academy-exam-results").replaceChildren(...(Object.keys(suites).length ? [table(suites)] : []));
}

function cellRow(suite, family, cell, first) {
  return el(
    "tr",
    { dataset: { suite, family } },
    el("th", { scope: "row" }, first ? LABELS[suite] || suite : ""),
    el("td", {}, family),
    el("td", { class: "num" }, percent(cell.rate)),
    el("td", { class: "num" }, `${percent(cell.lower95)} – ${percent(cell.upper95)}`),
    el("td", { class: "num" }, `${cell.hits}/${cell.total}`),
  );
}

function table(suites) {
  const rows = [];
  for (const [suite, result] of Object.entries(suites)) {
    rows.push(cellRow(suite, "all", result.overall, true));
    for (const [family, cell] of Object.entries(result.families || {})) rows.push(cellRow(suite, family, cell, false));
    if (result.benign_pass) rows.push(cellRow(suite, "benign pass", result.benign_pass, false));
    if (result.held_out) {
      const held = result.held_out;
      rows.push(el("tr", { dataset: { suite, family: "held_out" } }, el("th", {}, ""),
        el("td", { colspan: "4", class: "help" }, `${held.in_academy_training} of ${held.prompts} prompts in the Academy's training`)));
    }
  }
  return el(
    "table",
    { class: "data-table academy-exam-table", id: "academy-exam-table" },
    el("thead", {}, el("tr", {}, ...["suite", "family", "rate", "95% interval", "n"].map((h, i) =>
      el("th", { scope: "col", class: i > 1 ? "num" : null }, h)))),
    el("tbody", {}, ...rows),
  );
}

async function runExam(event) {
  event.preventDefault();
  const persona = shown;
  if (!persona) return;
  const suite = $("academy-exam-suite").value;
  const state = entry(persona);
  state.error = null;
  state.finished = {};
  state.running = new Set(suite === "all" ? ["own", "overrefusal", "garak"] : [suite]);
  render();
  try {
    await bus.call("academy_exam", { persona, suite });
  } catch (error) {
    state.running.clear();
    state.error = error;
  }
  render();
}

bus.on("event:academy_exam_suite", (data) => {
  if (!data || typeof data.persona !== "string") return;
  const state = entry(data.persona);
  if (data.state === "started") state.running.add(data.suite);
  if (data.state === "finished") {
    state.finished[data.suite] = data.result;
    state.running.delete(data.suite);
  }
  if (data.persona === shown) render();
});

bus.on("event:academy_exam_finished", (report) => {
  if (!report || typeof report.persona !== "string") return;
  const state = entry(report.persona);
  Object.assign(state, { report, running: new Set(), finished: {}, error: null });
  if (report.persona === shown) render();
});

// A failed exam job ends without academy_exam_finished: its error is the job's.
bus.on("event:job_finished", (job) => {
  if (job?.command !== "academy_exam" || job.state === "succeeded") return;
  for (const [persona, state] of exams) {
    if (state.running.size) {
      state.running.clear();
      state.error = job.error || { code: job.state, message: `the exam ${job.state}` };
      if (persona === shown) render();
    }
  }
});
bus.on("state", () => render());
