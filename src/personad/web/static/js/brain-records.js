// The brain view's record cards: facts by key (each version with its validity; superseded ones marked, the
// current one highlighted), skills (effectiveness, uses), goals (status, progress, priority) and emotions.

import { bus } from "./state.js";
import { el, formatTime, percent, showError, signed } from "./util.js";

// The 50 keys that changed last, keys with more than one version first; every version of each, newest first.
const FACTS_SQL = `WITH keys AS (
  SELECT type, key, count(*) AS versions, max(valid_from) AS changed FROM memories
  WHERE key IS NOT NULL GROUP BY type, key ORDER BY versions > 1 DESC, changed DESC LIMIT 50
)
SELECT m.id, m.type, m.key, m.content, m.source, m.valid_from, m.valid_to, keys.versions
FROM memories AS m JOIN keys ON m.type = keys.type AND m.key = keys.key
ORDER BY keys.versions > 1 DESC, keys.changed DESC, m.type, m.key, m.valid_from DESC, m.seq DESC`;
const SKILLS_SQL =
  "SELECT skill_id, lora_hash, effectiveness, acquired_at, usage_count, usage_scenarios FROM skills" +
  " ORDER BY effectiveness DESC, usage_count DESC, skill_id";
const EMOTIONS = 20;

function card(id, title, help) {
  const body = el("div", { id: `${id}-body`, class: "brain-card-body" });
  const error = el("p", { id: `${id}-error`, class: "error", role: "alert", hidden: true });
  const node = el(
    "section",
    { id, class: "card brain-card", "aria-labelledby": `${id}-heading` },
    el("h3", { id: `${id}-heading` }, title),
    help ? el("p", { class: "help" }, help) : null,
    body,
    error,
  );
  return { node, body, error };
}

function empty(text) {
  return el("p", { class: "placeholder" }, text);
}

function time(ts) {
  return el("time", { datetime: new Date(ts * 1000).toISOString() }, formatTime(ts));
}

/** A 0..1 value as a labelled bar. */
function bar(value, label) {
  return el("progress", { max: 1, value: Math.max(0, Math.min(1, Number(value) || 0)), "aria-label": label, title: percent(value) });
}

function renderFacts(body, rows) {
  if (rows.length === 0) return body.replaceChildren(empty("No facts with a key yet (remember one with a Key)."));
  const groups = new Map();
  for (const row of rows) {
    const id = `${row.type}\u0000${row.key}`;
    if (!groups.has(id)) groups.set(id, { type: row.type, key: row.key, versions: [] });
    groups.get(id).versions.push(row);
  }
  body.replaceChildren(
    ...[...groups.values()].map((group) =>
      el(
        "article",
        { class: "brain-fact", dataset: { key: group.key, type: group.type } },
        el(
          "h4",
          {},
          el("span", { class: "brain-key" }, group.key),
          " ",
          el("span", { class: "badge brain-type" }, group.type),
          group.versions.length > 1 ? el("span", { class: "help" }, ` ${group.versions.length} versions`) : null,
        ),
        el(
          "ol",
          { class: "brain-fact-versions", "aria-label": `versions of ${group.key}` },
          ...group.versions.map((v) => {
            const current = v.valid_to === null;
            return el(
              "li",
              { class: current ? "current" : "superseded", dataset: { id: v.id, state: current ? "current" : "superseded" } },
              el("span", { class: `badge ${current ? "current" : "superseded"}` }, current ? "current" : "superseded"),
              el("span", { class: "brain-fact-content" }, v.content),
              el(
                "span",
                { class: "brain-fact-validity help" },
                "valid from ",
                time(v.valid_from),
                current ? " — now" : " to ",
                current ? null : time(v.valid_to),
                ` · ${v.source}`,
              ),
            );
          }),
        ),
      ),
    ),
  );
}

function renderSkills(body, rows) {
  if (rows.length === 0) return body.replaceChildren(empty("No skills yet: the Academy adds one when a persona graduates."));
  body.replaceChildren(
    el(
      "table",
      { class: "data-table brain-skills" },
      el("thead", {}, el("tr", {}, el("th", {}, "skill"), el("th", {}, "effectiveness"), el("th", { class: "num" }, "uses"), el("th", {}, "acquired"))),
      el(
        "tbody",
        {},
        ...rows.map((skill) => {
          let scenarios = [];
          try {
            scenarios = JSON.parse(skill.usage_scenarios || "[]");
          } catch {
            scenarios = [];
          }
          return el(
            "tr",
            { dataset: { skill: skill.skill_id } },
            el(
              "td",
              {},
              el("span", { class: "brain-skill-name" }, skill.skill_id),
              scenarios.length ? el("small", { class: "help brain-block" }, scenarios.join(", ")) : null,
              skill.lora_hash ? el("small", { class: "help brain-block brain-hash", title: skill.lora_hash }, `adapter ${skill.lora_hash.slice(0, 12)}…`) : null,
            ),
            el("td", { class: "brain-effectiveness" }, bar(skill.effectiveness, `effectiveness of ${skill.skill_id}`), ` ${percent(skill.effectiveness)}`),
            el("td", { class: "num brain-uses" }, String(skill.usage_count)),
            el("td", {}, time(skill.acquired_at)),
          );
        }),
      ),
    ),
  );
}

function renderGoals(body, goals) {
  if (goals.length === 0) return body.replaceChildren(empty("No goals yet."));
  body.replaceChildren(
    el(
      "ul",
      { class: "brain-goals" },
      ...goals.map((goal) =>
        el(
          "li",
          { class: "brain-goal", dataset: { id: goal.id, status: goal.status } },
          el("span", { class: "brain-goal-description" }, goal.description),
          el(
            "span",
            { class: "brain-goal-meta" },
            el("span", { class: `badge status-${goal.status}` }, goal.status),
            el("span", { class: "help" }, `priority ${Number(goal.priority).toFixed(2)}`),
          ),
          el(
            "span",
            { class: "brain-goal-progress" },
            bar(goal.progress, `progress of ${goal.description}`),
            el("span", { class: "help" }, ` ${Math.round(100 * goal.progress)}%`),
          ),
        ),
      ),
    ),
  );
}

function renderEmotions(body, emotions) {
  if (emotions.length === 0) return body.replaceChildren(empty("No emotions recorded yet."));
  body.replaceChildren(
    el(
      "ol",
      { class: "brain-emotions" },
      ...emotions.map((e) =>
        el(
          "li",
          { class: "brain-emotion", dataset: { id: e.id, mood: e.valence > 0.1 ? "positive" : e.valence < -0.1 ? "negative" : "neutral" } },
          el("span", { class: "brain-emotion-label" }, e.label),
          el("span", { class: "brain-emotion-values" }, `valence ${signed(e.valence)} · arousal ${Number(e.arousal).toFixed(2)}`),
          e.cause ? el("span", { class: "brain-emotion-cause" }, e.cause) : null,
          el("span", { class: "help" }, time(e.timestamp)),
        ),
      ),
    ),
  );
}

export function createRecords(context) {
  const facts = card("brain-facts", "Facts by key", "A newer fact with the same key supersedes the older one, which is kept.");
  const skills = card("brain-skills", "Skills");
  const goals = card("brain-goals", "Goals");
  const emotions = card("brain-emotions", "Emotions", `The latest ${EMOTIONS}, newest first.`);
  const node = el("div", { class: "cards brain-records" }, facts.node, skills.node, goals.node, emotions.node);
  const persona = () => context.persona();
  const parts = [
    [facts, () => bus.call("brain_query", { persona: persona(), sql: FACTS_SQL, params: [] }).then((r) => r.rows), renderFacts],
    [skills, () => bus.call("brain_query", { persona: persona(), sql: SKILLS_SQL, params: [] }).then((r) => r.rows), renderSkills],
    [goals, () => bus.call("goal_list", { persona: persona() }).then((r) => r.goals), renderGoals],
    [emotions, () => bus.call("persona_emotions", { persona: persona(), limit: EMOTIONS }).then((r) => r.emotions), renderEmotions],
  ];
  return {
    node,
    reloads: ["memories"],
    clear() {
      for (const [part] of parts) part.body.replaceChildren();
    },
    async load(seq) {
      const results = await Promise.allSettled(parts.map(([, fetch]) => fetch()));
      if (!context.fresh(seq)) return;
      let failure = null;
      results.forEach((result, i) => {
        const [part, , render] = parts[i];
        showError(part.error, result.status === "rejected" ? result.reason : null);
        if (result.status === "fulfilled") render(part.body, result.value);
        else {
          part.body.replaceChildren();
          failure ??= result.reason;
        }
      });
      if (failure) throw failure;
    },
  };
}
