// Graduation notifications and the celebration view (#graduation/<persona>).

import { chatWithPersona, refreshPersonas } from "./personas.js";
import { currentViewHash } from "./views.js";
import { bus, hasCapability, ui } from "./state.js";
import { $, el, percent, showError, store } from "./util.js";

// Graduations: the daemon's `persona_graduated` event carries `actions` (assign_tasks "Assign Tasks",
// view_details "View Details"). The in-page note shows them as buttons and is the real control: an OS
// notification can carry action buttons only when a service worker shows it (registration.showNotification),
// and this page registers none (no build step, and a worker's scope and lifetime are more than a notification
// needs), so the OS Notification is title + body and a click on it opens the celebration view.

export const GRADUATIONS_KEY = "personad.graduations"; // persona → its last graduation event, for #graduation/<id>
export const GRADUATIONS_KEPT = 20;
export const GRADUATION_NOTE_MS = 60_000;
export const GRADUATION_HASH = /^#graduation\/(.+)$/;
export const DEFAULT_ACTIONS = [
  { id: "assign_tasks", title: "Assign Tasks" },
  { id: "view_details", title: "View Details" },
];
export const graduation = { seq: 0, shown: null };

export function storedGraduations() {
  try {
    const parsed = JSON.parse(store.get(GRADUATIONS_KEY) || "{}");
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

export function keepGraduation(data) {
  const kept = storedGraduations();
  delete kept[data.persona];
  kept[data.persona] = data;
  const names = Object.keys(kept);
  for (const old of names.slice(0, Math.max(0, names.length - GRADUATIONS_KEPT))) delete kept[old];
  store.set(GRADUATIONS_KEY, JSON.stringify(kept));
}

export function graduationActions(data) {
  const actions = Array.isArray(data.actions) ? data.actions : DEFAULT_ACTIONS;
  return actions.filter((a) => a && (a.id === "assign_tasks" || a.id === "view_details"));
}

export function runGraduationAction(action, personaId) {
  if (action === "assign_tasks") void assignTasks(personaId);
  else openGraduation(personaId);
}

export function notifyInPage(data, title, body) {
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

export async function notifyGraduation(data) {
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

export function openGraduation(personaId) {
  const hash = `#graduation/${encodeURIComponent(personaId)}`;
  if (location.hash === hash) void showGraduation(personaId);
  else location.hash = hash; // hashchange shows it
}

export function routeFromHash() {
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

export function closeGraduationView() {
  if ($("graduation-view").open) $("graduation-view").close(); // the close handler drops the hash
}

export function onGraduationViewClosed() {
  graduation.shown = null;
  graduation.seq += 1;
  if (GRADUATION_HASH.test(location.hash)) {
    history.replaceState(null, "", `${location.pathname}${location.search}${currentViewHash()}`);
  }
}

/** The newest skill row of the persona's brain (the graduation's achievement and score), when readable. */
export async function latestSkill(personaId, achievement) {
  const rows = (
    await bus.call("brain_query", {
      persona: personaId,
      sql: "SELECT skill_id, lora_hash, effectiveness, acquired_at FROM skills ORDER BY acquired_at DESC LIMIT 20",
    })
  ).rows;
  return rows.find((r) => r.skill_id === achievement) || rows[0] || null;
}

export function metricsFromRun(last) {
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
export async function gatherGraduation(personaId) {
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

export function factRow(label, value, field) {
  return el("div", { dataset: { field } }, el("dt", {}, label), el("dd", {}, value));
}

export function metricsTable(metrics) {
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

export function tagList(items, empty, list) {
  if (!items.length) return el("p", { class: "help", dataset: { list } }, empty);
  return el("ul", { class: "celebration-tags", dataset: { list } }, ...items.map((item) => el("li", {}, item)));
}

export function renderGraduation({ persona, record, config, problems }, loading) {
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

export async function showGraduation(personaId) {
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
export async function assignTasks(personaId) {
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
