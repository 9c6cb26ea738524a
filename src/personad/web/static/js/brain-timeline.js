// The brain view's evolution history: each self-improvement step (an Academy round, a re-exam, an evolve run)
// as a timeline, newest first — what was tried (trigger_pattern), what it measured (success_rate) and what
// was kept (the adapter, or nothing) — with a chart of the measurements over time once there are two.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { bus } from "./state.js";
import { el, formatTime, percent, showError } from "./util.js";

const LIMIT = 200;
const SQL =
  "SELECT id, trigger_pattern, lora_generated, success_rate, timestamp FROM evolution_history" +
  " ORDER BY timestamp DESC, rowid DESC LIMIT ?";

function step(row) {
  const kept = row.lora_generated !== null && row.lora_generated !== "";
  return el(
    "li",
    { class: `brain-step${kept ? " kept" : ""}`, dataset: { id: row.id, kept: String(kept) } },
    el("time", { class: "brain-step-time", datetime: new Date(row.timestamp * 1000).toISOString() }, formatTime(row.timestamp)),
    el(
      "dl",
      { class: "brain-step-facts" },
      el("div", {}, el("dt", {}, "Tried"), el("dd", { class: "brain-step-tried" }, row.trigger_pattern)),
      el(
        "div",
        {},
        el("dt", {}, "Measured"),
        el("dd", { class: "brain-step-measured" }, `success ${percent(row.success_rate)}`),
      ),
      el(
        "div",
        {},
        el("dt", {}, "Kept"),
        el("dd", { class: "brain-step-kept" }, kept ? row.lora_generated : "nothing (discarded)"),
      ),
    ),
  );
}

export function createTimeline(context) {
  const chart = el("div", {
    id: "brain-evolution-chart", class: "brain-chart", role: "img", hidden: true,
    "aria-label": "success rate of each evolution step over time",
  });
  const list = el("ol", { id: "brain-evolution", class: "brain-timeline", "aria-label": "Evolution steps, newest first" });
  const error = el("p", { id: "brain-evolution-error", class: "error", role: "alert", hidden: true });
  const node = el(
    "section",
    { id: "brain-timeline", class: "card brain-timeline-card", "aria-labelledby": "brain-timeline-heading" },
    el("h3", { id: "brain-timeline-heading" }, "Evolution history"),
    el("p", { class: "help" }, "What each self-improvement step tried, what it measured, and which adapter it kept."),
    chart,
    list,
    error,
  );
  let plot = null;
  const resize = new ResizeObserver(() => {
    if (plot && chart.clientWidth > 0) plot.setSize({ width: chart.clientWidth, height: 200 });
  });
  resize.observe(chart);

  function drawChart(rows) {
    plot?.destroy();
    plot = null;
    chart.replaceChildren();
    chart.hidden = rows.length < 2;
    if (chart.hidden) return;
    const oldest = [...rows].reverse();
    const data = [oldest.map((r) => r.timestamp), oldest.map((r) => r.success_rate)];
    const accent = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() || "#2f6fde";
    const muted = getComputedStyle(document.documentElement).getPropertyValue("--muted").trim() || "#667085";
    const axis = { stroke: muted, grid: { stroke: "rgba(128,128,128,0.2)" }, ticks: { stroke: "rgba(128,128,128,0.3)" } };
    plot = new uPlot(
      {
        width: Math.max(200, chart.clientWidth),
        height: 200,
        scales: { x: { time: true }, y: { range: [0, 1] } },
        series: [
          {},
          { label: "success", stroke: accent, width: 2, points: { size: 6, fill: accent }, value: (u, v) => percent(v) },
        ],
        axes: [axis, { ...axis, values: (u, ticks) => ticks.map((t) => `${Math.round(t * 100)}%`) }],
        legend: { show: false },
      },
      data,
      chart,
    );
  }

  return {
    node,
    clear() {
      plot?.destroy();
      plot = null;
      chart.hidden = true;
      list.replaceChildren();
    },
    async load(seq) {
      showError(error, null);
      let rows;
      try {
        ({ rows } = await bus.call("brain_query", { persona: context.persona(), sql: SQL, params: [LIMIT] }));
      } catch (err) {
        if (context.fresh(seq)) showError(error, err);
        throw err;
      }
      if (!context.fresh(seq)) return;
      if (rows.length === 0) {
        this.clear();
        list.replaceChildren(el("li", { class: "placeholder" }, "No evolution steps yet: Academy rounds and evolve runs show here."));
        return;
      }
      list.replaceChildren(...rows.map(step));
      drawChart(rows);
    },
  };
}
