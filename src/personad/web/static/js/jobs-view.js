// The jobs view (#/jobs, #/jobs/<job_id>): every long command's job — this session's, or every session's with
// the "jobs" capability — with its state, progress bar and times; Cancel for a queued or running one; a
// finished one's result or error on demand. job_* events (sent to the job's own session) update it live;
// other sessions' jobs are re-read every few seconds while the view is open.

import { bus, hasCapability } from "./state.js";
import { $, el, formatTime, showError } from "./util.js";
import { currentView, registerView } from "./views.js";

const FINISHED = new Set(["succeeded", "failed", "cancelled", "interrupted"]);
const LIST_LIMIT = 200;
const POLL_ACTIVE_MS = 2_000;
const POLL_IDLE_MS = 10_000;

const jobs = {
  all: new Map(), // job_id → job description (result/error once known)
  open: new Set(), // job ids whose details are expanded
  cancelling: new Set(),
  loading: new Set(), // job ids whose result is being fetched
  built: false,
  seq: 0,
  timer: null,
  focus: null, // the job a #/jobs/<id> route named
};

function build() {
  if (jobs.built) return;
  jobs.built = true;
  const every = hasCapability("jobs");
  $("jobs-view-body").replaceChildren(
    el(
      "section",
      { class: "card jobs-card", "aria-labelledby": "jobs-list-title" },
      el("div", { class: "jobs-toolbar" },
        el("h3", { id: "jobs-list-title" }, "Jobs"),
        el("label", { for: "jobs-filter" }, "Show"),
        el("select", { id: "jobs-filter", onchange: () => render() },
          el("option", { value: "active" }, "active (queued, running)"),
          el("option", { value: "finished" }, "finished"),
          el("option", { value: "all", selected: true }, "all")),
        el("label", { class: "jobs-every", for: "jobs-every" },
          el("input", { id: "jobs-every", type: "checkbox", checked: every, disabled: !every, onchange: () => void refresh() }),
          " every session"),
        el("button", { id: "jobs-refresh", type: "button", class: "small", onclick: () => void refresh() }, "Refresh"),
      ),
      el("p", { id: "jobs-count", class: "help", role: "status", "aria-live": "polite" }, ""),
      el("div", { class: "jobs-scroll" },
        el("table", { class: "data-table jobs-table", id: "jobs-table" },
          el("thead", {}, el("tr", {},
            el("th", { scope: "col" }, "command"),
            el("th", { scope: "col" }, "title"),
            el("th", { scope: "col" }, "state"),
            el("th", { scope: "col" }, "progress"),
            el("th", { scope: "col" }, "created"),
            el("th", { scope: "col" }, "started"),
            el("th", { scope: "col" }, "finished"),
            el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "actions")))),
          el("tbody", {}))),
      el("p", { id: "jobs-empty", class: "placeholder", hidden: true }, "No jobs."),
      el("p", { id: "jobs-error", class: "error", role: "alert", hidden: true }),
    ),
  );
  updateEvery();
}

function updateEvery() {
  const box = $("jobs-every");
  if (!box) return;
  const allowed = hasCapability("jobs");
  if (allowed && box.disabled) box.checked = true; // the capability became known (connected): default on
  box.disabled = !allowed;
  if (!allowed) box.checked = false;
  box.closest("label").title = allowed ? "Every session's jobs" : "needs the “jobs” capability";
}

// --- rendering ------------------------------------------------------------------------------------------

function visible(job) {
  const filter = $("jobs-filter").value;
  if (filter === "active") return !FINISHED.has(job.state);
  if (filter === "finished") return FINISHED.has(job.state);
  return true;
}

function render() {
  if (!jobs.built) return;
  const shown = [...jobs.all.values()].filter(visible).sort((a, b) => b.created_at - a.created_at);
  const rows = [];
  for (const job of shown) {
    rows.push(jobRow(job));
    if (jobs.open.has(job.job_id)) rows.push(detailRow(job));
  }
  $("jobs-table").querySelector("tbody").replaceChildren(...rows);
  $("jobs-empty").hidden = shown.length > 0;
  const active = [...jobs.all.values()].filter((j) => !FINISHED.has(j.state)).length;
  $("jobs-count").textContent = `${shown.length} shown · ${active} active · ${jobs.all.size} in all`;
}

function time(ts) {
  if (typeof ts !== "number") return el("span", { class: "help" }, "–");
  const date = new Date(ts * 1000);
  const sameDay = date.toDateString() === new Date().toDateString();
  const text = sameDay ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : formatTime(ts);
  return el("time", { datetime: date.toISOString(), title: date.toLocaleString() }, text);
}

function jobRow(job) {
  const progress = job.progress || {};
  const done = FINISHED.has(job.state);
  const fraction = job.state === "succeeded" ? 1 : Number(progress.fraction) || 0;
  const id = job.job_id;
  const bar = el("progress", { max: "1", value: String(fraction), "aria-label": `progress of ${job.title || job.command}` });
  if (!done && typeof progress.fraction !== "number") bar.removeAttribute("value"); // indeterminate
  const open = jobs.open.has(id);
  return el(
    "tr",
    { class: "job", dataset: { jobId: id, state: job.state }, "aria-current": jobs.focus === id ? "true" : null },
    el("td", {}, el("code", {}, job.command)),
    el("td", { class: "job-title" }, job.title || ""),
    el("td", {}, el("span", { class: `job-state state-${job.state}` }, job.state)),
    el("td", { class: "job-progress" }, bar,
      el("span", { class: "job-message" }, [progress.message, typeof progress.fraction === "number" ? `${Math.round(100 * fraction)}%` : null].filter(Boolean).join(" · "))),
    el("td", {}, time(job.created_at)),
    el("td", {}, time(job.started_at)),
    el("td", {}, time(job.finished_at)),
    el("td", { class: "job-actions" },
      done
        ? el("button", { type: "button", class: "small job-details", "aria-expanded": open ? "true" : "false", "aria-controls": `job-detail-${id}`, onclick: () => void toggle(id) }, open ? "Hide" : job.state === "succeeded" ? "Result" : "Error")
        : el("button", { type: "button", class: "small job-cancel", disabled: jobs.cancelling.has(id), onclick: () => void cancel(id) }, jobs.cancelling.has(id) ? "Cancelling…" : "Cancel"),
    ),
  );
}

function detailRow(job) {
  const id = job.job_id;
  let body;
  if (jobs.loading.has(id)) body = el("p", { class: "help" }, "loading…");
  else if (job.error) {
    body = el("div", { class: "job-error", role: "group", "aria-label": "error" },
      el("code", { class: "job-error-code" }, job.error.code || "error"), " ",
      el("span", { class: "job-error-message" }, job.error.message || ""));
  } else if ("result" in job) body = el("pre", { class: "job-result" }, JSON.stringify(job.result, null, 2));
  else body = el("p", { class: "help" }, "no result recorded");
  return el("tr", { class: "job-detail", id: `job-detail-${id}`, dataset: { jobId: id } },
    el("td", { colspan: "8" }, el("p", { class: "help" }, `job ${id} · session ${job.session_id ?? "?"}`), body));
}

// --- actions --------------------------------------------------------------------------------------------

async function toggle(id) {
  if (jobs.open.has(id)) {
    jobs.open.delete(id);
    render();
    return;
  }
  jobs.open.add(id);
  const job = jobs.all.get(id);
  if (job && !("result" in job) && !job.error) {
    jobs.loading.add(id);
    render();
    await load(id);
    jobs.loading.delete(id);
  }
  render();
}

/** One job with its result or error (job_list leaves results out). */
async function load(id) {
  try {
    const { job } = await bus.call("job_status", { job_id: id });
    jobs.all.set(id, job);
    return job;
  } catch (error) {
    showError($("jobs-error"), error);
    return null;
  }
}

async function cancel(id) {
  jobs.cancelling.add(id);
  render();
  try {
    const { job } = await bus.call("job_cancel", { job_id: id });
    upsert(job);
    showError($("jobs-error"), null);
  } catch (error) {
    showError($("jobs-error"), error);
  } finally {
    jobs.cancelling.delete(id);
    render();
  }
}

async function refresh() {
  if (!jobs.built || bus.state !== "open") return;
  const seq = ++jobs.seq;
  const every = $("jobs-every").checked && hasCapability("jobs");
  try {
    const { jobs: listed } = await bus.call("job_list", { state: "all", every_session: every, limit: LIST_LIMIT });
    if (seq !== jobs.seq) return;
    const next = new Map();
    for (const job of listed) {
      const known = jobs.all.get(job.job_id);
      // Keep a result already read: job_list leaves it out, and a finished job's outcome does not change.
      next.set(job.job_id, known && FINISHED.has(job.state) && ("result" in known || known.error) ? { ...job, result: known.result, error: known.error } : job);
    }
    // The job a #/jobs/<id> route named stays listed (it may be older than the list's limit), unless it is
    // another session's and the list now shows only this session's.
    const focused = jobs.focus ? jobs.all.get(jobs.focus) : null;
    if (focused && !next.has(focused.job_id) && (every || focused.session_id === bus.welcome?.session_id)) {
      next.set(focused.job_id, focused);
    }
    jobs.all = next;
    showError($("jobs-error"), null);
  } catch (error) {
    if (seq === jobs.seq) showError($("jobs-error"), error);
  }
  render();
}

function upsert(job) {
  if (!job || typeof job.job_id !== "string") return;
  const known = jobs.all.get(job.job_id);
  if (known && FINISHED.has(known.state) && !FINISHED.has(job.state)) return; // a late progress event
  jobs.all.set(job.job_id, job);
  if (currentView() === "jobs") render();
}

function schedule() {
  clearTimeout(jobs.timer);
  if (currentView() !== "jobs") return;
  const active = [...jobs.all.values()].some((j) => !FINISHED.has(j.state));
  jobs.timer = setTimeout(async () => {
    if (document.visibilityState !== "hidden") await refresh();
    schedule();
  }, active ? POLL_ACTIVE_MS : POLL_IDLE_MS);
}

async function focusJob(id) {
  jobs.focus = id;
  jobs.open.add(id);
  if (!jobs.all.get(id) || !FINISHED.has(jobs.all.get(id).state) || !("result" in jobs.all.get(id))) await load(id);
  render();
  document.querySelector(`#jobs-table tr.job[data-job-id="${CSS.escape(id)}"]`)?.scrollIntoView({ block: "nearest" });
}

for (const name of ["job_started", "job_progress", "job_finished"]) bus.on(`event:${name}`, upsert);

bus.on("welcome", () => {
  updateEvery();
  if (currentView() === "jobs") void refresh().then(schedule);
});

registerView("jobs", {
  async show(args) {
    build();
    updateEvery();
    render();
    await refresh();
    if (args[0]) await focusJob(args[0]);
    else jobs.focus = null;
    schedule();
  },
  hide() {
    clearTimeout(jobs.timer);
  },
});
