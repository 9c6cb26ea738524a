// Views: the tabs in the top bar and the hash routes they open — #/chat, #/personas[/<id>], #/adapters,
// #/brain[/<persona>], #/academy, #/jobs. Each view module registers itself with registerView(); the router
// shows one <main data-view="…"> at a time and tells its module which route arguments it was opened with.
// Other hashes (#graduation/<persona>, a dialog over any view) are left to their own modules.

const VIEW_HASH = /^#\/([a-z]+)(?:\/(.*))?$/;
const DEFAULT_VIEW = "chat";

const views = new Map(); // name → {show(args), hide()}
let current = null; // {name, args}

/** A view's module: show(args) runs each time its route is opened (args: the decoded path after its name),
 * hide() when another view is opened. Either may be omitted. */
export function registerView(name, handlers = {}) {
  views.set(name, handlers);
  if (current?.name === name) handlers.show?.(current.args); // registered after the route was read
}

/** The hash that opens a view: viewHash("brain", "ada") → "#/brain/ada". */
export function viewHash(name, ...args) {
  const rest = args.filter((a) => a !== undefined && a !== null && a !== "").map((a) => encodeURIComponent(a));
  return `#/${[name, ...rest].join("/")}`;
}

/** Open a view (adds a history entry, so Back returns to the last view). */
export function openView(name, ...args) {
  const hash = viewHash(name, ...args);
  if (location.hash === hash) route();
  else location.hash = hash;
}

export function currentView() {
  return current?.name ?? DEFAULT_VIEW;
}

/** The hash of the view shown now: where a dialog's close returns to. */
export function currentViewHash() {
  return current ? viewHash(current.name, ...current.args) : "";
}

function parse(hash) {
  const match = VIEW_HASH.exec(hash);
  if (!match) return null;
  const name = match[1];
  if (!document.querySelector(`main[data-view="${name}"]`)) return null;
  let args = [];
  try {
    args = match[2] ? match[2].split("/").map((a) => decodeURIComponent(a)) : [];
  } catch {
    args = [];
  }
  return { name, args };
}

function route() {
  const wanted = parse(location.hash) ?? (current ? null : { name: DEFAULT_VIEW, args: [] });
  if (wanted === null) return; // another module's hash (a dialog): keep the view shown
  const previous = current;
  current = wanted;
  for (const panel of document.querySelectorAll("main[data-view]")) {
    panel.hidden = panel.dataset.view !== wanted.name;
  }
  for (const tab of document.querySelectorAll("#view-tabs a[data-view]")) {
    if (tab.dataset.view === wanted.name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  document.body.dataset.view = wanted.name;
  if (previous && previous.name !== wanted.name) views.get(previous.name)?.hide?.();
  views.get(wanted.name)?.show?.(wanted.args);
}

window.addEventListener("hashchange", route);
route();
