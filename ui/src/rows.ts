// Request-log rows, shared by the overview's live list and the request log page.

import { fmtInt, fmtMs, h } from "./dom";
import { usd } from "./format";
import type { RequestItem } from "./types";

export const REQUEST_HEADERS = ["Time", "Status", "Model", "Provider", "Key", "Tokens in/out", "Cost", "Latency"];

export function requestHead(): HTMLTableSectionElement {
  return h("thead", null, h("tr", null, REQUEST_HEADERS.map((t) => h("th", null, t))));
}

/**
 * What identifies a row everywhere: its request id. Live rows from /ws have no database id, and a client may
 * send the same x-request-id twice, so the time (to the millisecond, the precision both sources share) is
 * part of the key, and so is the attempt after the first (routing's rows of one request may share a time).
 */
export function rowKey(r: RequestItem): string {
  const t = Date.parse(r.created_at);
  const attempt = r.attempt > 1 ? `#${r.attempt}` : "";
  return `${r.request_id}@${Number.isNaN(t) ? r.created_at : t}${attempt}`;
}

/** "×3" on the final row of a request routing tried three times. */
export function attemptsBadge(r: RequestItem): HTMLElement | null {
  if (!r.final || !(r.attempt > 1)) return null;
  return h("span", { class: "badge badge-attempts", title: `answered at attempt ${r.attempt}`, "data-testid": "attempts-badge" }, `×${r.attempt}`);
}

/** Newest first (by time, then by database id where both have one). */
export function newestFirst(a: RequestItem, b: RequestItem): number {
  const d = Date.parse(b.created_at) - Date.parse(a.created_at);
  return d !== 0 && !Number.isNaN(d) ? d : (b.id ?? 0) - (a.id ?? 0);
}

/** The key's name, or its id when the key is unknown or deleted; the id on hover. */
export function keyLabel(r: RequestItem): { text: string; title: string } {
  if (r.client_key_id === null || r.client_key_id === undefined) return { text: "—", title: "no client key" };
  const name = r.client_key_name;
  if (name) return { text: name, title: `client key id ${r.client_key_id}` };
  return { text: `#${r.client_key_id}`, title: `client key id ${r.client_key_id} (deleted or unknown key)` };
}

export function statusClass(status: number): string {
  if (status >= 500) return "badge badge-err";
  if (status >= 400) return "badge badge-warn";
  return "badge badge-ok";
}

export function requestRow(r: RequestItem, onOpen?: (r: RequestItem) => void): HTMLTableRowElement {
  const t = new Date(r.created_at);
  const tokens = `${fmtInt(r.prompt_tokens)} / ${fmtInt(r.completion_tokens)}${r.estimated ? " ~" : ""}`;
  const key = keyLabel(r);
  const tr = h(
    "tr",
    {
      class: "req-row",
      "data-request-id": r.request_id,
      "data-id": r.id === null || r.id === undefined ? undefined : String(r.id),
      tabindex: onOpen ? "0" : undefined,
    },
    h("td", { title: r.created_at }, Number.isNaN(t.getTime()) ? r.created_at : t.toLocaleTimeString()),
    h("td", null, h("span", { class: statusClass(r.status), title: r.error_type ?? "" }, String(r.status)), attemptsBadge(r)),
    h("td", { title: r.requested_model ?? "" }, r.model ?? r.requested_model ?? "—"),
    h("td", null, r.provider ?? "—"),
    h("td", { class: "key-name", title: key.title, "data-key-id": r.client_key_id ?? undefined }, key.text),
    h("td", { class: "num" }, tokens),
    h("td", { class: "num" }, usd(r.price_unknown ? null : r.cost_usd)),
    h("td", { class: "num" }, fmtMs(r.latency_ms)),
  );
  if (onOpen) {
    tr.addEventListener("click", () => onOpen(r));
    tr.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") onOpen(r);
    });
  }
  return tr;
}

/**
 * A table body of request rows that never shows a row twice (rows are identified by `rowKey`) and keeps at
 * most `cap` rows when fed live: new rows go on top in one fragment per batch, the oldest fall off the
 * bottom. Called at most once per animation frame by the live feed.
 */
export class LiveRows {
  readonly tbody: HTMLTableSectionElement;
  private readonly shown = new Map<string, { item: RequestItem; tr: HTMLTableRowElement }>();
  /** Called whenever the number of rows changes (e.g. to show or hide an empty state). */
  onCount: (n: number) => void = () => {};

  constructor(
    private readonly cap: number,
    private readonly onOpen?: (r: RequestItem) => void,
  ) {
    this.tbody = h("tbody");
  }

  get size(): number {
    return this.shown.size;
  }

  has(r: RequestItem): boolean {
    return this.shown.has(rowKey(r));
  }

  /** The rows shown, top to bottom. */
  items(): RequestItem[] {
    const out: RequestItem[] = [];
    for (const tr of Array.from(this.tbody.rows)) {
      const entry = this.shown.get(tr.dataset.key ?? "");
      if (entry) out.push(entry.item);
    }
    return out;
  }

  /** Put rows (oldest first, as the feed delivers them) on top, skipping rows already shown; keeps the cap. */
  prepend(items: RequestItem[]): void {
    const fresh = this.unseen(items).slice(-this.cap);
    if (fresh.length === 0) return;
    const frag = document.createDocumentFragment();
    for (let i = fresh.length - 1; i >= 0; i -= 1) frag.appendChild(this.row(fresh[i]));
    this.tbody.insertBefore(frag, this.tbody.firstChild);
    while (this.tbody.rows.length > this.cap) this.drop(this.tbody.rows[this.tbody.rows.length - 1]);
    this.onCount(this.shown.size);
  }

  /** Put rows (newest first, as a page is) at the bottom, skipping rows already shown. No cap. */
  append(items: RequestItem[]): void {
    const fresh = this.unseen(items);
    const frag = document.createDocumentFragment();
    for (const r of fresh) frag.appendChild(this.row(r));
    this.tbody.appendChild(frag);
    this.onCount(this.shown.size);
  }

  /** Show exactly these rows (merged, de-duplicated and sorted newest first), at most `limit` of them. */
  replace(items: RequestItem[], limit = Number.POSITIVE_INFINITY): void {
    const unique = new Map<string, RequestItem>();
    for (const r of items) if (!unique.has(rowKey(r))) unique.set(rowKey(r), r);
    const sorted = [...unique.values()].sort(newestFirst).slice(0, limit);
    this.tbody.replaceChildren();
    this.shown.clear();
    this.append(sorted);
  }

  clear(): void {
    this.tbody.replaceChildren();
    this.shown.clear();
    this.onCount(0);
  }

  private unseen(items: RequestItem[]): RequestItem[] {
    const out: RequestItem[] = [];
    const batch = new Set<string>();
    for (const r of items) {
      const key = rowKey(r);
      if (this.shown.has(key) || batch.has(key)) continue;
      batch.add(key);
      out.push(r);
    }
    return out;
  }

  private row(r: RequestItem): HTMLTableRowElement {
    const tr = requestRow(r, this.onOpen);
    const key = rowKey(r);
    tr.dataset.key = key;
    this.shown.set(key, { item: r, tr });
    return tr;
  }

  private drop(tr: HTMLTableRowElement): void {
    this.shown.delete(tr.dataset.key ?? "");
    tr.remove();
  }
}
