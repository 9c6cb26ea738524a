// Academy in the sidebar: live rounds of a run.

import { bus } from "./state.js";
import { $, el, percent } from "./util.js";

// The Academy view (#/academy) has the whole run: chart, exams, the form to start one.
$("academy-heading").after(el("a", { href: "#/academy", class: "academy-open", title: "Open the Academy view" }, "open view"));

export function academyRow(student, round, exam) {
  return el(
    "tr",
    { dataset: { student, round: String(round) } },
    el("td", {}, student),
    el("td", {}, round === 0 ? "before" : String(round)),
    el("td", {}, percent(exam.attack_success)),
    el("td", {}, percent(exam.attack_success_upper95)),
    el("td", {}, percent(exam.benign_pass)),
  );
}

bus.on("event:academy_started", (data) => {
  $("academy-note").textContent = `${data.student}: ${data.heldout_attacks} held-out attacks, ${data.benign} benign questions…`;
});

bus.on("event:academy_round", (data) => {
  const table = $("academy-rounds");
  table.hidden = false;
  table.querySelector("tbody").append(academyRow(data.student, data.round, data.exam));
});

bus.on("event:academy_finished", (data) => {
  const reduction = data.relative_reduction;
  $("academy-note").textContent =
    `${data.student}: held-out attack success ${percent(data.baseline.attack_success)} → ${percent(data.final.attack_success)}` +
    (typeof reduction === "number" ? ` (${percent(reduction)} less)` : "") +
    `, benign ${percent(data.baseline.benign_pass)} → ${percent(data.final.benign_pass)}` +
    (data.graduated ? " — graduated" : "");
});
