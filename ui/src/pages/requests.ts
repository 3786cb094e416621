// Request log: filters, newest first, cursor "load more", row detail, and a live tail that prepends rows
// from the WebSocket that match the filters (capped; paused while browsing older pages).

import { enc, get, type Page } from "../api";
import { fmtTime, h } from "../dom";
import { LIVE_CAP, live } from "../live";
import { LiveRows, requestHead } from "../rows";
import type { RequestItem } from "../types";
import { errorText, localToIso, pageHeader, type PageCtx } from "../ui";

const PAGE = 50;

export function requestsPage(ctx: PageCtx): void {
  const f = {
    from: h("input", { type: "datetime-local", name: "from", title: "from" }),
    to: h("input", { type: "datetime-local", name: "to", title: "to" }),
    client: h("input", { name: "client_key_id", placeholder: "client key id", size: 8, inputmode: "numeric" }),
    provider: h("input", { name: "provider", placeholder: "provider", size: 10 }),
    model: h("input", { name: "model", placeholder: "model", size: 14 }),
    status: h("input", { name: "status", placeholder: "status", size: 5, inputmode: "numeric" }),
    errors: h("input", { type: "checkbox", name: "errors_only" }),
  };
  const tail = h("input", { type: "checkbox", name: "live", checked: true, "data-testid": "live-tail" });
  const search = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "log-search" }, "Search");
  const more = h("button", { type: "button", class: "btn", "data-testid": "load-more", hidden: true }, "Load more");
  const status = h("div", { class: "muted" });
  const detail = h("aside", { class: "detail", hidden: true, "data-testid": "request-detail" });

  const openDetail = async (r: RequestItem): Promise<void> => {
    detail.hidden = false;
    detail.replaceChildren(h("div", { class: "muted" }, "Loading…"));
    try {
      const full = await get<Record<string, unknown>>(`/api/requests/${enc(String(r.id))}`);
      const close = h("button", { type: "button", class: "btn btn-link" }, "Close");
      close.addEventListener("click", () => {
        detail.hidden = true;
      });
      detail.replaceChildren(
        h("div", { class: "page-header" }, h("h3", null, `Request ${r.request_id}`), close),
        h(
          "dl",
          { class: "kv" },
          Object.entries(full).map(([k, v]) => [
            h("dt", null, k),
            h("dd", null, v === null || v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : k.endsWith("_at") ? `${String(v)} (${fmtTime(String(v))})` : String(v)),
          ]),
        ),
      );
    } catch (err) {
      detail.replaceChildren(h("div", { class: "form-error" }, errorText(err)));
    }
  };

  const rows = new LiveRows(LIVE_CAP, (r) => void openDetail(r));
  const form = h(
    "form",
    { class: "toolbar", "data-testid": "log-filters" },
    f.from,
    f.to,
    f.client,
    f.provider,
    f.model,
    f.status,
    h("label", { class: "inline" }, f.errors, " errors only"),
    search,
    h("label", { class: "inline" }, tail, " live tail"),
  );
  ctx.root.append(
    pageHeader("Request log"),
    form,
    h(
      "div",
      { class: "split" },
      h("div", { class: "split-main" }, h("table", { class: "grid", "data-testid": "log-table" }, requestHead(), rows.tbody), more, status),
      detail,
    ),
  );

  const filters = (): Record<string, string | boolean> => ({
    from: localToIso(f.from.value),
    to: localToIso(f.to.value),
    client_key_id: f.client.value.trim(),
    provider: f.provider.value.trim(),
    model: f.model.value.trim(),
    status: f.status.value.trim(),
    errors_only: f.errors.checked,
  });

  /** Whether a live row passes the current filters (the same rules the API applies). */
  const matches = (r: RequestItem): boolean => {
    const q = filters();
    if (q.to) return false; // a closed range never grows
    if (q.from && Date.parse(r.created_at) < Date.parse(String(q.from))) return false;
    if (q.client_key_id && String(r.client_key_id) !== q.client_key_id) return false;
    if (q.provider && r.provider !== q.provider) return false;
    if (q.model && r.model !== q.model && r.requested_model !== q.model) return false;
    if (q.status && String(r.status) !== q.status) return false;
    if (q.errors_only && r.status < 400) return false;
    return true;
  };

  let cursor: string | null = null;
  let newestId = 0;
  const load = async (append: boolean): Promise<void> => {
    status.textContent = "Loading…";
    try {
      const page = await get<Page<RequestItem>>("/api/requests", { ...filters(), limit: PAGE, cursor: append ? cursor : null });
      if (!append) {
        rows.clear();
        newestId = 0;
      }
      rows.append(page.data);
      for (const r of page.data) newestId = Math.max(newestId, r.id);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      status.textContent = rows.tbody.rows.length === 0 ? "No requests match these filters" : "";
    } catch (err) {
      status.textContent = errorText(err);
    }
  };

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    void load(false);
  });
  more.addEventListener("click", () => {
    // Browsing older pages: stop the live tail so rows do not shift (and the cap does not drop loaded pages).
    tail.checked = false;
    void load(true);
  });
  tail.addEventListener("change", () => {
    if (tail.checked) void load(false);
  });

  const unsubscribe = live.subscribe((batch) => {
    if (!tail.checked || batch.requests.length === 0) return;
    const fresh = batch.requests.filter((r) => r.id > newestId && matches(r));
    for (const r of fresh) newestId = Math.max(newestId, r.id);
    rows.prepend(fresh);
    if (fresh.length) status.textContent = "";
  });
  ctx.onLeave(unsubscribe);
  void load(false);
}
