// Shared widgets: toasts, modal forms, confirmations, the copy-once secret reveal, simple tables.

import { ApiError, type User } from "./api";
import { clear, h, type Child } from "./dom";

export interface PageCtx {
  root: HTMLElement;
  user: User;
  isAdmin: boolean;
  /** Register cleanup that runs when the user leaves the page. */
  onLeave(fn: () => void): void;
}

export function toast(message: string, kind: "ok" | "error" = "ok"): void {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts" });
    document.body.appendChild(box);
  }
  const el = h("div", { class: `toast toast-${kind}`, role: "status" }, message);
  box.appendChild(el);
  window.setTimeout(() => el.remove(), kind === "error" ? 6000 : 3000);
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Run an action, reporting its failure as a toast; resolves to whether it succeeded. */
export async function attempt(action: () => Promise<unknown>, okMessage?: string): Promise<boolean> {
  try {
    await action();
    if (okMessage) toast(okMessage);
    return true;
  } catch (err) {
    toast(errorText(err), "error");
    return false;
  }
}

function modal(title: string, body: Child, actions: HTMLElement[], testid = "modal"): HTMLDivElement {
  const overlay = h(
    "div",
    { class: "modal-overlay" },
    h(
      "div",
      { class: "modal", role: "dialog", "aria-modal": "true", "aria-label": title, "data-testid": testid },
      h("h3", null, title),
      h("div", { class: "modal-body" }, body),
      h("div", { class: "modal-actions" }, actions),
    ),
  );
  document.body.appendChild(overlay);
  return overlay;
}

export interface Field {
  name: string;
  label: string;
  type?: "text" | "password" | "number" | "select" | "checkbox" | "datetime-local";
  value?: string | boolean | null;
  options?: string[];
  placeholder?: string;
  required?: boolean;
  hint?: string;
}

export type FormValues = Record<string, string | boolean>;

/** A modal form; resolves to the values, or null when cancelled. `submit` may throw to keep it open. */
export function formDialog(
  title: string,
  fields: Field[],
  submit: (values: FormValues) => Promise<void>,
  submitLabel = "Save",
): Promise<FormValues | null> {
  return new Promise((resolve) => {
    const inputs = new Map<string, HTMLInputElement | HTMLSelectElement>();
    const error = h("div", { class: "form-error", role: "alert" });
    const rows = fields.map((f) => {
      let input: HTMLInputElement | HTMLSelectElement;
      if (f.type === "select") {
        input = h(
          "select",
          { name: f.name },
          (f.options ?? []).map((o) => h("option", { value: o, selected: o === f.value }, o)),
        );
      } else if (f.type === "checkbox") {
        input = h("input", { type: "checkbox", name: f.name, checked: Boolean(f.value) });
      } else {
        input = h("input", {
          type: f.type ?? "text",
          name: f.name,
          value: typeof f.value === "string" ? f.value : "",
          placeholder: f.placeholder,
          required: f.required,
          autocomplete: f.type === "password" ? "new-password" : "off",
          step: f.type === "number" ? "any" : undefined,
        });
      }
      inputs.set(f.name, input);
      return h("label", { class: "field" }, h("span", null, f.label), input, f.hint ? h("small", null, f.hint) : null);
    });
    const form = h("form", { class: "form" }, rows, error);
    const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
    const ok = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "modal-submit" }, submitLabel);
    ok.setAttribute("form", "");
    const overlay = modal(title, form, [cancel, ok]);
    const close = (v: FormValues | null): void => {
      overlay.remove();
      resolve(v);
    };
    const run = async (ev?: Event): Promise<void> => {
      ev?.preventDefault();
      const values: FormValues = {};
      for (const [name, input] of inputs) {
        values[name] = input instanceof HTMLInputElement && input.type === "checkbox" ? input.checked : input.value;
      }
      ok.disabled = true;
      try {
        await submit(values);
        close(values);
      } catch (err) {
        error.textContent = errorText(err);
      } finally {
        ok.disabled = false;
      }
    };
    form.addEventListener("submit", run);
    ok.addEventListener("click", run);
    cancel.addEventListener("click", () => close(null));
    (inputs.values().next().value as HTMLElement | undefined)?.focus();
  });
}

export function confirmDialog(title: string, text: string, label = "Confirm"): Promise<boolean> {
  return new Promise((resolve) => {
    const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
    const ok = h("button", { type: "button", class: "btn btn-danger", "data-testid": "confirm" }, label);
    const overlay = modal(title, h("p", null, text), [cancel, ok], "confirm-dialog");
    cancel.addEventListener("click", () => {
      overlay.remove();
      resolve(false);
    });
    ok.addEventListener("click", () => {
      overlay.remove();
      resolve(true);
    });
    ok.focus();
  });
}

/** Show a secret exactly once; the only reference to it is dropped when the dialog closes. */
export function revealSecret(title: string, secret: string): Promise<void> {
  return new Promise((resolve) => {
    const code = h("code", { class: "secret", "data-testid": "secret-value" }, secret);
    const copy = h("button", { type: "button", class: "btn", "data-testid": "copy-secret" }, "Copy");
    copy.addEventListener("click", () => {
      const done = (): void => {
        copy.textContent = "Copied";
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(code.textContent ?? "").then(done, () => selectText(code));
      } else {
        selectText(code);
        copy.textContent = "Selected: press Ctrl+C";
      }
    });
    const close = h("button", { type: "button", class: "btn btn-primary", "data-testid": "secret-done" }, "I have copied it");
    const overlay = modal(
      title,
      [
        h("p", null, "This secret is shown only once. Copy it now; it cannot be displayed again."),
        h("div", { class: "secret-row" }, code, copy),
      ],
      [close],
      "secret-dialog",
    );
    close.addEventListener("click", () => {
      clear(code);
      overlay.remove();
      resolve();
    });
  });
}

function selectText(el: HTMLElement): void {
  const range = document.createRange();
  range.selectNodeContents(el);
  const sel = window.getSelection();
  sel?.removeAllRanges();
  sel?.addRange(range);
}

export interface Column<T> {
  title: string;
  cell: (row: T) => Child;
  class?: string;
}

export function table<T>(columns: Column<T>[], rows: T[], opts: { testid?: string; empty?: string } = {}): HTMLElement {
  if (rows.length === 0) return h("div", { class: "empty", "data-testid": opts.testid }, opts.empty ?? "Nothing here yet");
  return h(
    "table",
    { class: "grid", "data-testid": opts.testid },
    h("thead", null, h("tr", null, columns.map((c) => h("th", { class: c.class }, c.title)))),
    h(
      "tbody",
      null,
      rows.map((r) => h("tr", null, columns.map((c) => h("td", { class: c.class }, c.cell(r))))),
    ),
  );
}

export function pageHeader(title: string, ...actions: Child[]): HTMLElement {
  return h("div", { class: "page-header" }, h("h2", null, title), h("div", { class: "actions" }, actions));
}

/** A button that changes state on the server. Only ever created for admins (viewers never get them). */
export function mutButton(label: string, onClick: () => void, extra: Record<string, string> = {}): HTMLButtonElement {
  return h("button", { type: "button", class: `btn ${extra.class ?? ""}`.trim(), "data-mutating": "true", "data-testid": extra.testid, onclick: onClick }, label);
}

export function badge(text: string, kind: "ok" | "warn" | "err" | "muted" = "muted"): HTMLElement {
  return h("span", { class: `badge badge-${kind}` }, text);
}

export function card(label: string, value: Child, testid?: string): HTMLElement {
  return h("div", { class: "card", "data-testid": testid }, h("div", { class: "card-label" }, label), h("div", { class: "card-value" }, value));
}

/** ISO range helpers for the analytics and log filters. */
export const RANGES: Record<string, number> = { "15m": 15 * 60, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };

/** ISO 8601 UTC without milliseconds, as the API speaks it. */
export function iso(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function rangeFrom(key: string, now = Date.now()): { from: string; to: string } {
  const seconds = RANGES[key] ?? 3600;
  return { from: iso(new Date(now - seconds * 1000)), to: iso(new Date(now)) };
}

export function localToIso(v: string): string {
  if (!v) return "";
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? "" : iso(d);
}
