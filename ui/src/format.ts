// Money, one way everywhere: `formatUsd` for text, `usd` for a cell (the exact decimal on hover), `costTotal` for a
// total that may leave out requests without a known price. An unknown amount is "?", never $0. No imports, so that
// dom.ts (its older `fmtUsd`) can delegate here without an import cycle.

export type UsdValue = string | number | null | undefined;

/** What an unknown amount shows as. */
export const UNKNOWN_USD = "?";

/**
 * `$12.35` from $1 up (two decimals, thousands grouped), three significant digits below (`$0.512`, `$0.0123`,
 * `$0.0000447`, at least two decimals: `$0.50`), `$0.00` for zero, "?" for null or anything not a number.
 */
export function formatUsd(value: UsdValue): string {
  if (value === null || value === undefined || value === "") return UNKNOWN_USD;
  const n = typeof value === "number" ? value : Number(value);
  if (!Number.isFinite(n)) return UNKNOWN_USD;
  if (n === 0) return "$0.00";
  const sign = n < 0 ? "-" : "";
  const a = Math.abs(n);
  if (a >= 1) {
    return `${sign}$${a.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  }
  const decimals = Math.min(100, Math.max(2, 2 - Math.floor(Math.log10(a))));
  // Rounding may carry into one more digit (0.9996 -> 1.000): trailing zeros go, down to two decimals.
  const text = a.toFixed(decimals).replace(/(\.\d\d\d*?)0+$/, "$1");
  return `${sign}$${text}`;
}

/** The exact amount as the API sent it (a decimal string), for a title attribute. */
export function exactUsd(value: UsdValue): string {
  if (value === null || value === undefined || value === "") return "no known price";
  const s = String(value);
  return s.startsWith("-") ? `-$${s.slice(1)} (exact)` : `$${s} (exact)`;
}

function span(className: string, text: string, title: string, testid?: string): HTMLSpanElement {
  const el = document.createElement("span");
  el.className = className;
  el.title = title;
  el.textContent = text;
  if (testid) el.dataset.testid = testid;
  return el;
}

/** An amount as an element: the short form, the exact decimal on hover; "?" (no known price) for null. */
export function usd(value: UsdValue, testid?: string): HTMLSpanElement {
  const text = formatUsd(value);
  return span(text === UNKNOWN_USD ? "usd usd-unknown" : "usd", text, exactUsd(value), testid);
}

/** "N unpriced", or "" when every request had a known price. */
export function unpricedText(unpriced: number | null | undefined): string {
  return unpriced ? `${Math.round(unpriced).toLocaleString("en-US")} unpriced` : "";
}

/**
 * A cost total: the amount (or "?" when no request of it had a known price) and, when some requests had none,
 * "N unpriced" beside it, saying that their cost is not included.
 */
export function costTotal(cost: UsdValue, unpriced: number | null | undefined, testid?: string): HTMLSpanElement {
  const total = span("cost-total", "", "", testid);
  total.removeAttribute("title");
  total.append(usd(cost));
  const note = unpricedText(unpriced);
  if (note) {
    const small = span("unpriced muted", note, "requests without a known price: their cost is not in this total", "unpriced");
    small.style.cssText = "margin-left: 0.4em; font-size: 0.75em; font-weight: normal; white-space: nowrap";
    total.append(" ", small);
  }
  return total;
}
