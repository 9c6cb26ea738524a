// A form generated from a command's pydantic params JSON schema: fields, reading values, field errors.

import { $, el, LONG_TEXT_PARAMS } from "./util.js";

export function resolveSchema(schema, root, depth = 0) {
  if (!schema || typeof schema !== "object") return {};
  if (depth > 32) return schema; // a cyclic $ref: stop resolving
  let out = schema;
  if (typeof out.$ref === "string") {
    const { $ref, ...rest } = out;
    out = { ...resolveSchema(lookupRef(root, $ref), root, depth + 1), ...rest };
  }
  if (Array.isArray(out.allOf) && out.allOf.length === 1) {
    const { allOf, ...rest } = out;
    out = { ...resolveSchema(allOf[0], root, depth + 1), ...rest };
  }
  return out;
}

export function lookupRef(root, ref) {
  if (!ref.startsWith("#/")) return {};
  let node = root;
  for (const part of ref.slice(2).split("/")) {
    node = node?.[part.replaceAll("~1", "/").replaceAll("~0", "~")];
    if (node === undefined) return {};
  }
  return node;
}

export function schemaFields(schema) {
  const top = resolveSchema(schema, schema);
  const required = new Set(top.required || []);
  return Object.entries(top.properties || {}).map(([name, property]) =>
    fieldSpec(name, property, schema, required.has(name)),
  );
}

/** Reduce one property schema to what the form needs: kind, options, default, help. */
export function fieldSpec(name, property, root, required) {
  let schema = resolveSchema(property, root);
  let nullable = false;
  const union = schema.anyOf || schema.oneOf;
  if (Array.isArray(union)) {
    const branches = union.map((branch) => resolveSchema(branch, root));
    const nonNull = branches.filter((branch) => branch.type !== "null");
    nullable = nonNull.length < branches.length;
    const { anyOf, oneOf, ...outer } = schema;
    schema = nonNull.length === 1 ? { ...nonNull[0], ...outer } : { ...outer, type: undefined };
  }
  let type = schema.type;
  if (Array.isArray(type)) {
    nullable ||= type.includes("null");
    const rest = type.filter((t) => t !== "null");
    type = rest.length === 1 ? rest[0] : undefined;
  }
  let kind = "json";
  let options;
  if (Array.isArray(schema.enum)) {
    kind = "enum";
    options = schema.enum;
  } else if ("const" in schema) {
    kind = "enum";
    options = [schema.const];
  } else if (["string", "integer", "number", "boolean"].includes(type)) {
    kind = type;
  }
  return {
    name,
    required,
    nullable,
    kind,
    options,
    schema,
    hasDefault: "default" in schema && schema.default !== null,
    default: schema.default,
    description: schema.description || "",
  };
}

export function constraintsText(spec) {
  const s = spec.schema;
  const parts = [];
  if (s.minimum !== undefined) parts.push(`≥ ${s.minimum}`);
  if (s.exclusiveMinimum !== undefined) parts.push(`> ${s.exclusiveMinimum}`);
  if (s.maximum !== undefined) parts.push(`≤ ${s.maximum}`);
  if (s.exclusiveMaximum !== undefined) parts.push(`< ${s.exclusiveMaximum}`);
  if (s.minLength !== undefined && s.minLength > 1) parts.push(`at least ${s.minLength} characters`);
  if (s.maxLength !== undefined) parts.push(`at most ${s.maxLength} characters`);
  if (s.pattern !== undefined) parts.push(`pattern ${s.pattern}`);
  if (spec.kind === "json") parts.push("JSON");
  return parts.join(", ");
}

/** One field's label, control, help and error slot; the control's id is `${prefix}-${name}`. */
export function renderField(spec, prefix = "param") {
  const id = `${prefix}-${spec.name}`;
  const helpId = `${id}-help`;
  const errorId = `${id}-error`;
  const help = [spec.description, constraintsText(spec)].filter(Boolean).join(" — ");
  const common = {
    id,
    name: spec.name,
    "aria-describedby": `${help ? `${helpId} ` : ""}${errorId}`,
    "aria-required": spec.required ? "true" : null,
  };
  const marker = spec.required
    ? el("abbr", { class: "required", title: "required" }, "*")
    : el("span", { class: "optional" }, "optional");
  const label = el("label", { for: id }, el("code", {}, spec.name), " ", marker);
  let control;
  let inline = false;
  switch (spec.kind) {
    case "boolean":
      if (spec.required || spec.hasDefault) {
        control = el("input", { ...common, type: "checkbox", checked: spec.default === true });
        inline = true;
      } else {
        control = el(
          "select",
          common,
          el("option", { value: "" }, "—"),
          el("option", { value: "true" }, "true"),
          el("option", { value: "false" }, "false"),
        );
      }
      break;
    case "enum": {
      const blank = !(spec.required && spec.hasDefault) ? el("option", { value: "" }, "—") : null;
      const defaultKey = JSON.stringify(spec.default);
      control = el(
        "select",
        common,
        blank,
        ...spec.options.map((value, index) =>
          el(
            "option",
            { value: String(index), selected: spec.hasDefault && JSON.stringify(value) === defaultKey },
            typeof value === "string" ? value : JSON.stringify(value),
          ),
        ),
      );
      break;
    }
    case "integer":
    case "number": {
      const s = spec.schema;
      control = el("input", {
        ...common,
        type: "number",
        inputmode: spec.kind === "integer" ? "numeric" : "decimal",
        step: spec.kind === "integer" ? "1" : "any",
        min: s.minimum ?? s.exclusiveMinimum,
        max: s.maximum ?? s.exclusiveMaximum,
        value: typeof spec.default === "number" ? String(spec.default) : null,
        placeholder: spec.nullable ? "blank = null" : null,
      });
      break;
    }
    case "string": {
      const long = LONG_TEXT_PARAMS.test(spec.name) || spec.schema.format === "textarea";
      const placeholder = spec.nullable || !spec.required ? "blank = leave out" : null;
      if (long) {
        control = el("textarea", { ...common, rows: "4", spellcheck: "false", placeholder });
        if (typeof spec.default === "string") control.value = spec.default;
      } else {
        control = el("input", { ...common, type: "text", spellcheck: "false", placeholder });
        if (typeof spec.default === "string") control.value = spec.default;
      }
      break;
    }
    default:
      control = el("textarea", {
        ...common,
        rows: "3",
        class: "json",
        spellcheck: "false",
        placeholder: "JSON, blank = leave out",
      });
      if (spec.hasDefault) control.value = JSON.stringify(spec.default, null, 2);
  }
  return el(
    "div",
    { class: `field field-${spec.kind}${inline ? " inline" : ""}`, dataset: { param: spec.name } },
    inline ? control : label,
    inline ? label : control,
    help ? el("small", { id: helpId, class: "help" }, help) : null,
    el("small", { id: errorId, class: "field-error", hidden: true }),
  );
}

/** Read the form into params: blank optional fields are left out, numbers and booleans converted. */
export function collectParams(fields, prefix = "param") {
  const params = {};
  const problems = [];
  for (const spec of fields) {
    const control = $(`${prefix}-${spec.name}`);
    const raw = control.value;
    switch (spec.kind) {
      case "boolean":
        if (control.type === "checkbox") params[spec.name] = control.checked;
        else if (raw !== "") params[spec.name] = raw === "true";
        break;
      case "enum":
        if (raw !== "") params[spec.name] = spec.options[Number(raw)];
        break;
      case "integer":
      case "number": {
        const text = raw.trim();
        if (text === "") {
          if (control.validity?.badInput) problems.push({ name: spec.name, message: "is not a number" });
          break;
        }
        const value = Number(text);
        if (!Number.isFinite(value)) problems.push({ name: spec.name, message: "is not a number" });
        else if (spec.kind === "integer" && !Number.isInteger(value)) {
          problems.push({ name: spec.name, message: "must be a whole number" });
        } else params[spec.name] = value;
        break;
      }
      case "string":
        if (raw !== "" || spec.required) params[spec.name] = raw;
        break;
      default: {
        const text = raw.trim();
        if (text === "") break;
        try {
          params[spec.name] = JSON.parse(text);
        } catch (error) {
          problems.push({ name: spec.name, message: `is not valid JSON (${error.message})` });
        }
      }
    }
  }
  return { params, problems };
}

export function showFieldErrors(problems, container = $("command-fields"), prefix = "param") {
  for (const node of container.querySelectorAll(".field-error")) {
    node.hidden = true;
    node.textContent = "";
  }
  for (const node of container.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  for (const { name, message } of problems) {
    const control = $(`${prefix}-${name}`);
    const slot = $(`${prefix}-${name}-error`);
    if (!control || !slot) continue;
    control.setAttribute("aria-invalid", "true");
    slot.hidden = false;
    slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
  }
}
