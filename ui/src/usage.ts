// Live usage of a key or a team against its limits (GET /api/{keys,teams}/{id}/usage): the budget bar, the
// per-minute headroom, the expiry, and polling that stops when its owner (a dialog, a page) goes away.

import { enc, get } from "./api";
import { fmtTime, h } from "./dom";
import { formatUsd, usd } from "./format";
import type { BudgetPeriod, BudgetUsage, ScopeUsage, UsageCount } from "./types";
import { badge, errorText } from "./ui";

export type UsageScope = "key" | "team";

export function fetchUsage(scope: UsageScope, id: number): Promise<ScopeUsage> {
  return get<ScopeUsage>(`/api/${scope === "key" ? "keys" : "teams"}/${enc(String(id))}/usage`);
}

/**
 * Fetch the usage now and then every `everyMs` after each answer (never two requests at once), handing each
 * answer or failure to `show`; the returned function stops it, and nothing is shown after that.
 */
export function pollUsage(
  scope: UsageScope,
  id: number,
  everyMs: number,
  show: (usage: ScopeUsage | null, err?: unknown) => void,
): () => void {
  let stopped = false;
  let timer = 0;
  const tick = async (): Promise<void> => {
    try {
      const usage = await fetchUsage(scope, id);
      if (!stopped) show(usage);
    } catch (err) {
      if (!stopped) show(null, err);
    }
    if (!stopped) timer = window.setTimeout(() => void tick(), everyMs);
  };
  void tick();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

const PERIOD_TEXT: Record<BudgetPeriod, string> = { day: "day", week: "week", month: "month", total: "total" };

/** "in 3 d 4 h", "in 5 h 20 min", "in 12 min", "in under a minute" (from now). */
export function untilText(isoTime: string, now = Date.now()): string {
  const minutes = Math.floor((new Date(isoTime).getTime() - now) / 60_000);
  if (Number.isNaN(minutes)) return isoTime;
  if (minutes < 1) return "in under a minute";
  const d = Math.floor(minutes / 1440);
  const hr = Math.floor((minutes % 1440) / 60);
  const min = minutes % 60;
  if (d > 0) return hr ? `in ${d} d ${hr} h` : `in ${d} d`;
  if (hr > 0) return min ? `in ${hr} h ${min} min` : `in ${hr} h`;
  return `in ${min} min`;
}

/** Within a week: "in 5 h 20 min"; later: the date ("on 1/1/2031"). */
function whenText(isoTime: string): string {
  const d = new Date(isoTime);
  return d.getTime() - Date.now() > 7 * 86_400_000 ? `on ${d.toLocaleDateString()}` : untilText(isoTime);
}

/** Spend (solid) and open reservations (lighter) as parts of the budget; red once nothing remains. */
export function budgetBar(b: BudgetUsage): HTMLElement {
  const limit = Number(b.limit_usd);
  const spend = Math.max(0, Number(b.spend_usd));
  const reserved = Math.max(0, Number(b.reserved_usd));
  const share = (v: number): number => (limit > 0 && Number.isFinite(v) ? Math.min(1, v / limit) : 0);
  const spendShare = share(spend);
  const reservedShare = Math.min(1 - spendShare, share(reserved));
  const used = spendShare + reservedShare;
  const state = Number(b.remaining_usd) <= 0 ? "over" : used >= 0.8 ? "high" : "ok";
  const pct = (v: number): string => `${(v * 100).toFixed(2)}%`;
  const bar = h(
    "div",
    {
      class: `meter meter-${state}`,
      role: "meter",
      "aria-label": "budget spent",
      "aria-valuemin": "0",
      "aria-valuemax": b.limit_usd,
      "aria-valuenow": String(spend),
      title: `${formatUsd(b.spend_usd)} spent, ${formatUsd(b.reserved_usd)} reserved by requests in flight, of ${formatUsd(b.limit_usd)}`,
    },
    h("span", { class: "meter-spend", style: `width: ${pct(spendShare)}` }),
    h("span", { class: "meter-reserved", style: `width: ${pct(reservedShare)}` }),
  );
  const resets = b.resets_at
    ? h("span", { "data-testid": "budget-resets", "data-resets-at": b.resets_at, title: fmtTime(b.resets_at) }, `resets ${untilText(b.resets_at)}`)
    : h("span", { "data-testid": "budget-resets" }, "never resets");
  return h(
    "div",
    { class: `budget budget-${state}`, "data-testid": "budget-bar" },
    bar,
    h(
      "div",
      { class: "budget-text" },
      usd(b.spend_usd, "budget-spend"),
      Number(b.reserved_usd) > 0 ? [" + ", usd(b.reserved_usd, "budget-reserved"), " reserved"] : null,
      " of ",
      usd(b.limit_usd, "budget-limit"),
      b.period === "total" ? " in total" : ` per ${PERIOD_TEXT[b.period]}`,
    ),
    h("div", { class: "budget-text muted" }, usd(b.remaining_usd, "budget-remaining"), " left · ", resets),
  );
}

function count(c: UsageCount, unit: string, testid: string): HTMLElement | null {
  if (c.limit === null) return null;
  const full = c.used >= c.limit;
  return h(
    "span",
    { class: full ? "headroom headroom-full" : "headroom", "data-testid": testid },
    `${c.used.toLocaleString("en-US")}/${c.limit.toLocaleString("en-US")} ${unit}`,
  );
}

/** "12/60 rpm · 500/10,000 tpm · 1/4 in flight" for the limits that are set (null when none is). */
export function headroom(u: ScopeUsage): HTMLElement | null {
  const parts = [count(u.requests, "rpm", "headroom-rpm"), count(u.tokens, "tpm", "headroom-tpm"), count(u.in_flight, "in flight", "headroom-parallel")].filter(
    (p): p is HTMLElement => p !== null,
  );
  if (parts.length === 0) return null;
  return h(
    "div",
    { class: "headrooms", title: "used in the current minute (tokens include reservations) / limit" },
    parts.flatMap((p, i) => (i === 0 ? [p] : [" · ", p])),
  );
}

/** A key's expiry: "expires in 3 d" (the date on hover), or "expired" in red; null for a key that never expires. */
export function expiry(expiresAt: string | null, expired?: boolean): HTMLElement | null {
  if (!expiresAt) return null;
  const past = expired ?? new Date(expiresAt).getTime() <= Date.now();
  return past
    ? h("span", { class: "expired", "data-testid": "key-expired", title: `expired ${fmtTime(expiresAt)}` }, "expired")
    : h("span", { class: "muted", "data-testid": "key-expires", title: fmtTime(expiresAt) }, `expires ${whenText(expiresAt)}`);
}

function storeNote(u: ScopeUsage): HTMLElement | null {
  return u.mode === "redis-unavailable"
    ? h("span", { title: "Redis is unreachable: the numbers may be incomplete" }, badge("limits store unreachable", "warn"))
    : null;
}

/** The usage for a table cell: budget bar, headroom, expiry (keys); a muted note when it cannot be read. */
export function usageSummary(u: ScopeUsage): HTMLElement {
  return h(
    "div",
    { class: "usage", "data-testid": `usage-${u.scope}-${u.id}` },
    u.budget ? budgetBar(u.budget) : null,
    headroom(u),
    u.scope === "key" ? expiry(u.expires_at, u.expired) : null,
    storeNote(u),
  );
}

/** The usage shown above a limits dialog's fields, refreshed while it is open. */
export function usagePanel(u: ScopeUsage): HTMLElement {
  const none = !u.budget && u.requests.limit === null && u.tokens.limit === null && u.in_flight.limit === null;
  return h(
    "div",
    { class: "usage usage-panel" },
    u.budget ? budgetBar(u.budget) : null,
    headroom(u),
    none ? h("div", { class: "muted" }, `No limits yet: ${u.requests.used} request(s) and ${u.tokens.used.toLocaleString("en-US")} token(s) this minute.`) : null,
    u.scope === "key" ? expiry(u.expires_at, u.expired) : null,
    storeNote(u),
  );
}

export function usageError(err: unknown): HTMLElement {
  return h("div", { class: "muted usage-error", "data-testid": "usage-error" }, `Usage unavailable: ${errorText(err)}`);
}

/**
 * Live usage above the fields of the dialog that has just opened (the innermost one): fetched every 2 s until
 * `closed` settles (formDialog's promise settles on every way of closing it).
 */
export function liveUsageInDialog(scope: UsageScope, id: number, closed: Promise<unknown>): void {
  const bodies = document.querySelectorAll<HTMLElement>("[role=dialog] .modal-body");
  const body = bodies[bodies.length - 1];
  if (!body) return;
  // No aria-live: a screen reader would read it out every 2 s.
  const now = h("div", null, h("div", { class: "muted" }, "Loading usage…"));
  const box = h("div", { class: "usage-live", "data-testid": "usage-live" }, h("div", { class: "usage-live-title" }, "Usage now"), now);
  body.prepend(box);
  const stop = pollUsage(scope, id, 2000, (usage, err) => {
    now.replaceChildren(usage ? usagePanel(usage) : usageError(err));
  });
  void closed.finally(stop);
}

/**
 * The usage cells of a table: `cell` makes one (filled by the next `refresh`), `refresh` fetches them all at once.
 * A page calls `reset` before it redraws its table and `every` to refresh while it is shown.
 */
export class UsageCells {
  private cells: { scope: UsageScope; id: number; el: HTMLElement }[] = [];

  cell(scope: UsageScope, id: number): HTMLElement {
    const el = h("div", { class: "usage-cell muted" }, "…");
    this.cells.push({ scope, id, el });
    return el;
  }

  reset(): void {
    this.cells = [];
  }

  async refresh(): Promise<void> {
    await Promise.all(
      this.cells.map(async ({ scope, id, el }) => {
        try {
          const usage = await fetchUsage(scope, id);
          el.className = "usage-cell";
          el.replaceChildren(usageSummary(usage));
        } catch (err) {
          el.className = "usage-cell muted";
          el.replaceChildren(h("span", { title: errorText(err), "data-testid": "usage-error" }, "usage unavailable"));
        }
      }),
    );
  }

  /** Refresh every `ms` while the tab is visible; returns the function that stops it. */
  every(ms: number): () => void {
    let busy = false;
    const timer = window.setInterval(() => {
      if (busy || document.hidden || this.cells.length === 0) return;
      busy = true;
      void this.refresh().finally(() => {
        busy = false;
      });
    }, ms);
    return () => window.clearInterval(timer);
  }
}
