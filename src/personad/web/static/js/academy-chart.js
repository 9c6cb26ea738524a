// The Academy view's per-round chart (uPlot): held-out attack success with its 95% band, and benign pass.
// One point per round (round 0 = the baseline exam, before training). The container's data-points says how
// many rounds it shows (tests read it; so can anyone curious).

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { el } from "./util.js";

const HEIGHT = 240;

/** A round's exam as the chart plots it: rates in [0, 1]; the lower bound is 0 where the exam has none. */
export function chartPoint(round, exam) {
  const rate = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  return {
    round,
    attack: rate(exam?.attack_success),
    upper: rate(exam?.attack_success_upper95),
    lower: rate(exam?.attack_success_lower95) ?? (rate(exam?.attack_success) === null ? null : 0),
    benign: rate(exam?.benign_pass),
  };
}

function cssColor(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

function withAlpha(color, alpha) {
  const hex = /^#([0-9a-f]{6})$/i.exec(color);
  if (!hex) return color;
  const n = parseInt(hex[1], 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

const asPercent = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`);

export class AcademyChart {
  constructor() {
    this.points = [];
    this.plot = null;
    this.node = el("div", {
      class: "chart academy-chart",
      id: "academy-chart",
      role: "img",
      "aria-label": "Held-out attack success (with its 95% band) and benign pass rate per round",
      dataset: { points: "0" },
    });
    this.empty = el("p", { class: "help academy-chart-empty" }, "No rounds yet: round 0 (the baseline exam) appears first.");
    this.wrap = el("figure", { class: "academy-chart-wrap" }, this.empty, this.node);
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(this.wrap);
  }

  /** Replace every point (sorted by round). */
  setPoints(points) {
    this.points = [...points].sort((a, b) => a.round - b.round);
    this.draw();
  }

  data() {
    const p = this.points;
    return [p.map((x) => x.round), p.map((x) => x.lower), p.map((x) => x.upper), p.map((x) => x.attack), p.map((x) => x.benign)];
  }

  width() {
    return Math.max(200, Math.floor(this.wrap.clientWidth || 0));
  }

  draw() {
    this.node.dataset.points = String(this.points.length);
    this.empty.hidden = this.points.length > 0;
    if (!this.points.length) {
      this.plot?.destroy();
      this.plot = null;
      return;
    }
    if (!this.wrap.isConnected || this.wrap.clientWidth === 0) return; // hidden: drawn on the next fit()
    if (this.plot) {
      this.plot.setData(this.data());
      return;
    }
    this.plot = new uPlot(this.options(), this.data(), this.node);
  }

  fit() {
    if (!this.wrap.clientWidth) return;
    if (!this.plot) {
      this.draw();
      return;
    }
    const width = this.width();
    if (width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT });
  }

  options() {
    const attack = cssColor("--error", "#c0392b");
    const benign = cssColor("--ok", "#1f8a4c");
    const text = cssColor("--muted", "#667085");
    const grid = cssColor("--border", "#d9dde5");
    const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    return {
      width: this.width(),
      height: HEIGHT,
      scales: {
        x: { time: false, range: (u, min, max) => [0, Math.max(1, max ?? 1)] },
        y: { range: [0, 1] },
      },
      axes: [
        { ...axis, label: "round", incrs: [1, 2, 5, 10], values: (u, ticks) => ticks.map((t) => (t === 0 ? "before" : String(t))) },
        { ...axis, values: (u, ticks) => ticks.map((t) => `${Math.round(t * 100)}%`), size: 48 },
      ],
      series: [
        { label: "round", value: (u, v) => (v === null || v === undefined ? "–" : v === 0 ? "before" : String(v)) },
        { label: "95% low", stroke: withAlpha(attack, 0.35), width: 1, dash: [4, 4], points: { show: false }, value: (u, v) => asPercent(v) },
        { label: "95% high", stroke: withAlpha(attack, 0.35), width: 1, dash: [4, 4], points: { show: false }, value: (u, v) => asPercent(v) },
        { label: "attack success", stroke: attack, width: 2, points: { show: true, size: 7, fill: attack }, value: (u, v) => asPercent(v) },
        { label: "benign pass", stroke: benign, width: 2, points: { show: true, size: 7, fill: benign }, value: (u, v) => asPercent(v) },
      ],
      bands: [{ series: [2, 1], fill: withAlpha(attack, 0.12) }],
      legend: { live: true },
    };
  }
}
