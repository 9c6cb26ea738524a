// The adapters view's training card (js/adapters-view.js): read a chat JSONL file in the browser, upload it to
// this session's artifacts (file_write), start lora_train on it, and follow the job: a live loss chart (uPlot,
// from lora_train_progress events for this adapter), a progress bar (job_progress), Cancel (job_cancel), and
// the new adapter's manifest when job_finished arrives.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { defList, num, shortHash, showBusError } from "./adapter-util.js";
import { bus } from "./state.js";
import { el } from "./util.js";

const STEP_INCREMENTS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000];
const NAME = /^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$/;

/** Check a chat JSONL text: each non-blank line a JSON object with a messages array. Returns the count. */
export function countExamples(text) {
  let count = 0;
  text.split(/\r?\n/).forEach((line, index) => {
    if (!line.trim()) return;
    let parsed;
    try {
      parsed = JSON.parse(line);
    } catch {
      throw { code: "invalid_data", message: `line ${index + 1} is not JSON` };
    }
    if (!parsed || !Array.isArray(parsed.messages)) {
      throw { code: "invalid_data", message: `line ${index + 1} has no "messages" list` };
    }
    count += 1;
  });
  if (count === 0) throw { code: "invalid_data", message: "the file has no examples" };
  return count;
}

function field(id, label, input, help) {
  return el(
    "div",
    { class: "train-field" },
    el("label", { for: id, text: label }),
    input,
    help ? el("small", { class: "help", text: help }) : null,
  );
}

export class TrainPanel {
  /** onTrained(manifest): the job finished with a new adapter. */
  constructor({ onTrained }) {
    this.onTrained = onTrained;
    this.job = null; // {job_id, name, state}
    this.steps = [];
    this.losses = [];
    this.chart = null;
    this.node = this.build();
    bus.on("event:lora_train_progress", (data) => this.onStep(data));
    bus.on("event:job_progress", (job) => this.onJob(job));
    bus.on("event:job_finished", (job) => this.onJob(job));
    bus.on("welcome", () => void this.resync());
  }

  build() {
    const input = (id, attrs) => el("input", { id, name: id.replace("adapter-train-", ""), ...attrs });
    this.file = input("adapter-train-file", {
      type: "file",
      accept: ".jsonl,.json,.txt,application/jsonl,application/json,text/plain",
      required: true,
    });
    this.name = input("adapter-train-name", {
      type: "text",
      required: true,
      maxlength: 200,
      placeholder: "e.g. legal.patent",
      autocomplete: "off",
    });
    this.parents = input("adapter-train-parents", {
      type: "text",
      placeholder: "optional, comma separated",
      autocomplete: "off",
    });
    this.rank = input("adapter-train-rank", { type: "number", min: 1, max: 256, value: 8, required: true });
    this.steps_ = input("adapter-train-steps", {
      type: "number",
      min: 1,
      max: 100000,
      placeholder: "one pass over the data",
    });
    this.lr = input("adapter-train-lr", { type: "number", min: 0, max: 1, step: "any", value: 0.001, required: true });
    this.start = el("button", { type: "submit", id: "adapter-train-start", text: "Upload & train" });
    this.cancel = el("button", {
      type: "button",
      id: "adapter-train-cancel",
      class: "small",
      text: "Cancel training",
      hidden: true,
      onclick: () => void this.cancelJob(),
    });
    this.status = el("p", { id: "adapter-train-status", class: "help", role: "status", "aria-live": "polite" });
    this.progress = el("progress", {
      id: "adapter-train-progress",
      max: 1,
      value: 0,
      "aria-label": "Training progress",
    });
    this.progressWrap = el("div", { class: "train-progress", hidden: true }, this.progress);
    this.chartNode = el("div", {
      id: "adapter-train-chart",
      class: "chart train-chart",
      role: "img",
      "aria-label": "Training loss by step",
      dataset: { points: "0" },
      hidden: true,
    });
    this.result = el("div", { id: "adapter-train-result", class: "train-result", hidden: true });
    this.error = el("div", { id: "adapter-train-error", class: "error", role: "alert", hidden: true });
    this.form = el(
      "form",
      {
        id: "adapter-train-form",
        class: "train-form",
        novalidate: true,
        autocomplete: "off",
        onsubmit: (event) => {
          event.preventDefault();
          void this.train();
        },
      },
      field("adapter-train-file", "Chat JSONL file", this.file, 'one {"messages": [...]} per line'),
      field("adapter-train-name", "Adapter name", this.name, "dotted lowercase: a.b.c builds on a.b"),
      field("adapter-train-parents", "Extra parents", this.parents, "the nearest dotted prefix is implied"),
      el(
        "div",
        { class: "train-numbers" },
        field("adapter-train-rank", "Rank", this.rank),
        field("adapter-train-steps", "Max steps", this.steps_),
        field("adapter-train-lr", "Learning rate", this.lr),
      ),
      el("div", { class: "train-actions" }, this.start, this.cancel),
    );
    new ResizeObserver(() => this.resize()).observe(this.chartNode);
    return el(
      "section",
      { class: "card adapter-train", id: "adapter-train", "aria-labelledby": "adapter-train-title" },
      el("h3", { id: "adapter-train-title", text: "Train an adapter" }),
      this.form,
      this.status,
      this.progressWrap,
      this.chartNode,
      this.error,
      this.result,
    );
  }

  get running() {
    return this.job !== null && ["queued", "running"].includes(this.job.state);
  }

  updateButtons() {
    this.start.disabled = bus.state !== "open" || this.running;
    this.cancel.hidden = !this.running;
    this.cancel.disabled = bus.state !== "open";
  }

  async train() {
    showBusError(this.error, null);
    const name = this.name.value.trim();
    const file = this.file.files?.[0];
    const parents = this.parents.value.split(/[\s,]+/).filter(Boolean);
    const invalid = (input, message) => {
      input.setAttribute("aria-invalid", "true");
      input.focus();
      showBusError(this.error, { code: "invalid_params", message });
    };
    for (const input of [this.file, this.name, this.parents, this.rank, this.steps_, this.lr])
      input.removeAttribute("aria-invalid");
    if (!file) return invalid(this.file, "choose a chat JSONL file");
    if (!NAME.test(name)) return invalid(this.name, "the name is dotted lowercase segments, such as legal.patent");
    const bad = parents.find((p) => !NAME.test(p));
    if (bad) return invalid(this.parents, `${bad} is not an adapter name`);
    const params = { name, rank: Number(this.rank.value), lr: Number(this.lr.value) };
    if (!Number.isInteger(params.rank) || params.rank < 1)
      return invalid(this.rank, "the rank is a whole number from 1 to 256");
    if (!(params.lr > 0 && params.lr <= 1)) return invalid(this.lr, "the learning rate is above 0 and at most 1");
    if (this.steps_.value) {
      params.max_steps = Number(this.steps_.value);
      if (!Number.isInteger(params.max_steps) || params.max_steps < 1)
        return invalid(this.steps_, "max steps is a whole number");
    }
    if (parents.length) params.parents = parents;

    this.start.disabled = true;
    try {
      const text = await file.text();
      const examples = countExamples(text);
      params.data = `training/${name}.jsonl`;
      this.status.textContent = `Uploading ${file.name} (${examples} examples)…`;
      await bus.call("file_write", { path: params.data, content: text });
      this.resetRun(name);
      this.status.textContent = `Starting training of ${name} on ${examples} examples…`;
      const { job } = await bus.call("lora_train", params);
      this.job = { job_id: job.job_id, name, state: job.state };
      this.node.dataset.job = job.job_id;
      this.onJob(job);
    } catch (error) {
      this.status.textContent = "";
      showBusError(this.error, error);
    } finally {
      this.updateButtons();
    }
  }

  resetRun(name) {
    this.job = { job_id: null, name, state: "queued" };
    this.steps = [];
    this.losses = [];
    this.node.dataset.state = "queued";
    this.chartNode.dataset.points = "0";
    this.chartNode.hidden = false;
    this.progressWrap.hidden = false;
    this.progress.max = 1;
    this.progress.value = 0;
    this.result.hidden = true;
    this.result.replaceChildren();
    this.drawChart();
  }

  onStep(data) {
    if (!this.running || data?.name !== this.job.name || typeof data.step !== "number") return;
    if (this.steps.includes(data.step)) return;
    this.steps.push(data.step);
    this.losses.push(typeof data.loss === "number" ? data.loss : null);
    if (data.total_steps) {
      this.progress.max = data.total_steps;
      this.progress.value = data.step;
    }
    this.drawChart();
  }

  onJob(job) {
    if (!job || !this.job || job.job_id !== this.job.job_id) return;
    this.job.state = job.state;
    this.node.dataset.state = job.state;
    const { step, total, loss } = job.progress ?? {};
    if (typeof total === "number" && total > 0) {
      this.progress.max = total;
      this.progress.value = step ?? 0;
    }
    if (job.state === "queued") this.status.textContent = `${this.job.name}: waiting for a free job slot…`;
    else if (job.state === "running") {
      this.status.textContent =
        typeof step === "number"
          ? `${this.job.name}: step ${step}${total ? ` / ${total}` : ""}${typeof loss === "number" ? ` · loss ${num(loss)}` : ""}`
          : `${this.job.name}: loading the model…`;
    } else this.finished(job);
    this.updateButtons();
  }

  finished(job) {
    if (job.state === "succeeded" && job.result) {
      const manifest = job.result;
      const training = manifest.training ?? {};
      this.progress.value = this.progress.max;
      this.status.textContent = `Trained ${manifest.name}: ${training.steps ?? "?"} steps.`;
      this.result.hidden = false;
      this.result.replaceChildren(
        el("h4", { text: "New adapter" }),
        defList([
          ["name", manifest.name],
          ["parents", manifest.parents?.length ? manifest.parents.join(", ") : "none"],
          ["rank", num(manifest.rank)],
          ["hash", el("code", { title: manifest.lora_hash, text: shortHash(manifest.lora_hash) }), "hash"],
          ["steps", num(training.steps)],
          ["epochs", num(training.epochs)],
          ["first loss", num(training.first_loss), "first_loss"],
          ["final loss", num(training.final_loss), "final_loss"],
          ["seconds", num(training.seconds)],
        ]),
        el(
          "details",
          {},
          el("summary", { text: "Manifest" }),
          el("pre", { class: "adapter-json", text: JSON.stringify(manifest, null, 2) }),
        ),
      );
      this.onTrained(manifest);
    } else if (job.state === "cancelled") {
      this.status.textContent = `Training ${this.job.name} was cancelled.`;
    } else {
      this.status.textContent = `Training ${this.job.name} failed.`;
      showBusError(this.error, job.error ?? { code: "training_failed", message: "the job failed" });
    }
  }

  async cancelJob() {
    if (!this.running || !this.job.job_id) return;
    this.cancel.disabled = true;
    try {
      const { job } = await bus.call("job_cancel", { job_id: this.job.job_id });
      this.onJob(job);
    } catch (error) {
      showBusError(this.error, error);
    } finally {
      this.updateButtons();
    }
  }

  /** After a reconnect: the job may have moved on (or finished) while events could not arrive. */
  async resync() {
    this.updateButtons();
    if (!this.running || !this.job.job_id) return;
    try {
      const { job } = await bus.call("job_status", { job_id: this.job.job_id });
      this.onJob(job);
    } catch (error) {
      showBusError(this.error, error);
    }
  }

  drawChart() {
    this.chartNode.dataset.points = String(this.steps.length);
    const data = [this.steps.slice(), this.losses.slice()];
    if (this.chart) {
      this.chart.setData(data);
      return;
    }
    if (this.chartNode.hidden) return;
    const style = getComputedStyle(document.documentElement);
    const color = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
    const axis = {
      stroke: color("--muted", "#667085"),
      grid: { stroke: color("--border", "#d9dde5"), width: 1 },
      ticks: { show: false },
    };
    this.chart = new uPlot(
      {
        width: Math.max(200, this.chartNode.clientWidth),
        height: 220,
        scales: { x: { time: false } },
        legend: { show: true },
        series: [
          { label: "step" },
          { label: "loss", stroke: color("--accent", "#2f6fde"), width: 2, points: { show: true, size: 6 } },
        ],
        axes: [
          { ...axis, label: "step", incrs: STEP_INCREMENTS },
          { ...axis, label: "loss" },
        ],
      },
      data,
      this.chartNode,
    );
  }

  resize() {
    if (!this.chart || this.chartNode.hidden) return;
    const width = Math.max(200, this.chartNode.clientWidth);
    if (Math.abs(width - this.chart.width) > 1) this.chart.setSize({ width, height: 220 });
  }
}
