// The adapters view's details card (js/adapters-view.js): one adapter as lora_show describes it — manifest,
// parent chain, children, storage ratio, training summary, Academy metrics (metrics.academy from a finished
// run, metrics.academy_reexam from a re-exam) and other metrics — with Add to stack, Export (lora_export)
// and Delete (lora_delete, confirmed by a second press).

import { dateTime, defList, formatBytes, num, showBusError } from "./adapter-util.js";
import { bus } from "./state.js";
import { el, percent } from "./util.js";

/** What the card's buttons do: onSelect(name), onAdd(name), onChanged() (the registry changed), onDeleted(name). */
const hooks = { onSelect() {}, onAdd() {}, onChanged() {}, onDeleted() {} };
const armed = new Set(); // adapters whose Delete was pressed once (kept while the same adapter is re-read)
let rendered = null; // the adapter shown

export function setDetailHooks(given) {
  Object.assign(hooks, given);
}

function link(name) {
  return el("button", {
    type: "button",
    class: "link",
    text: name,
    title: `Show ${name}`,
    onclick: () => hooks.onSelect(name),
  });
}

function chainOf(names) {
  if (!names?.length) return "none";
  const span = el("span", { class: "adapter-chain" });
  names.forEach((n, i) => span.append(...(i ? [" → "] : []), link(n)));
  return span;
}

/** A fraction as a percentage with 2 significant digits: 0.0000086 → "0.00086%". */
function share(fraction) {
  return typeof fraction === "number" ? `${Number((100 * fraction).toPrecision(2))}%` : "–";
}

function storageRows(storage = {}) {
  const ratio = storage.base_over_adapter;
  return defList(
    [
      ["adapter", formatBytes(storage.adapter_bytes), "adapter_bytes"],
      [
        "with its chain",
        storage.chain_bytes !== undefined ? formatBytes(storage.chain_bytes) : undefined,
        "chain_bytes",
      ],
      [
        "base model",
        storage.base_model_bytes ? formatBytes(storage.base_model_bytes) : "not installed",
        "base_model_bytes",
      ],
      [
        "ratio",
        ratio ? `${share(storage.adapter_over_base)} of the base (${ratio.toLocaleString()}× smaller)` : "–",
        "ratio",
      ],
      [
        "chain ratio",
        storage.chain_over_base !== undefined ? `${share(storage.chain_over_base)} of the base` : undefined,
        "chain_ratio",
      ],
    ],
    { id: "adapter-storage" },
  );
}

const TRAINING_KEYS = [
  ["steps", "steps"],
  ["epochs", "epochs"],
  ["examples", "examples"],
  ["first_loss", "first loss"],
  ["final_loss", "final loss"],
  ["lr", "learning rate"],
  ["max_steps", "max steps"],
  ["tokens", "tokens"],
  ["data_file", "data file"],
  ["seconds", "seconds"],
  ["device", "device"],
];

function trainingRows(training = {}) {
  if (!Object.keys(training).length)
    return el("p", { class: "placeholder", text: "no training summary (registered from files)" });
  const known = new Set(TRAINING_KEYS.map(([k]) => k));
  const rows = TRAINING_KEYS.filter(([k]) => k in training).map(([k, label]) => [label, num(training[k]), k]);
  for (const [k, v] of Object.entries(training)) {
    if (!known.has(k) && v !== null)
      rows.push([k.replaceAll("_", " "), typeof v === "object" ? JSON.stringify(v) : num(v), k]);
  }
  return defList(rows, { id: "adapter-training" });
}

function examRow(label, exam) {
  return el(
    "tr",
    { dataset: { row: label } },
    el("th", { scope: "row", text: label }),
    el("td", { class: "num", text: percent(exam?.attack_success) }),
    el("td", { class: "num", text: percent(exam?.attack_success_upper95) }),
    el("td", { class: "num", text: percent(exam?.benign_pass) }),
  );
}

function metricsPart(metrics = {}) {
  const academy = metrics.academy;
  const reexam = metrics.academy_reexam;
  const box = el("div", { id: "adapter-metrics" });
  if (!academy && !reexam)
    box.append(el("p", { class: "placeholder", id: "adapter-no-academy", text: "no Academy metrics" }));
  if (academy || reexam) {
    const head = el(
      "tr",
      {},
      ...["", "attack success", "≤95%", "benign pass"].map((t, i) =>
        el("th", { scope: "col", class: i ? "num" : null, text: t }),
      ),
    );
    const table = el("table", { class: "data-table", id: "adapter-academy" }, el("thead", {}, head), el("tbody"));
    if (academy) table.tBodies[0].append(examRow("baseline", academy.baseline), examRow("final", academy.final));
    if (reexam) table.tBodies[0].append(examRow(`re-exam ${dateTime(reexam.at)}`, reexam.exam));
    box.append(table);
    if (academy) {
      box.append(
        defList([
          ["graduated", academy.graduated ? "yes" : "no"],
          ["relative reduction", percent(academy.relative_reduction), "relative_reduction"],
        ]),
      );
    }
  }
  const others = Object.entries(metrics).filter(([k]) => k !== "academy" && k !== "academy_reexam");
  if (!others.length) return [box];
  const rows = others.map(([k, v]) => [k.replaceAll("_", " "), typeof v === "object" ? JSON.stringify(v) : num(v), k]);
  return [box, el("h4", { text: "Other metrics" }), defList(rows, { id: "adapter-other-metrics" })];
}

function exportForm(name) {
  const out = el("input", {
    id: "adapter-export-out",
    type: "text",
    maxlength: 200,
    value: `exports/${name}`,
    autocomplete: "off",
  });
  const register = el("input", {
    id: "adapter-export-register",
    type: "text",
    maxlength: 200,
    placeholder: "optional: also register as…",
    autocomplete: "off",
  });
  const result = el("div", { id: "adapter-export-result", role: "status", "aria-live": "polite" });
  const error = el("div", { id: "adapter-export-error", class: "error", role: "alert", hidden: true });
  const button = el("button", { type: "submit", id: "adapter-export-run", text: "Export" });
  const form = el(
    "form",
    {
      id: "adapter-export",
      class: "adapter-export",
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const params = { name };
        if (out.value.trim()) params.out = out.value.trim();
        if (register.value.trim()) params.register_as = register.value.trim();
        showBusError(error, null);
        result.replaceChildren();
        button.disabled = true;
        try {
          const done = await bus.call("lora_export", params);
          result.append(
            defList([
              ["rank", num(done.r), "r"],
              ["flattened", done.adapters.map(([n, s]) => (s === 1 ? n : `${n} ×${s}`)).join(" → "), "adapters"],
              ["folder", done.path ? el("code", { text: done.path }) : undefined, "path"],
              ["registered", done.registered ? link(done.registered.name) : undefined, "registered"],
            ]),
          );
          if (done.registered) hooks.onChanged();
        } catch (failure) {
          showBusError(error, failure);
        } finally {
          button.disabled = false;
        }
      },
    },
    el("h4", { text: "Export" }),
    el("p", { class: "help", text: "Flattens the parent chain into one stock PEFT adapter (rank Σr)." }),
    el("label", { for: "adapter-export-out", text: "Folder in your artifacts" }),
    out,
    el("label", { for: "adapter-export-register", text: "Register as" }),
    register,
    el("div", { class: "adapter-actions" }, button),
    result,
    error,
  );
  return form;
}

function deleteButton(name, children) {
  const error = el("div", { class: "error", id: "adapter-delete-error", role: "alert", hidden: true });
  const button = el("button", {
    type: "button",
    id: "adapter-delete",
    class: "small danger",
    text: armed.has(name) ? `Confirm delete ${name}` : "Delete…",
    title: children.length ? `other adapters build on it: ${children.join(", ")}` : "Delete this adapter",
    onclick: async () => {
      if (!armed.has(name)) {
        armed.add(name);
        button.textContent = `Confirm delete ${name}`;
        return;
      }
      button.disabled = true;
      try {
        await bus.call("lora_delete", { name });
        hooks.onDeleted(name);
      } catch (failure) {
        showBusError(error, failure);
        armed.delete(name);
        button.textContent = "Delete…";
        button.disabled = false;
      }
    },
  });
  return el("div", { class: "adapter-delete" }, button, error);
}

export function renderDetails(details, shown) {
  if (shown?.name !== rendered) armed.clear();
  rendered = shown?.name ?? null;
  if (!shown) {
    delete details.dataset.name;
    details.dataset.state = "empty";
    details.replaceChildren(
      el("p", { class: "placeholder", text: "Select an adapter in the tree to see its manifest." }),
    );
    return;
  }
  const chainError = shown.chain_error
    ? el(
        "div",
        { class: "error", role: "alert", id: "adapter-chain-error" },
        el("strong", { class: "error-code", text: "chain" }),
        " ",
        shown.chain_error,
      )
    : null;
  details.dataset.name = shown.name;
  details.dataset.state = "ready";
  const children = [
    el("h4", { class: "adapter-name", text: shown.name }),
    el(
      "div",
      { class: "adapter-actions" },
      el("button", {
        type: "button",
        id: "adapter-add-to-stack",
        text: "Add to stack",
        onclick: () => hooks.onAdd(shown.name),
      }),
      deleteButton(shown.name, shown.children ?? []),
    ),
    defList(
      [
        ["parents", chainOf(shown.parents), "parents"],
        ["parent chain", chainOf(shown.chain), "chain"],
        ["children", shown.children?.length ? listOf(shown.children) : "none", "children"],
        ["rank", num(shown.rank)],
        ["alpha", num(shown.alpha)],
        ["targets", (shown.target_modules ?? []).join(", "), "targets"],
        ["hash", el("code", { class: "adapter-hash", text: shown.lora_hash }), "hash"],
        ["size", formatBytes(shown.size_bytes), "size"],
        ["base model", shown.base_model, "base_model"],
        ["created", `${dateTime(shown.created_at)} by ${shown.created_by}`, "created"],
      ],
      { id: "adapter-manifest" },
    ),
    chainError,
    el("h4", { text: "Storage" }),
    storageRows(shown.storage),
    el("h4", { text: "Training" }),
    trainingRows(shown.training),
    el("h4", { text: "Academy metrics" }),
    ...metricsPart(shown.metrics),
    exportForm(shown.name),
    el(
      "details",
      { class: "adapter-raw" },
      el("summary", { text: "Full manifest (JSON)" }),
      el("pre", { class: "adapter-json", text: JSON.stringify(shown, null, 2) }),
    ),
  ];
  details.replaceChildren(...children.flat().filter(Boolean));
}

function listOf(names) {
  const span = el("span", { class: "adapter-children" });
  names.forEach((n, i) => span.append(...(i ? [", "] : []), link(n)));
  return span;
}
