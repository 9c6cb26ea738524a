// The Academy view (#/academy, #/academy/<student>): start a run (js/academy-form.js), watch it live — its
// job's progress and Cancel, a per-round chart (js/academy-chart.js) and table of the held-out exam, the
// attacks that still work — then the baseline → final summary and, on graduation, the celebration view.
//
// It listens to the daemon's own academy_* events (sent to every session) and job_* events (sent to the
// job's session); a run seen from elsewhere, or before this page loaded, comes from academy_status.

import { AcademyChart, chartPoint } from "./academy-chart.js";
import { buildExamCard, showExam } from "./academy-exam.js";
import { buildForm, loadForm, updateForm } from "./academy-form.js";
import { openGraduation } from "./graduation.js";
import { bus, hasCapability } from "./state.js";
import { $, el, percent, showError } from "./util.js";
import { currentView, registerView, viewHash } from "./views.js";

const FINISHED_JOB = new Set(["succeeded", "failed", "cancelled", "interrupted"]);

const runs = new Map(); // student → {student, state, started, rounds: Map round → record, report, job, seq}
const view = { student: null, built: false, chart: null, loadSeq: 0 };

function run(student) {
  let entry = runs.get(student);
  if (!entry) {
    entry = { student, state: "never", started: null, rounds: new Map(), report: null, job: null, error: null, seq: 0 };
    runs.set(student, entry);
  }
  return entry;
}

// --- building -----------------------------------------------------------------------------------------

function build() {
  if (view.built) return;
  view.built = true;
  view.chart = new AcademyChart();
  const runCard = el(
    "section",
    { class: "card academy-run", id: "academy-run", "aria-labelledby": "academy-run-title", dataset: { state: "never" } },
    el("div", { class: "academy-run-head" }, el("h3", { id: "academy-run-title" }, "No run yet"), el("span", { id: "academy-run-state", class: "academy-state", role: "status", "aria-live": "polite" }, "")),
    el(
      "div",
      { id: "academy-job", class: "academy-job", hidden: true },
      el("label", { for: "academy-progress", id: "academy-progress-label" }, "progress"),
      el("progress", { id: "academy-progress", max: "1", value: "0" }),
      el("div", { class: "academy-job-actions" },
        el("button", { id: "academy-cancel", type: "button", class: "small", onclick: () => void cancelRun() }, "Cancel run"),
        el("a", { id: "academy-job-link", href: "#/jobs" }, "in Jobs"),
      ),
    ),
    el("p", { id: "academy-run-error", class: "error", role: "alert", hidden: true }),
    el("h4", { id: "academy-exam-title" }, "Held-out exam per round"),
    view.chart.wrap,
    el(
      "table",
      { class: "data-table academy-rounds-table", id: "academy-rounds-table" },
      el("caption", { class: "visually-hidden" }, "Held-out exam per round"),
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "round"),
        el("th", { scope: "col", class: "num" }, "attack success"),
        el("th", { scope: "col", class: "num" }, "95% interval"),
        el("th", { scope: "col", class: "num" }, "benign pass"),
        el("th", { scope: "col", class: "num" }, "train attacks worked"),
      )),
      el("tbody", {}),
    ),
  );
  const summary = el("section", { class: "card academy-summary", id: "academy-summary", "aria-labelledby": "academy-summary-title", hidden: true },
    el("h3", { id: "academy-summary-title" }, "Result"), el("div", { id: "academy-summary-body" }));
  const still = el("section", { class: "card academy-still", "aria-labelledby": "academy-still-title" },
    el("h3", { id: "academy-still-title" }, "Attacks that still work"), el("div", { id: "academy-still-working" }, el("p", { class: "help" }, "—")));
  // The run first (its chart is what one watches), its result beside the attacks that still work, then the form.
  $("academy-view-body").replaceChildren(
    runCard,
    el("div", { class: "cards academy-results" }, summary, still),
    buildExamCard(),
    buildForm(onStarted),
  );
}

// --- rendering ------------------------------------------------------------------------------------------

function render() {
  if (!view.built) return;
  const student = view.student;
  const entry = student ? runs.get(student) : null;
  const state = entry?.state ?? "never";
  $("academy-run").dataset.state = state;
  $("academy-run").dataset.student = student ?? "";
  $("academy-run-title").textContent = student ? `Run: ${student}` : "No run yet";
  $("academy-run-state").textContent = student ? stateText(entry) : "Start a run, or open #/academy/<student>.";
  renderJob(entry);
  showError($("academy-run-error"), entry?.error ?? null);
  const rounds = entry ? [...entry.rounds.values()].sort((a, b) => a.round - b.round) : [];
  view.chart.setPoints(rounds.map((r) => chartPoint(r.round, r.exam)));
  $("academy-rounds-table").querySelector("tbody").replaceChildren(...rounds.map(roundRow));
  for (const node of [view.chart.wrap, $("academy-rounds-table"), $("academy-exam-title")]) node.hidden = !student;
  $("academy-still-working").closest("section").hidden = rounds.length === 0;
  renderStill(rounds.at(-1));
  renderSummary(entry);
  showExam(student);
}

function stateText(entry) {
  if (!entry) return "";
  const started = entry.started;
  const size = started ? ` · ${started.heldout_attacks} held-out attacks, ${started.benign} benign questions` : "";
  switch (entry.state) {
    case "running": return `running${size}`;
    case "finished": return entry.report?.graduated ? "finished · graduated 🎓" : "finished · not graduated";
    case "failed": return "failed";
    case "cancelled": return "cancelled";
    case "never": return "no Academy run recorded";
    default: return entry.state;
  }
}

function renderJob(entry) {
  const job = entry?.job;
  $("academy-job").hidden = !job;
  if (!job) return;
  const progress = job.progress || {};
  const done = FINISHED_JOB.has(job.state);
  $("academy-progress").value = done && job.state === "succeeded" ? 1 : Number(progress.fraction) || 0;
  $("academy-progress-label").textContent = `${job.state}${progress.message ? ` · ${progress.message}` : ""}`;
  $("academy-cancel").hidden = done;
  $("academy-cancel").disabled = entry.cancelling === true;
  $("academy-job-link").href = viewHash("jobs", job.job_id);
}

function roundRow(r) {
  const e = r.exam || {};
  const interval = typeof e.attack_success_upper95 === "number"
    ? `${percent(typeof e.attack_success_lower95 === "number" ? e.attack_success_lower95 : 0)} – ${percent(e.attack_success_upper95)}`
    : "–";
  return el(
    "tr",
    { dataset: { round: String(r.round) } },
    el("th", { scope: "row" }, r.round === 0 ? "0 (before)" : String(r.round)),
    el("td", { class: "num" }, percent(e.attack_success), typeof e.attacks === "number" ? el("span", { class: "help" }, ` (${e.violations ?? "?"}/${e.attacks})`) : null),
    el("td", { class: "num" }, interval),
    el("td", { class: "num" }, percent(e.benign_pass)),
    el("td", { class: "num" }, r.round === 0 ? "–" : percent(r.train_attack_success)),
  );
}

function renderStill(latest) {
  const box = $("academy-still-working");
  const exam = latest?.exam;
  if (!exam) {
    box.replaceChildren(el("p", { class: "help" }, "—"));
    return;
  }
  const label = latest.round === 0 ? "the baseline exam" : `round ${latest.round}'s exam`;
  const parts = [];
  const families = Object.entries(exam.by_family || {}).filter(([, cell]) => Array.isArray(cell) && cell[0] > 0);
  const listed = Array.isArray(exam.still_working) ? exam.still_working : null;
  const violations = typeof exam.violations === "number" ? exam.violations : families.reduce((n, [, c]) => n + c[0], 0);
  if (violations === 0 && (listed?.length ?? 0) === 0) {
    box.replaceChildren(el("p", { class: "academy-none", dataset: { count: "0" } }, `None: every held-out attack failed in ${label}.`));
    return;
  }
  parts.push(el("p", { class: "help", dataset: { count: String(violations) } }, `${violations} of ${exam.attacks ?? "?"} held-out attacks still succeed in ${label}.`));
  if (families.length) {
    parts.push(el("ul", { class: "academy-families", "aria-label": "By attack family" },
      ...families.sort((a, b) => b[1][0] - a[1][0]).map(([family, [bad, all]]) =>
        el("li", { dataset: { family } }, el("code", {}, family), ` ${bad} of ${all}`))));
  }
  if (listed?.length) {
    parts.push(el("ol", { class: "academy-attacks", id: "academy-attacks" },
      ...listed.map((a) => el("li", { dataset: { attack: String(a.id ?? "") } },
        el("div", { class: "academy-attack-head" }, el("code", {}, `${a.family ?? "?"}/${a.style ?? "?"}`), ` → ${a.target ?? "?"}`,
          Array.isArray(a.reasons) && a.reasons.length ? el("span", { class: "help" }, ` · ${a.reasons.join(", ")}`) : null),
        a.prompt ? el("details", {}, el("summary", {}, "the attack"), el("pre", { class: "academy-prompt" }, String(a.prompt))) : null))));
    if (violations > listed.length) parts.push(el("p", { class: "help" }, `(the first ${listed.length} shown)`));
  }
  box.replaceChildren(...parts);
}

function renderSummary(entry) {
  const card = $("academy-summary");
  const report = entry?.report;
  card.hidden = !report;
  if (!report) return;
  card.dataset.graduated = report.graduated ? "true" : "false";
  const before = report.baseline || {};
  const after = report.final || {};
  const row = (label, key) => el("tr", { dataset: { metric: key } }, el("th", { scope: "row" }, label), el("td", { class: "num" }, percent(before[key])), el("td", { class: "num" }, percent(after[key])));
  const reduction = report.relative_reduction;
  const rounds = Array.isArray(report.rounds) ? report.rounds.length : 0;
  $("academy-summary-body").replaceChildren(
    el("p", { class: `academy-verdict ${report.graduated ? "graduated" : "not-graduated"}`, id: "academy-verdict" },
      report.graduated ? `🎓 ${report.student} graduated` : `${report.student} did not graduate`,
      ` after ${rounds} round${rounds === 1 ? "" : "s"}`),
    el("table", { class: "data-table academy-summary-table" },
      el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", { scope: "col", class: "num" }, "baseline"), el("th", { scope: "col", class: "num" }, "final"))),
      el("tbody", {}, row("held-out attack success", "attack_success"), row("95% upper bound", "attack_success_upper95"), row("benign pass", "benign_pass"))),
    el("p", { class: "help" },
      typeof reduction === "number" ? `attack success ${percent(reduction)} lower` : "no baseline attack succeeded",
      report.adapter ? ` · defense adapter ${report.adapter}` : "",
      typeof report.seconds === "number" ? ` · ${Math.round(report.seconds)} s` : ""),
    report.graduated
      ? el("button", { type: "button", id: "academy-view-graduation", onclick: () => openGraduation(report.student) }, "View graduation")
      : null,
  );
}

// --- data -------------------------------------------------------------------------------------------------

function show(student) {
  view.student = student;
  if (currentView() === "academy") {
    const hash = viewHash("academy", student);
    if (location.hash !== hash) history.replaceState(null, "", `${location.pathname}${location.search}${hash}`);
  }
  render();
}

function onStarted(student, job, params) {
  const entry = run(student);
  entry.seq += 1;
  // Its academy_started may have come first (then the rounds so far stay); else a fresh run.
  if (entry.state !== "running") Object.assign(entry, { state: "running", started: null, report: null, rounds: new Map() });
  Object.assign(entry, { job, error: null, cancelling: false, expectedRounds: params.rounds });
  show(student);
}

/** What academy_status says about a student's last run, unless live events told this page more. */
async function loadStatus(student) {
  const seq = ++view.loadSeq;
  const entry = run(student);
  const before = entry.seq;
  try {
    const status = await bus.call("academy_status", { student });
    if (seq !== view.loadSeq || entry.seq !== before) return;
    applyStatus(entry, status);
    showExam(student, status.exam);
    if (entry.state === "running" && !entry.job) await findJob(entry);
    showError($("academy-run-error"), null);
  } catch (error) {
    if (seq !== view.loadSeq) return;
    entry.error = error;
  }
  if (view.student === student) render();
}

function applyStatus(entry, status) {
  const last = status.last;
  entry.state = status.state === "finished" ? "finished" : status.state;
  entry.error = null;
  if (!last) return;
  const data = last.data || {};
  if (last.event === "academy_finished") {
    entry.report = data;
    entry.rounds = new Map();
    if (data.baseline) entry.rounds.set(0, { round: 0, exam: data.baseline });
    for (const r of data.rounds || []) if (r && typeof r.round === "number") entry.rounds.set(r.round, r);
  } else if (last.event === "academy_round" && typeof data.round === "number") {
    if (!entry.rounds.has(data.round)) entry.rounds.set(data.round, data);
  } else if (last.event === "academy_started") {
    entry.started = data;
  }
}

/** A run going on now: its job, when this session may see it (to show its progress and Cancel). */
async function findJob(entry) {
  try {
    const { jobs } = await bus.call("job_list", { state: "active", every_session: hasCapability("jobs"), limit: 50 });
    const job = jobs.find((j) => j.command === "academy_train" && String(j.title).startsWith(`Academy: ${entry.student},`));
    if (job) entry.job = job;
  } catch {
    /* the run shows without its job */
  }
}

async function cancelRun() {
  const entry = view.student ? runs.get(view.student) : null;
  if (!entry?.job) return;
  entry.cancelling = true;
  render();
  try {
    const { job } = await bus.call("job_cancel", { job_id: entry.job.job_id });
    onJob(job);
  } catch (error) {
    entry.error = error;
  } finally {
    entry.cancelling = false;
    if (view.student === entry.student) render();
  }
}

function onJob(job) {
  if (!job || job.command !== "academy_train") return;
  for (const entry of runs.values()) {
    if (entry.job?.job_id !== job.job_id) continue;
    entry.job = job;
    if (job.state === "failed" || job.state === "cancelled" || job.state === "interrupted") {
      entry.state = job.state === "interrupted" ? "failed" : job.state;
      entry.error = job.error || null;
    }
    if (view.student === entry.student) render();
  }
}

// --- events ---------------------------------------------------------------------------------------------

function adopt(student) {
  if (view.student === null) view.student = student; // the first run the page sees is the one it shows
  const entry = run(student);
  entry.seq += 1;
  return entry;
}

bus.on("event:academy_started", (data) => {
  if (!data || typeof data.student !== "string") return;
  const entry = adopt(data.student);
  Object.assign(entry, { state: "running", started: data, report: null, error: null, rounds: new Map() });
  if (view.student === data.student) render();
});

bus.on("event:academy_round", (data) => {
  if (!data || typeof data.student !== "string" || typeof data.round !== "number") return;
  const entry = adopt(data.student);
  if (entry.state !== "running") Object.assign(entry, { state: "running", report: null });
  if (data.round === 0) entry.rounds = new Map();
  entry.rounds.set(data.round, data);
  if (view.student === data.student) render();
});

bus.on("event:academy_finished", (data) => {
  if (!data || typeof data.student !== "string") return;
  const entry = adopt(data.student);
  entry.report = data;
  entry.state = "finished";
  if (data.baseline && !entry.rounds.has(0)) entry.rounds.set(0, { round: 0, exam: data.baseline });
  for (const r of data.rounds || []) if (r && typeof r.round === "number" && !entry.rounds.has(r.round)) entry.rounds.set(r.round, r);
  if (view.student === data.student) render();
});

for (const name of ["job_started", "job_progress", "job_finished"]) bus.on(`event:${name}`, onJob);

bus.on("welcome", () => {
  if (currentView() !== "academy") return;
  void loadForm(view.student);
  if (view.student) void loadStatus(view.student);
});
bus.on("state", () => updateForm());

registerView("academy", {
  show(args) {
    build();
    const student = args[0] || null;
    if (student) {
      view.student = student;
      const entry = runs.get(student);
      if (!entry || entry.state !== "running") void loadStatus(student);
    }
    render();
    void loadForm(view.student);
  },
});
