// GopherGate's API explorer: reads the OpenAPI document and lists every operation by tag, with its parameters,
// request body, responses and schemas, and a form to try it (same-origin, with the dashboard's session cookie).
// Plain JavaScript served from the Python package: no build step, no request beyond the gateway.
"use strict";

(function () {
  const root = document.getElementById("docs");
  const specUrl = root.dataset.spec;
  const METHODS = ["get", "post", "put", "patch", "delete"];
  const MUTATING = new Set(["post", "put", "patch", "delete"]);
  let spec = null;
  let csrfToken = null;

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  function refName(ref) {
    return ref.split("/").pop();
  }

  function resolve(schema) {
    if (schema && schema.$ref) {
      const name = refName(schema.$ref);
      return ((spec.components || {}).schemas || {})[name] || {};
    }
    return schema || {};
  }

  function anchor(name) {
    return "schema-" + name.replace(/[^A-Za-z0-9_-]/g, "_");
  }

  // A one-line type: "string", "integer (int64)", "array of Key", "Key | null", "one of: a, b".
  function typeLabel(schema) {
    if (!schema || Object.keys(schema).length === 0) return "any";
    if (schema.$ref) return refName(schema.$ref);
    const union = schema.anyOf || schema.oneOf;
    if (union) return union.map(typeLabel).join(" | ");
    if (schema.allOf && schema.allOf.length === 1) return typeLabel(schema.allOf[0]);
    if (schema.enum) return "one of: " + schema.enum.map((v) => JSON.stringify(v)).join(", ");
    if (schema.const !== undefined) return JSON.stringify(schema.const);
    let type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || (schema.properties ? "object" : "any");
    if (type === "array") type = "array of " + typeLabel(schema.items);
    if (type === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object") {
      type = "map of " + typeLabel(schema.additionalProperties);
    }
    return schema.format ? `${type} (${schema.format})` : type;
  }

  function typeNode(schema) {
    if (schema && schema.$ref) return h("a", { class: "type", href: "#" + anchor(refName(schema.$ref)) }, refName(schema.$ref));
    const items = schema && schema.type === "array" && schema.items;
    if (items && items.$ref) {
      return h("span", { class: "type" }, "array of ", h("a", { href: "#" + anchor(refName(items.$ref)) }, refName(items.$ref)));
    }
    return h("span", { class: "type" }, typeLabel(schema));
  }

  // The object a schema describes (through a $ref, an array's items or a single-member union), if any.
  function objectOf(schema) {
    let s = resolve(schema);
    if (s.type === "array") s = resolve(s.items);
    const union = s.anyOf || s.oneOf || s.allOf;
    if (union) {
      const objects = union.map(resolve).filter((u) => u.properties);
      if (objects.length === 1) s = objects[0];
    }
    return s.properties ? s : null;
  }

  function constraints(schema) {
    const s = resolve(schema);
    const out = [];
    if (s.default !== undefined) out.push("default " + JSON.stringify(s.default));
    if (s.minimum !== undefined) out.push("min " + s.minimum);
    if (s.maximum !== undefined) out.push("max " + s.maximum);
    if (s.minLength !== undefined) out.push("min length " + s.minLength);
    if (s.maxLength !== undefined) out.push("max length " + s.maxLength);
    if (s.pattern !== undefined) out.push("pattern " + s.pattern);
    return out.length ? h("span", { class: "muted" }, " (" + out.join(", ") + ")") : null;
  }

  function properties(schema, depth, seen) {
    const obj = objectOf(schema);
    if (!obj) return null;
    const required = new Set(obj.required || []);
    return h(
      "ul",
      { class: "props" },
      Object.entries(obj.properties).map(([name, prop]) => {
        const key = prop.$ref || (prop.items && prop.items.$ref) || null;
        const nested = depth < 3 && !(key && seen.has(key)) ? properties(prop, depth + 1, key ? new Set([...seen, key]) : seen) : null;
        return h(
          "li",
          null,
          h("code", null, name),
          " ",
          typeNode(prop),
          required.has(name) ? h("span", { class: "req" }, " required") : null,
          constraints(prop),
          prop.description ? h("div", { class: "desc" }, prop.description) : null, // titles are the name again
          nested,
        );
      }),
    );
  }

  function schemaBlock(schema) {
    const key = schema && (schema.$ref || (schema.items && schema.items.$ref));
    return h("div", { class: "schema" }, typeNode(schema), properties(schema, 0, new Set(key ? [key] : [])));
  }

  // An example body for the try-it form, from the schema (defaults, examples, else placeholders).
  function example(schema, depth) {
    const s = resolve(schema);
    if (s.example !== undefined) return s.example;
    if (s.default !== undefined) return s.default;
    if (s.enum) return s.enum[0];
    const union = s.anyOf || s.oneOf;
    if (union) return example(union.find((u) => resolve(u).type !== "null") || union[0], depth);
    if (depth > 4) return null;
    if (s.properties) {
      const out = {};
      const required = new Set(s.required || []);
      for (const [name, prop] of Object.entries(s.properties)) {
        if (required.has(name) || depth === 0) out[name] = example(prop, depth + 1);
      }
      return out;
    }
    switch (s.type) {
      case "array": return [];
      case "integer": case "number": return 0;
      case "boolean": return false;
      case "string": return s.format === "date-time" ? new Date().toISOString() : "";
      default: return null;
    }
  }

  function parametersTable(params) {
    if (!params.length) return null;
    return h(
      "div",
      { class: "block" },
      h("h4", null, "Parameters"),
      h(
        "table",
        null,
        h("thead", null, h("tr", null, ["Name", "In", "Type", "Description"].map((t) => h("th", null, t)))),
        h(
          "tbody",
          null,
          params.map((p) =>
            h(
              "tr",
              null,
              h("td", null, h("code", null, p.name), p.required ? h("span", { class: "req" }, " required") : null),
              h("td", null, p.in),
              h("td", null, typeNode(p.schema || {}), constraints(p.schema || {})),
              h("td", null, p.description || (p.schema && p.schema.description) || ""),
            ),
          ),
        ),
      ),
    );
  }

  function requestBody(body) {
    if (!body) return null;
    const content = body.content || {};
    return h(
      "div",
      { class: "block" },
      h("h4", null, "Request body", body.required ? h("span", { class: "req" }, " required") : null),
      body.description ? h("p", null, body.description) : null,
      Object.entries(content).map(([type, media]) => h("div", null, h("div", { class: "muted" }, type), schemaBlock(media.schema || {}))),
    );
  }

  function responses(resps) {
    return h(
      "div",
      { class: "block" },
      h("h4", null, "Responses"),
      Object.entries(resps || {}).map(([code, resp]) => {
        const content = resp.content || {};
        const json = content["application/json"];
        const kind = code.startsWith("2") ? "ok" : code.startsWith("4") || code.startsWith("5") ? "err" : "muted";
        return h(
          "div",
          { class: "response" },
          h("span", { class: "code code-" + kind }, code),
          " ",
          resp.description || "",
          json && json.schema && Object.keys(json.schema).length ? schemaBlock(json.schema) : null,
        );
      }),
    );
  }

  async function csrf() {
    if (csrfToken) return csrfToken;
    try {
      const resp = await fetch("/api/auth/me", { credentials: "same-origin" });
      if (resp.ok) csrfToken = (await resp.json()).csrf_token || null;
    } catch (err) {
      // not logged in: the server answers the request itself with 401
    }
    return csrfToken;
  }

  function tryIt(method, path, op, params) {
    const inputs = {};
    const fields = params
      .filter((p) => p.in === "path" || p.in === "query")
      .map((p) => {
        const input = h("input", { name: p.name, placeholder: typeLabel(p.schema || {}), "aria-label": p.name });
        inputs[p.name] = { param: p, input };
        return h("label", null, h("span", null, p.name, p.required ? " *" : ""), input);
      });
    const content = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
    const body = content
      ? h("textarea", { rows: 6, spellcheck: "false", "aria-label": "request body" })
      : null;
    if (body) body.value = JSON.stringify(example(content.schema || {}, 0), null, 2);
    const out = h("pre", { class: "result", hidden: true, "data-testid": "try-result" });
    const send = async () => {
      let url = path;
      const query = new URLSearchParams();
      for (const { param, input } of Object.values(inputs)) {
        const value = input.value.trim();
        if (param.in === "path") url = url.replace("{" + param.name + "}", encodeURIComponent(value));
        else if (value !== "") query.append(param.name, value);
      }
      const qs = query.toString();
      const headers = { Accept: "application/json" };
      const init = { method: method.toUpperCase(), credentials: "same-origin", headers };
      if (body) {
        headers["Content-Type"] = "application/json";
        init.body = body.value;
      }
      if (MUTATING.has(method)) {
        const token = await csrf();
        if (token) headers["X-CSRF-Token"] = token;
      }
      out.hidden = false;
      out.textContent = "Sending…";
      try {
        const resp = await fetch(url + (qs ? "?" + qs : ""), init);
        const text = await resp.text();
        let shown = text;
        try {
          const parsed = JSON.parse(text);
          if (parsed && typeof parsed.csrf_token === "string") csrfToken = parsed.csrf_token;
          shown = JSON.stringify(parsed, null, 2);
        } catch (err) {
          // not JSON: shown as it is
        }
        out.textContent = `${resp.status} ${resp.statusText}\n\n${shown}`;
      } catch (err) {
        out.textContent = "Request failed: " + err;
      }
    };
    return h(
      "div",
      { class: "block try" },
      h("h4", null, "Try it"),
      h("p", { class: "muted" }, "Sent from this page with your dashboard session (log in on the dashboard first)."),
      h("div", { class: "fields" }, fields),
      body,
      h("button", { type: "button", onclick: send }, "Send ", method.toUpperCase(), " ", path),
      out,
    );
  }

  function operation(method, path, op, shared) {
    const params = [...shared, ...(op.parameters || [])];
    const details = h(
      "details",
      { class: "op", "data-testid": "operation", "data-method": method, "data-path": path, id: `op-${method}-${path}` },
      h(
        "summary",
        null,
        h("span", { class: "method method-" + method }, method.toUpperCase()),
        " ",
        h("code", { class: "path" }, path),
        " ",
        h("span", { class: "summary" }, op.summary || ""),
        op.deprecated ? h("span", { class: "muted" }, " (deprecated)") : null,
      ),
    );
    details.addEventListener("toggle", () => {
      if (!details.open || details.dataset.rendered) return;
      details.dataset.rendered = "true";
      details.append(
        h(
          "div",
          { class: "op-body" },
          op.description ? h("p", { class: "desc" }, op.description) : null,
          parametersTable(params.map((p) => (p.$ref ? resolve(p) : p))),
          requestBody(op.requestBody && op.requestBody.$ref ? resolve(op.requestBody) : op.requestBody),
          responses(op.responses),
          tryIt(method, path, op, params),
        ),
      );
    });
    return details;
  }

  function render() {
    const info = spec.info || {};
    const groups = new Map();
    let count = 0;
    for (const [path, item] of Object.entries(spec.paths || {})) {
      for (const method of METHODS) {
        const op = item[method];
        if (!op) continue;
        const tag = (op.tags && op.tags[0]) || "other";
        if (!groups.has(tag)) groups.set(tag, []);
        groups.get(tag).push(operation(method, path, op, item.parameters || []));
        count += 1;
      }
    }
    const sections = [...groups.entries()].map(([tag, ops]) =>
      h("section", { class: "tag", "data-testid": "tag-section", "data-tag": tag }, h("h2", null, tag, h("span", { class: "muted" }, ` ${ops.length}`)), ops),
    );
    const filter = h("input", { type: "search", placeholder: "Filter by path, method or summary", "aria-label": "filter", "data-testid": "docs-filter" });
    filter.addEventListener("input", () => {
      const q = filter.value.trim().toLowerCase();
      for (const section of sections) {
        let shown = 0;
        for (const op of section.querySelectorAll("details.op")) {
          const match = !q || op.querySelector("summary").textContent.toLowerCase().includes(q);
          op.hidden = !match;
          if (match) shown += 1;
        }
        section.hidden = shown === 0;
      }
    });
    const schemas = Object.entries((spec.components || {}).schemas || {}).sort(([a], [b]) => a.localeCompare(b));
    root.replaceChildren(
      h(
        "header",
        null,
        h("h1", null, info.title || "API", " ", h("span", { class: "version" }, info.version || "")),
        info.description ? h("p", null, info.description) : null,
        h(
          "p",
          { class: "muted" },
          `${count} operations. The OpenAPI document: `,
          h("a", { href: specUrl }, specUrl),
          ". Served by the gateway itself: this page needs no other site.",
        ),
        filter,
      ),
      ...sections,
      schemas.length
        ? h(
            "section",
            { class: "schemas" },
            h("h2", null, "Schemas"),
            schemas.map(([name, schema]) =>
              h(
                "details",
                { class: "schema-def", id: anchor(name) },
                h("summary", null, h("code", null, name), schema.description ? h("span", { class: "muted" }, " " + schema.description) : null),
                h("div", { class: "op-body" }, schemaBlock({ $ref: "#/components/schemas/" + name })),
              ),
            ),
          )
        : null,
    );
    root.dataset.loaded = "true";
    // A link to a schema opens it.
    if (location.hash.startsWith("#schema-")) {
      const target = document.getElementById(location.hash.slice(1));
      if (target) target.open = true;
    }
    window.addEventListener("hashchange", () => {
      const target = document.getElementById(location.hash.slice(1));
      if (target && target.tagName === "DETAILS") target.open = true;
    });
  }

  fetch(specUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then((resp) => {
      if (!resp.ok) throw new Error(`${specUrl} answered ${resp.status}`);
      return resp.json();
    })
    .then((doc) => {
      spec = doc;
      render();
    })
    .catch((err) => {
      root.replaceChildren(h("p", { class: "error", "data-testid": "docs-error" }, "Could not load the API description: " + err.message));
    });
})();
