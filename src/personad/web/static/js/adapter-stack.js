// The adapters view's stack card (js/adapters-view.js): pick a persona, see its current adapter stack
// (persona_show's lora_adapters and lora_scales), unload one or all (lora_unload), and build a new stack from
// the tree's "+ stack" buttons — reorder, set scales — then apply it (lora_load_stack). The daemon checks the
// stack against the registry: adapter_not_found or adapter_parent_missing come back as structured errors.

import { showBusError } from "./adapter-util.js";
import { bus, ui } from "./state.js";
import { el } from "./util.js";

export class StackPanel {
  /** onSelect(name): show an adapter in the tree. */
  constructor({ onSelect }) {
    this.onSelect = onSelect;
    this.persona = null; // the chosen persona's id
    this.current = null; // its persona_show result
    this.picked = []; // [{name, scale}] in application order
    this.busy = false;
    this.seq = 0;
    this.node = this.build();
  }

  build() {
    this.select = el("select", {
      id: "adapter-stack-persona",
      onchange: () => {
        this.persona = this.select.value || null;
        void this.loadCurrent();
      },
    });
    this.currentList = el("ol", { id: "adapter-stack-current", class: "stack-list", "aria-label": "Current stack" });
    this.unloadAll = el("button", {
      type: "button",
      id: "adapter-stack-unload-all",
      class: "small",
      text: "Unload all",
      onclick: () => void this.unload(null),
    });
    this.pickedList = el("ol", { id: "adapter-stack-picked", class: "stack-list", "aria-label": "New stack" });
    this.apply = el("button", {
      type: "button",
      id: "adapter-stack-apply",
      text: "Apply stack",
      onclick: () => void this.applyStack(),
    });
    this.copy = el("button", {
      type: "button",
      id: "adapter-stack-copy",
      class: "small",
      text: "Start from current",
      title: "Copy the persona's current stack into the new stack",
      onclick: () => {
        const stack = this.current?.lora_adapters ?? [];
        const scales = this.current?.lora_scales ?? {};
        this.picked = stack.map((name) => ({ name, scale: scales[name] ?? 1 }));
        this.renderPicked();
      },
    });
    this.clear = el("button", {
      type: "button",
      id: "adapter-stack-clear",
      class: "small",
      text: "Clear",
      onclick: () => {
        this.picked = [];
        this.renderPicked();
      },
    });
    this.result = el("p", { id: "adapter-stack-result", class: "help", role: "status", "aria-live": "polite" });
    this.error = el("div", { id: "adapter-stack-error", class: "error", role: "alert", hidden: true });
    const card = el(
      "section",
      { class: "card adapter-stack", id: "adapter-stack", "aria-labelledby": "adapter-stack-title" },
      el("h3", { id: "adapter-stack-title", text: "Stack on a persona" }),
      el("label", { for: "adapter-stack-persona", text: "Persona" }),
      el(
        "div",
        { class: "stack-persona" },
        this.select,
        el("button", {
          type: "button",
          class: "small",
          id: "adapter-stack-refresh",
          "aria-label": "Refresh the personas",
          title: "Refresh the personas",
          text: "↻",
          onclick: () => void this.refreshPersonas(),
        }),
      ),
      el("div", { class: "stack-head" }, el("h4", { text: "Current stack" }), this.unloadAll),
      this.currentList,
      el("div", { class: "stack-head" }, el("h4", { text: "New stack" }), this.copy, this.clear),
      el("p", { class: "help", text: "Applied in order, after each adapter's parents. Pick adapters with “+ stack”." }),
      this.pickedList,
      el("div", { class: "stack-actions" }, this.apply),
      this.result,
      this.error,
    );
    this.renderCurrent();
    this.renderPicked();
    return card;
  }

  /** Fill the persona select from persona_list (ui.personas until it answers). */
  async refreshPersonas() {
    this.fillPersonas(ui.personas ?? []);
    if (bus.state !== "open") return;
    try {
      const { personas } = await bus.call("persona_list", {});
      this.fillPersonas(personas);
      await this.loadCurrent();
    } catch (error) {
      showBusError(this.error, error);
    }
  }

  fillPersonas(personas) {
    const ids = personas.map((p) => p.id);
    if (!this.persona || !ids.includes(this.persona)) this.persona = ids[0] ?? null;
    const options = personas.map((p) =>
      el(
        "option",
        { value: p.id, selected: p.id === this.persona },
        p.name && p.name !== p.id ? `${p.name} (@${p.id})` : p.id,
      ),
    );
    if (options.length === 0) options.push(el("option", { value: "", text: "no personas" }));
    this.select.replaceChildren(...options);
    this.select.value = this.persona ?? "";
    this.updateButtons();
  }

  async loadCurrent() {
    const persona = this.persona;
    const seq = ++this.seq;
    if (!persona || bus.state !== "open") {
      this.current = null;
      this.renderCurrent();
      return;
    }
    try {
      const shown = await bus.call("persona_show", { persona });
      if (seq !== this.seq) return;
      this.current = shown;
      this.renderCurrent();
    } catch (error) {
      if (seq === this.seq) showBusError(this.error, error);
    }
  }

  renderCurrent() {
    const stack = this.current?.lora_adapters ?? [];
    const scales = this.current?.lora_scales ?? {};
    this.currentList.dataset.persona = this.current?.id ?? "";
    if (stack.length === 0) {
      this.currentList.replaceChildren(
        el("li", { class: "placeholder", text: this.current ? "no adapters: the base model" : "choose a persona" }),
      );
    } else {
      this.currentList.replaceChildren(
        ...stack.map((name) =>
          el(
            "li",
            { dataset: { name } },
            el("button", {
              type: "button",
              class: "link stack-name",
              title: `Show ${name}`,
              text: name,
              onclick: () => this.onSelect(name),
            }),
            scales[name] !== undefined ? el("span", { class: "stack-scale", text: `×${scales[name]}` }) : null,
            el("button", {
              type: "button",
              class: "small stack-unload",
              "aria-label": `Unload ${name}`,
              text: "Unload",
              onclick: () => void this.unload([name]),
            }),
          ),
        ),
      );
    }
    this.updateButtons();
  }

  /** Add an adapter to the new stack (from the tree). */
  add(name) {
    if (!this.picked.some((p) => p.name === name)) this.picked.push({ name, scale: 1 });
    this.renderPicked();
    this.pickedList
      .querySelector(`li[data-name="${CSS.escape(name)}"] .stack-scale-input`)
      ?.scrollIntoView({ block: "nearest" });
  }

  move(index, by) {
    const to = index + by;
    if (to < 0 || to >= this.picked.length) return;
    const [item] = this.picked.splice(index, 1);
    this.picked.splice(to, 0, item);
    this.renderPicked();
    this.pickedList.children[to]?.querySelector(by < 0 ? ".stack-up" : ".stack-down")?.focus();
  }

  renderPicked() {
    if (this.picked.length === 0) {
      this.pickedList.replaceChildren(el("li", { class: "placeholder", text: "empty" }));
    } else {
      this.pickedList.replaceChildren(
        ...this.picked.map((item, index) => {
          const scale = el("input", {
            type: "number",
            class: "stack-scale-input",
            min: -4,
            max: 4,
            step: 0.1,
            value: item.scale,
            "aria-label": `Scale of ${item.name}`,
            title: "scale",
            onchange: () => {
              const value = Number(scale.value);
              item.scale = Number.isFinite(value) ? value : 1;
            },
          });
          return el(
            "li",
            { dataset: { name: item.name } },
            el("span", { class: "stack-name", text: item.name }),
            scale,
            el("button", {
              type: "button",
              class: "small stack-up",
              "aria-label": `Move ${item.name} up`,
              title: "Move up",
              text: "↑",
              disabled: index === 0,
              onclick: () => this.move(index, -1),
            }),
            el("button", {
              type: "button",
              class: "small stack-down",
              "aria-label": `Move ${item.name} down`,
              title: "Move down",
              text: "↓",
              disabled: index === this.picked.length - 1,
              onclick: () => this.move(index, 1),
            }),
            el("button", {
              type: "button",
              class: "small stack-remove",
              "aria-label": `Remove ${item.name} from the new stack`,
              title: "Remove",
              text: "✕",
              onclick: () => {
                this.picked.splice(index, 1);
                this.renderPicked();
              },
            }),
          );
        }),
      );
    }
    this.updateButtons();
  }

  updateButtons() {
    const ready = bus.state === "open" && this.persona !== null && !this.busy;
    this.apply.disabled = !ready || this.picked.length === 0;
    this.unloadAll.disabled = !ready || !(this.current?.lora_adapters?.length > 0);
    this.copy.disabled = !(this.current?.lora_adapters?.length > 0);
    this.clear.disabled = this.picked.length === 0;
    this.select.disabled = bus.state !== "open" || this.select.options.length === 0 || !this.select.value;
  }

  async run(command, params, done) {
    this.busy = true;
    this.updateButtons();
    showBusError(this.error, null);
    this.result.textContent = "";
    try {
      const result = await bus.call(command, params);
      done(result);
    } catch (error) {
      showBusError(this.error, error);
    } finally {
      this.busy = false;
      await this.loadCurrent();
    }
  }

  applyStack() {
    const adapters = this.picked.map((p) => (p.scale === 1 ? p.name : { name: p.name, scale: p.scale }));
    return this.run("lora_load_stack", { persona: this.persona, adapters }, (result) => {
      this.result.textContent = `Applied to @${result.persona}: ${result.resolved.join(" → ")}`;
    });
  }

  unload(names) {
    const params = { persona: this.persona };
    if (names) params.adapters = names;
    return this.run("lora_unload", params, (result) => {
      this.result.textContent = result.adapters.length
        ? `@${result.persona} now runs ${result.adapters.join(", ")}`
        : `@${result.persona} now runs the base model (no adapters)`;
    });
  }
}
