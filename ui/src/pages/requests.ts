// Request log: filters, newest first, cursor "load more", row detail, and a live tail that prepends rows
// from the WebSocket that match the filters (capped; paused while browsing older pages).

import { enc, get, type Page } from "../api";
import { requestDetailView } from "../detail";
import { h } from "../dom";
import { LIVE_CAP, live } from "../live";
import { LiveRows, requestHead, rowKey } from "../rows";
import type { RequestDetail, RequestItem } from "../types";
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
    final: h("input", { type: "checkbox", name: "final_only" }),
  };
  const tail = h("input", { type: "checkbox", name: "live", checked: true, "data-testid": "live-tail" });
  const search = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "log-search" }, "Search");
  const more = h("button", { type: "button", class: "btn", "data-testid": "load-more", hidden: true }, "Load more");
  const status = h("div", { class: "muted" });
  const detail = h("aside", { class: "detail", hidden: true, "data-testid": "request-detail" });

  /** Which row the panel shows (a later click wins over a slower earlier answer). */
  let opened = "";
  const openDetail = async (r: RequestItem): Promise<void> => {
    const key = rowKey(r);
    opened = key;
    detail.hidden = false;
    detail.replaceChildren(h("div", { class: "muted" }, "Loading…"));
    // Rows from the API have a database id; live rows have only their request id (which the API also accepts).
    const path = r.id !== null && r.id !== undefined ? `/api/requests/${r.id}` : `/api/requests/by-request-id/${enc(r.request_id)}`;
    try {
      const full = await get<RequestDetail>(path);
      if (opened !== key) return;
      detail.replaceChildren(
        ...requestDetailView(full, () => {
          detail.hidden = true;
          opened = "";
        }),
      );
    } catch (err) {
      if (opened === key) detail.replaceChildren(h("div", { class: "form-error" }, errorText(err)));
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
    h("label", { class: "inline", title: "one row per request: its final attempt, not the ones routing retried" }, f.final, " final attempts only"),
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
    final_only: f.final.checked,
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
    if (q.final_only && r.final === false) return false;
    return true;
  };

  let cursor: string | null = null;
  // Live rows that arrive while the first page is loading: merged into it once it is there.
  let loading = 0;
  let during: RequestItem[] = [];
  const showCount = (): void => {
    status.textContent = rows.size === 0 ? "No requests match these filters" : "";
  };
  const load = async (append: boolean): Promise<void> => {
    status.textContent = "Loading…";
    const ticket = append ? loading : ++loading;
    if (!append) during = [];
    try {
      const page = await get<Page<RequestItem>>("/api/requests", { ...filters(), limit: PAGE, cursor: append ? cursor : null });
      if (!append && ticket !== loading) return; // a newer search replaced this one
      if (append) rows.append(page.data);
      else rows.replace([...page.data, ...during.filter(matches)]);
      during = [];
      cursor = page.next_cursor;
      more.hidden = !cursor;
      showCount();
    } catch (err) {
      if (!append && ticket === loading) {
        rows.prepend(during.filter(matches)); // keep what arrived live meanwhile
        during = [];
      }
      status.textContent = errorText(err);
    } finally {
      if (!append && ticket === loading) loading = 0;
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

  // The live tail: every new row that passes the filters goes on top (rows are told apart by request id, as
  // live rows have no database id); none is shown twice.
  const unsubscribe = live.subscribe((batch) => {
    if (!tail.checked || batch.requests.length === 0) return;
    if (loading) {
      during.push(...batch.requests);
      return;
    }
    const fresh = batch.requests.filter(matches);
    if (fresh.length === 0) return;
    rows.prepend(fresh);
    showCount();
  });
  ctx.onLeave(unsubscribe);
  void load(false);
}
