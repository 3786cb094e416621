// Request-log rows, shared by the overview's live list and the request log page.

import { fmtInt, fmtMs, h } from "./dom";
import { usd } from "./format";
import type { RequestItem } from "./types";

export const REQUEST_HEADERS = ["Time", "Status", "Model", "Provider", "Key", "Tokens in/out", "Cost", "Latency"];

export function requestHead(): HTMLTableSectionElement {
  return h("thead", null, h("tr", null, REQUEST_HEADERS.map((t) => h("th", null, t))));
}

function statusClass(r: RequestItem): string {
  if (r.status >= 500) return "badge badge-err";
  if (r.status >= 400) return "badge badge-warn";
  return "badge badge-ok";
}

export function requestRow(r: RequestItem, onOpen?: (r: RequestItem) => void): HTMLTableRowElement {
  const t = new Date(r.created_at);
  const tokens = `${fmtInt(r.prompt_tokens)} / ${fmtInt(r.completion_tokens)}${r.estimated ? " ~" : ""}`;
  const tr = h(
    "tr",
    { class: "req-row", "data-request-id": r.request_id, "data-id": String(r.id), tabindex: onOpen ? "0" : undefined },
    h("td", { title: r.created_at }, Number.isNaN(t.getTime()) ? r.created_at : t.toLocaleTimeString()),
    h("td", null, h("span", { class: statusClass(r), title: r.error_type ?? "" }, String(r.status))),
    h("td", { title: r.requested_model ?? "" }, r.model ?? r.requested_model ?? "—"),
    h("td", null, r.provider ?? "—"),
    h("td", null, r.client_key_id === null ? "—" : `#${r.client_key_id}`),
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
 * A live table body that keeps at most `cap` rows: new rows go on top in one fragment per batch, the oldest
 * fall off the bottom. Called once per animation frame by the live feed.
 */
export class LiveRows {
  readonly tbody: HTMLTableSectionElement;
  constructor(
    private readonly cap: number,
    private readonly onOpen?: (r: RequestItem) => void,
  ) {
    this.tbody = h("tbody");
  }

  prepend(items: RequestItem[]): void {
    if (items.length === 0) return;
    const fresh = items.slice(-this.cap);
    const frag = document.createDocumentFragment();
    for (let i = fresh.length - 1; i >= 0; i -= 1) frag.appendChild(requestRow(fresh[i], this.onOpen));
    this.tbody.insertBefore(frag, this.tbody.firstChild);
    while (this.tbody.rows.length > this.cap) this.tbody.deleteRow(-1);
  }

  append(items: RequestItem[]): void {
    const frag = document.createDocumentFragment();
    for (const r of items) frag.appendChild(requestRow(r, this.onOpen));
    this.tbody.appendChild(frag);
  }

  clear(): void {
    this.tbody.replaceChildren();
  }
}
