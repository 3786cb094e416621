// Shared widgets: toasts, modal forms, confirmations, the copy-once secret reveal, simple tables.

import { ApiError, type User } from "./api";
import { clear, h, type Child, type Props } from "./dom";

export interface PageCtx {
  root: HTMLElement;
  user: User;
  isAdmin: boolean;
  /** Register cleanup that runs when the user leaves the page. */
  onLeave(fn: () => void): void;
}

export interface Toast {
  /** Replace the message (and kind) in place, e.g. "Testing…" by the result; restarts the timer. */
  update(message: string, kind?: "ok" | "error"): void;
  close(): void;
}

/** A short notice at the bottom right; `sticky` keeps it until it is updated or closed. */
export function toast(message: string, kind: "ok" | "error" = "ok", opts: { sticky?: boolean } = {}): Toast {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts" });
    document.body.appendChild(box);
  }
  const el = h("div", { class: `toast toast-${kind}`, role: "status", "data-testid": "toast" }, message);
  box.appendChild(el);
  let timer = 0;
  const arm = (k: "ok" | "error"): void => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => el.remove(), k === "error" ? 6000 : 3000);
  };
  if (!opts.sticky) arm(kind);
  return {
    update(text: string, k: "ok" | "error" = "ok"): void {
      el.textContent = text;
      el.className = `toast toast-${k}`;
      if (!el.isConnected) box?.appendChild(el);
      arm(k);
    },
    close(): void {
      window.clearTimeout(timer);
      el.remove();
    },
  };
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

/** The open dialogs, innermost last: Escape and Tab act on the innermost only. */
const openDialogs: HTMLElement[] = [];

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

interface Modal {
  overlay: HTMLDivElement;
  /** Remove the dialog and give the focus back to what had it before. */
  close(): void;
}

/**
 * A modal dialog. `onDismiss` runs when the user dismisses it: Escape, or a click on the overlay outside the
 * dialog (`outside: false` keeps it open on such a click). Tab stays inside the dialog; closing gives the
 * focus back to the element that had it when the dialog opened.
 */
function modal(
  title: string,
  body: Child,
  actions: HTMLElement[],
  onDismiss: () => void,
  opts: { testid?: string; outside?: boolean } = {},
): Modal {
  const dialog = h(
    "div",
    { class: "modal", role: "dialog", "aria-modal": "true", "aria-label": title, "data-testid": opts.testid ?? "modal", tabindex: "-1" },
    h("h3", null, title),
    h("div", { class: "modal-body" }, body),
    h("div", { class: "modal-actions" }, actions),
  );
  const overlay = h("div", { class: "modal-overlay", "data-testid": "modal-overlay" }, dialog);
  const previous = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  let closed = false;
  // A click outside = pressed and released on the overlay itself (a text selection dragged out of a field
  // and released on the overlay is not a click outside).
  let downOnOverlay = false;
  overlay.addEventListener("mousedown", (ev) => {
    downOnOverlay = ev.target === overlay;
  });
  overlay.addEventListener("click", (ev) => {
    const outside = downOnOverlay && ev.target === overlay;
    downOnOverlay = false;
    if (outside && opts.outside !== false) onDismiss();
  });
  const onKey = (ev: KeyboardEvent): void => {
    if (openDialogs[openDialogs.length - 1] !== overlay) return;
    if (ev.key === "Escape") {
      ev.preventDefault();
      ev.stopPropagation();
      onDismiss();
    } else if (ev.key === "Tab") {
      const items = [...dialog.querySelectorAll<HTMLElement>(FOCUSABLE)].filter((el) => el.offsetParent !== null);
      if (items.length === 0) return;
      const first = items[0];
      const last = items[items.length - 1];
      const active = document.activeElement;
      if (ev.shiftKey && (active === first || !dialog.contains(active))) {
        ev.preventDefault();
        last.focus();
      } else if (!ev.shiftKey && (active === last || !dialog.contains(active))) {
        ev.preventDefault();
        first.focus();
      }
    }
  };
  document.addEventListener("keydown", onKey, true);
  openDialogs.push(overlay);
  document.body.appendChild(overlay);
  dialog.focus();
  return {
    overlay,
    close(): void {
      if (closed) return;
      closed = true;
      document.removeEventListener("keydown", onKey, true);
      const i = openDialogs.indexOf(overlay);
      if (i >= 0) openDialogs.splice(i, 1);
      overlay.remove();
      if (previous?.isConnected) previous.focus();
    },
  };
}

export interface Field {
  name: string;
  label: string;
  type?: "text" | "password" | "number" | "select" | "checkbox" | "datetime-local";
  value?: string | boolean | null;
  /** For a select: values, or value/label pairs. */
  options?: (string | { value: string; label: string })[];
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
          (f.options ?? []).map((o) => {
            const { value, label } = typeof o === "string" ? { value: o, label: o } : o;
            return h("option", { value, selected: value === f.value }, label);
          }),
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
    let done = false;
    const close = (v: FormValues | null): void => {
      if (done) return;
      done = true;
      dialog.close();
      resolve(v);
    };
    const dialog = modal(title, form, [cancel, ok], () => close(null));
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
    const dialog = modal(title, h("p", null, text), [cancel, ok], () => answer(false), { testid: "confirm-dialog" });
    function answer(v: boolean): void {
      dialog.close();
      resolve(v);
    }
    cancel.addEventListener("click", () => answer(false));
    ok.addEventListener("click", () => answer(true));
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
    const finish = (): void => {
      clear(code);
      dialog.close();
      resolve();
    };
    // Escape closes it like "I have copied it"; a stray click beside it does not (the secret would be lost).
    const dialog = modal(
      title,
      [
        h("p", null, "This secret is shown only once. Copy it now; it cannot be displayed again."),
        h("div", { class: "secret-row" }, code, copy),
      ],
      [close],
      finish,
      { testid: "secret-dialog", outside: false },
    );
    close.addEventListener("click", finish);
    copy.focus();
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

export function table<T>(
  columns: Column<T>[],
  rows: T[],
  opts: { testid?: string; empty?: string; rowProps?: (row: T) => Props } = {},
): HTMLElement {
  if (rows.length === 0) return h("div", { class: "empty", "data-testid": opts.testid }, opts.empty ?? "Nothing here yet");
  // The table scrolls inside its own box on a narrow screen; the page never gets wider than the window.
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "grid", "data-testid": opts.testid },
      h("thead", null, h("tr", null, columns.map((c) => h("th", { class: c.class }, c.title)))),
      h(
        "tbody",
        null,
        rows.map((r) => h("tr", opts.rowProps?.(r) ?? null, columns.map((c) => h("td", { class: c.class }, c.cell(r))))),
      ),
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
