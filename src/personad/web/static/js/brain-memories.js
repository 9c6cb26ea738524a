// The brain view's memories card: search (recall: fused score and per-signal ranks), a browse list of the
// newest memories when there is no query (brain_query, paged), the filters both share (type, since/until,
// superseded), and a small form to remember something new.

import { bus } from "./state.js";
import { el, errorLine, formatTime, showError } from "./util.js";

const PAGE = 20;
const MODES = [
  ["hybrid", "hybrid (keywords + meaning)"],
  ["fts", "keywords (full text)"],
  ["vector", "meaning (vector)"],
];
const BROWSE_WHERE =
  "(:type IS NULL OR type = :type) AND (:since IS NULL OR timestamp >= :since)" +
  " AND (:until IS NULL OR timestamp <= :until) AND (:closed = 1 OR valid_to IS NULL)";
const BROWSE_SQL =
  "SELECT id, type, content, importance, source, key, timestamp, valid_from, valid_to FROM memories" +
  ` WHERE ${BROWSE_WHERE} ORDER BY timestamp DESC, seq DESC LIMIT :limit OFFSET :offset`;
const COUNT_SQL = `SELECT count(*) AS n FROM memories WHERE ${BROWSE_WHERE}`;
const TYPES_SQL = "SELECT type, count(*) AS n FROM memories GROUP BY type ORDER BY n DESC, type";
const TYPE_PATTERN = "[a-z][a-z0-9_]{0,63}";

/** A labelled control: <div class="brain-field"><label>…</label><control></div>. */
function field(label, control, extra = "") {
  return el("div", { class: `brain-field ${extra}`.trim() }, el("label", { for: control.id }, label), control);
}

/** Seconds since the epoch at the start of a date input's day (local time), or, with end, at its end. */
function dayEdge(value, end = false) {
  if (!value) return null;
  const [y, m, d] = value.split("-").map(Number);
  const start = new Date(y, m - 1, d + (end ? 1 : 0)).getTime() / 1000;
  return end ? start - 0.001 : start;
}

/** One memory as a list item: type, content, key, source, time, importance; with a score when searched. */
export function memoryItem(memory, searched) {
  const closed = memory.valid_to !== null && memory.valid_to !== undefined;
  const meta = el(
    "p",
    { class: "brain-memory-meta" },
    memory.key ? el("span", { class: "brain-key", title: "fact key" }, `key ${memory.key}`) : null,
    el("span", { title: "source" }, memory.source),
    el("time", { datetime: new Date(memory.timestamp * 1000).toISOString() }, formatTime(memory.timestamp)),
    el("span", { title: "importance" }, `importance ${Number(memory.importance).toFixed(2)}`),
    closed ? el("span", { class: "badge superseded" }, `superseded ${formatTime(memory.valid_to)}`) : null,
  );
  let score = null;
  if (searched) {
    const ranks = memory.ranks || {};
    const rank = (name, value) => el("span", { class: "brain-rank", dataset: { signal: name } }, `${name} ${value ? `#${value}` : "–"}`);
    score = el(
      "div",
      { class: "brain-score", title: "fused score, and the memory's rank in each retriever" },
      el("span", { class: "brain-score-value" }, `score ${Number(memory.score).toFixed(3)}`),
      rank("fts", ranks.fts),
      rank("vector", ranks.vector),
    );
  }
  return el(
    "li",
    { class: `brain-memory${closed ? " closed" : ""}`, dataset: { id: memory.id, type: memory.type } },
    el(
      "div",
      { class: "brain-memory-main" },
      el("span", { class: "badge brain-type" }, memory.type),
      el("p", { class: "brain-memory-content" }, memory.content),
      meta,
    ),
    score,
  );
}

export function createMemories(context) {
  const state = { mode: "browse", query: "", page: 0, total: 0, req: 0, persona: null };
  const query = el("input", {
    id: "brain-query", type: "search", maxlength: 4000, placeholder: "what to recall — Enter searches",
    autocomplete: "off",
  });
  const mode = el("select", { id: "brain-mode" }, ...MODES.map(([v, t]) => el("option", { value: v }, t)));
  const k = el("input", { id: "brain-k", type: "number", min: 1, max: 100, value: 10, inputmode: "numeric" });
  const type = el("select", { id: "brain-type" }, el("option", { value: "" }, "all types"));
  const since = el("input", { id: "brain-since", type: "date" });
  const until = el("input", { id: "brain-until", type: "date" });
  const closed = el("input", { id: "brain-closed", type: "checkbox" });
  const search = el("button", { id: "brain-search", type: "submit" }, "Search");
  const clear = el("button", { id: "brain-clear", type: "button", class: "small" }, "Browse newest");
  const form = el(
    "form",
    { id: "brain-search-form", class: "brain-search", role: "search", "aria-label": "Search memories", novalidate: true },
    field("Query", query, "grow"),
    field("Mode", mode),
    field("Results (k)", k, "narrow"),
    field("Type", type),
    field("Since", since),
    field("Until", until),
    el("div", { class: "brain-field check" }, closed, el("label", { for: "brain-closed" }, "include superseded")),
    el("div", { class: "brain-actions" }, search, clear),
  );
  const summary = el("p", { id: "brain-results-summary", class: "help", role: "status", "aria-live": "polite" });
  const error = el("p", { id: "brain-search-error", class: "error", role: "alert", hidden: true });
  const list = el("ol", { id: "brain-results", class: "brain-results", "aria-label": "Memories" });
  const prev = el("button", { id: "brain-prev", type: "button", class: "small" }, "← Newer");
  const next = el("button", { id: "brain-next", type: "button", class: "small" }, "Older →");
  const pageInfo = el("span", { id: "brain-page", class: "help" });
  const pager = el("nav", { class: "brain-pager", "aria-label": "Memory pages", hidden: true }, prev, pageInfo, next);
  const remember = rememberForm(context);
  const types = el("datalist", { id: "brain-known-types" });
  const node = el(
    "section",
    { class: "card brain-memories", "aria-labelledby": "brain-memories-heading" },
    el("h3", { id: "brain-memories-heading" }, "Memories"),
    form,
    error,
    summary,
    list,
    pager,
    remember.node,
    types,
  );

  function filters() {
    const out = {};
    if (type.value) out.type = type.value;
    const from = dayEdge(since.value);
    const to = dayEdge(until.value, true);
    if (from !== null) out.since = from;
    if (to !== null) out.until = to;
    if (closed.checked) out.include_closed = true;
    if (from !== null && to !== null && from > to) throw new Error("“Since” is after “Until”");
    return out;
  }

  async function runSearch(fresh) {
    const flt = filters();
    const count = Math.min(100, Math.max(1, Number.parseInt(k.value, 10) || 10));
    k.value = count;
    const { memories } = await bus.call("recall", {
      persona: context.persona(), query: state.query, k: count, filters: flt, mode: mode.value,
    });
    if (!fresh()) return;
    list.replaceChildren(...memories.map((m) => memoryItem(m, true)));
    pager.hidden = true;
    summary.textContent = memories.length
      ? `${memories.length} ${memories.length === 1 ? "memory" : "memories"} for “${state.query}” (${mode.value}), best first.`
      : `Nothing recalled for “${state.query}”.`;
  }

  async function runBrowse(fresh) {
    const flt = filters();
    const params = {
      type: flt.type ?? null, since: flt.since ?? null, until: flt.until ?? null, closed: flt.include_closed ? 1 : 0,
    };
    const [{ rows }, counted] = await Promise.all([
      bus.call("brain_query", { persona: context.persona(), sql: BROWSE_SQL, params: { ...params, limit: PAGE, offset: state.page * PAGE } }),
      bus.call("brain_query", { persona: context.persona(), sql: COUNT_SQL, params }),
    ]);
    if (!fresh()) return;
    state.total = counted.rows[0]?.n ?? 0;
    const pages = Math.max(1, Math.ceil(state.total / PAGE));
    list.replaceChildren(...rows.map((m) => memoryItem(m, false)));
    pager.hidden = state.total <= PAGE;
    pageInfo.textContent = `page ${state.page + 1} of ${pages}`;
    prev.disabled = state.page === 0;
    next.disabled = state.page + 1 >= pages;
    summary.textContent = state.total
      ? `Newest memories: ${state.page * PAGE + 1}–${state.page * PAGE + rows.length} of ${state.total}.`
      : "No memories match.";
  }

  async function loadTypes(seq) {
    const { rows } = await bus.call("brain_query", { persona: context.persona(), sql: TYPES_SQL, params: [] });
    if (!context.fresh(seq)) return;
    const chosen = type.value;
    const names = rows.map((r) => r.type);
    if (chosen && !names.includes(chosen)) names.push(chosen);
    type.replaceChildren(
      el("option", { value: "" }, "all types"),
      ...names.map((name) => {
        const n = rows.find((r) => r.type === name)?.n ?? 0;
        return el("option", { value: name, selected: name === chosen }, `${name} (${n})`);
      }),
    );
    const known = new Set(["fact", "note", "preference", "learning_experience", ...names]);
    types.replaceChildren(...[...known].map((name) => el("option", { value: name })));
  }

  /** Run the current mode (search with a query, browse without), showing any error on the card. */
  async function run(seq = context.currentSeq()) {
    const req = ++state.req;
    const fresh = () => context.fresh(seq) && req === state.req;
    showError(error, null);
    list.setAttribute("aria-busy", "true");
    node.dataset.state = "loading";
    try {
      if (state.mode === "search") await runSearch(fresh);
      else await runBrowse(fresh);
      if (fresh()) node.dataset.state = state.mode;
    } catch (err) {
      if (!fresh()) return;
      showError(error, err);
      summary.textContent = "";
      node.dataset.state = "error";
    } finally {
      list.removeAttribute("aria-busy");
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.query = query.value.trim();
    state.mode = state.query ? "search" : "browse";
    state.page = 0;
    void run();
  });
  clear.addEventListener("click", () => {
    query.value = "";
    state.query = "";
    state.mode = "browse";
    state.page = 0;
    void run();
  });
  // A filter applies at once, to whichever list is shown.
  for (const control of [type, since, until, closed]) {
    control.addEventListener("change", () => {
      state.page = 0;
      void run();
    });
  }
  prev.addEventListener("click", () => {
    state.page = Math.max(0, state.page - 1);
    void run();
  });
  next.addEventListener("click", () => {
    state.page += 1;
    void run();
  });

  return {
    node,
    reloads: ["memories"],
    clear() {
      list.replaceChildren();
      summary.textContent = "";
      pager.hidden = true;
    },
    async load(seq) {
      // Another persona starts on the first page; a reload keeps the query and page.
      if (state.persona !== context.persona()) state.page = 0;
      state.persona = context.persona();
      await loadTypes(seq);
      await run(seq); // its errors show on this card
    },
  };
}

/** The "Remember" form: type, content, importance, key → remember (source user:<name>). */
function rememberForm(context) {
  const type = el("input", {
    id: "brain-new-type", type: "text", required: true, pattern: TYPE_PATTERN, value: "note", maxlength: 64,
    list: "brain-known-types", autocomplete: "off", "aria-describedby": "brain-new-type-help",
  });
  const content = el("textarea", { id: "brain-new-content", required: true, rows: 2, maxlength: 100000 });
  const importance = el("input", { id: "brain-new-importance", type: "number", min: 0, max: 1, step: 0.05, value: 0.5 });
  const key = el("input", {
    id: "brain-new-key", type: "text", maxlength: 500, autocomplete: "off", placeholder: "optional, e.g. user.city",
    "aria-describedby": "brain-new-key-help",
  });
  const submit = el("button", { id: "brain-new-submit", type: "submit" }, "Remember");
  const status = el("p", { id: "brain-new-status", class: "help", role: "status", "aria-live": "polite" });
  const error = el("p", { id: "brain-new-error", class: "error", role: "alert", hidden: true });
  const form = el(
    "form",
    { id: "brain-remember", class: "brain-remember", novalidate: true, autocomplete: "off", "aria-labelledby": "brain-remember-heading" },
    el("h4", { id: "brain-remember-heading" }, "Remember something"),
    el(
      "div",
      { class: "brain-remember-fields" },
      el(
        "div",
        { class: "brain-field" },
        el("label", { for: "brain-new-type" }, "Memory type"),
        type,
        el("small", { id: "brain-new-type-help", class: "help" }, "lowercase, e.g. note, fact"),
      ),
      field("Importance (0–1)", importance, "narrow"),
      el(
        "div",
        { class: "brain-field" },
        el("label", { for: "brain-new-key" }, "Key"),
        key,
        el("small", { id: "brain-new-key-help", class: "help" }, "a fact's subject: a new one supersedes the old"),
      ),
    ),
    field("Content", content, "grow"),
    el("div", { class: "brain-actions" }, submit),
    status,
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    status.textContent = "";
    const value = Number(importance.value);
    if (!type.checkValidity()) return showError(error, { message: "Type: a lowercase identifier such as note or fact" });
    if (!content.value.trim()) return showError(error, { message: "Content: say what to remember" });
    if (!(value >= 0 && value <= 1)) return showError(error, { message: "Importance: a number from 0 to 1" });
    const memory = { type: type.value, content: content.value.trim(), importance: value, source: `user:${bus.name}` };
    if (key.value.trim()) memory.key = key.value.trim();
    submit.disabled = true;
    try {
      const result = await bus.call("remember", { persona: context.persona(), memory });
      const superseded = result.closed.length ? `; it superseded ${result.closed.length} older fact(s)` : "";
      status.textContent = result.created ? `Remembered (${result.id})${superseded}.` : `Already remembered (${result.id}).`;
      form.dataset.lastId = result.id;
      content.value = "";
      key.value = "";
      await context.reload("memories");
    } catch (err) {
      showError(error, { message: errorLine(err) });
    } finally {
      submit.disabled = false;
    }
  });
  return { node: form };
}
