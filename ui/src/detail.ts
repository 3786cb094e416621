// A request log row, readable: status, model and provider, the time, where the time went (gateway overhead,
// upstream, first token), tokens and cost by class, the error; every raw column stays one click away.

import { fmtInt, fmtTime, h } from "./dom";
import { exactUsd, formatUsd } from "./format";
import { keyLabel, statusClass } from "./rows";
import type { RequestAttempt, RequestDetail } from "./types";
import "./detail.css";

/** A duration with precision that suits its size: 0.42 ms, 33.3 ms, 512 ms, 1.24 s. */
export function fmtDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

function costCell(s: string | null | undefined, unknown: boolean): HTMLElement {
  return h("span", { title: exactUsd(unknown ? null : s) }, formatUsd(unknown ? null : s));
}

function statusText(d: RequestDetail): string {
  if (d.status === 499) return "499 client closed the connection";
  if (d.status >= 400) return `${d.status} ${d.error_type ?? "error"}`;
  return `${d.status} OK`;
}

function ago(iso: string): string {
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(s) || s < 0) return "";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function pct(part: number, whole: number): string {
  return `${Math.max(0, Math.min(100, (part / whole) * 100)).toFixed(2)}%`;
}

/** Where the time went: gateway overhead and upstream as shares of the total, the first token as a mark. */
function timing(d: RequestDetail): HTMLElement {
  const total = d.latency_ms ?? 0;
  const upstream = d.upstream_ms ?? null;
  const gateway = d.overhead_ms ?? (upstream === null ? total : Math.max(total - upstream, 0));
  const bar = h("div", { class: "timing-bar", "data-testid": "timing-bar", role: "img" });
  const parts: string[] = [];
  if (total > 0) {
    bar.append(
      h("span", { class: "seg seg-gateway", style: `width:${pct(gateway, total)}`, title: `gateway overhead ${fmtDuration(gateway)}` }),
    );
    if (upstream !== null) {
      bar.append(h("span", { class: "seg seg-upstream", style: `width:${pct(upstream, total)}`, title: `upstream ${fmtDuration(upstream)}` }));
    }
    if (d.ttfb_ms !== null && d.ttfb_ms !== undefined) {
      bar.append(h("span", { class: "mark-ttfb", style: `left:${pct(d.ttfb_ms, total)}`, title: `first token at ${fmtDuration(d.ttfb_ms)}` }));
    }
  }
  parts.push(`gateway ${fmtDuration(gateway)}`);
  if (upstream !== null) parts.push(`upstream ${fmtDuration(upstream)}`);
  if (d.ttfb_ms !== null && d.ttfb_ms !== undefined) parts.push(`first token at ${fmtDuration(d.ttfb_ms)}`);
  bar.setAttribute("aria-label", parts.join(", "));
  const legend = h(
    "div",
    { class: "timing-legend" },
    h("span", null, h("i", { class: "sw sw-gateway" }), "gateway ", h("b", { "data-testid": "timing-gateway" }, fmtDuration(gateway))),
    upstream !== null ? h("span", null, h("i", { class: "sw sw-upstream" }), "upstream ", h("b", { "data-testid": "timing-upstream" }, fmtDuration(upstream))) : null,
    d.ttfb_ms !== null && d.ttfb_ms !== undefined
      ? h("span", null, h("i", { class: "sw sw-ttfb" }), "first token ", h("b", { "data-testid": "timing-ttfb" }, fmtDuration(d.ttfb_ms)))
      : null,
  );
  return h(
    "section",
    { class: "detail-section" },
    h("h4", null, "Timing ", h("span", { class: "muted", "data-testid": "timing-total" }, fmtDuration(total))),
    bar,
    legend,
    upstream === null ? h("div", { class: "muted small" }, "The upstream was not called.") : null,
  );
}

function tokens(d: RequestDetail): HTMLElement {
  const rows: [string, number | null, string?][] = [
    ["Prompt", d.prompt_tokens],
    ["  cache read", d.cache_read_tokens, "sub"],
    ["  cache write", d.cache_write_tokens, "sub"],
    ["Completion", d.completion_tokens],
    ["  reasoning", d.reasoning_tokens, "sub"],
  ];
  const total = (d.prompt_tokens ?? 0) + (d.completion_tokens ?? 0);
  return h(
    "section",
    { class: "detail-section" },
    h("h4", null, "Tokens ", h("span", { class: "muted" }, fmtInt(total)), d.estimated ? h("span", { class: "badge badge-warn", title: "the upstream reported no usage: counted locally" }, "estimated") : null),
    h(
      "table",
      { class: "detail-table", "data-testid": "detail-tokens" },
      h(
        "tbody",
        null,
        rows
          .filter(([, n, sub]) => !sub || (n ?? 0) > 0)
          .map(([label, n, sub]) => h("tr", { class: sub ? "sub" : undefined }, h("td", null, label.trim()), h("td", { class: "num" }, fmtInt(n)))),
      ),
    ),
  );
}

function cost(d: RequestDetail): HTMLElement {
  const unknown = d.price_unknown || d.cost_usd === null;
  const parts: [string, string | null][] = [
    ["Input", d.cost_input_usd],
    ["Cache read", d.cost_cache_read_usd],
    ["Cache write", d.cost_cache_write_usd],
    ["Output", d.cost_output_usd],
    ["Reasoning", d.cost_reasoning_usd],
  ];
  const shown = parts.filter(([, v]) => v !== null && Number(v) !== 0);
  return h(
    "section",
    { class: "detail-section" },
    h("h4", null, "Cost ", h("span", { class: "muted", "data-testid": "detail-cost" }, costCell(d.cost_usd, unknown))),
    unknown
      ? h("div", { class: "muted small" }, "No price is known for this model: the tokens are logged, the cost is not.")
      : h(
          "table",
          { class: "detail-table" },
          h(
            "tbody",
            null,
            shown.map(([label, v]) => h("tr", null, h("td", null, label), h("td", { class: "num" }, costCell(v, false)))),
          ),
        ),
    d.price_source ? h("div", { class: "muted small" }, `Priced from ${d.price_source}`) : null,
  );
}

function error(d: RequestDetail): HTMLElement | null {
  if (!d.error_type && !d.error_message) return null;
  return h(
    "section",
    { class: "detail-section detail-error", "data-testid": "detail-error" },
    h("h4", null, "Error ", d.error_type ? h("code", null, d.error_type) : null),
    d.error_message ? h("div", { class: "error-message" }, d.error_message) : null,
  );
}

/** Every attempt of a request that routing retried or sent elsewhere, this row's highlighted. */
function attempts(d: RequestDetail): HTMLElement | null {
  const list: RequestAttempt[] = d.attempts ?? [];
  if (list.length < 2) return null;
  return h(
    "section",
    { class: "detail-section", "data-testid": "detail-attempts" },
    h("h4", null, "Attempts ", h("span", { class: "muted" }, String(list.length))),
    h(
      "table",
      { class: "detail-table attempts-table" },
      h(
        "tbody",
        null,
        list.map((a) =>
          h(
            "tr",
            { class: a.id === d.id ? "current" : undefined, title: a.error_type ?? "" },
            h("td", null, `#${a.attempt}`),
            h("td", null, h("span", { class: statusClass(a.status) }, String(a.status))),
            h("td", { class: "attempt-target" }, a.provider ?? "—", h("div", { class: "muted small" }, a.model ?? "")),
            h("td", { class: "muted small" }, a.error_class ?? (a.final ? "answered" : "")),
            h("td", { class: "num" }, a.cost_usd === null ? "—" : costCell(a.cost_usd, false)),
            h("td", { class: "num" }, fmtDuration(a.latency_ms)),
          ),
        ),
      ),
    ),
  );
}

function rawValue(k: string, v: unknown): string {
  if (v === null || v === undefined) return "—";
  if (typeof v === "object") return JSON.stringify(v);
  return k.endsWith("_at") ? `${String(v)} (${fmtTime(String(v))})` : String(v);
}

/** The detail panel's content for one row. */
export function requestDetailView(d: RequestDetail, onClose: () => void): HTMLElement[] {
  const close = h("button", { type: "button", class: "btn btn-link", "data-testid": "detail-close" }, "Close");
  close.addEventListener("click", onClose);
  const key = keyLabel(d);
  const model = d.model ?? d.requested_model ?? "—";
  const requested = d.model && d.requested_model && d.requested_model !== d.model ? d.requested_model : null;
  return [
    h("div", { class: "page-header" }, h("h3", null, "Request"), close),
    h("div", { class: "detail-id" }, h("code", { "data-testid": "detail-request-id" }, d.request_id)),
    h(
      "div",
      { class: "detail-summary" },
      h("span", { class: statusClass(d.status), "data-testid": "detail-status" }, statusText(d)),
      h("span", { class: "badge" }, d.endpoint),
      d.stream ? h("span", { class: "badge" }, "stream") : null,
    ),
    h(
      "dl",
      { class: "kv", "data-testid": "detail-summary" },
      h("dt", null, "Time"),
      h("dd", { title: d.created_at, "data-testid": "detail-time" }, `${fmtTime(d.created_at)} `, h("span", { class: "muted" }, ago(d.created_at))),
      h("dt", null, "Model"),
      h("dd", null, model, requested ? h("span", { class: "muted" }, ` (asked for ${requested})`) : null),
      d.model_group ? [h("dt", null, "Model group"), h("dd", { "data-testid": "detail-model-group" }, d.model_group)] : null,
      h("dt", null, "Provider"),
      h("dd", null, d.provider ?? "—"),
      h("dt", null, "Client key"),
      h("dd", { title: key.title, "data-testid": "detail-key" }, key.text),
      d.finish_reason ? [h("dt", null, "Finish"), h("dd", null, d.finish_reason)] : null,
      d.client_ip ? [h("dt", null, "Client IP"), h("dd", null, d.client_ip)] : null,
      d.error_class ? [h("dt", null, "Upstream failure"), h("dd", { "data-testid": "detail-error-class" }, d.error_class)] : null,
    ),
    error(d),
    attempts(d),
    timing(d),
    tokens(d),
    cost(d),
    h(
      "details",
      { class: "detail-raw" },
      h("summary", null, "All columns"),
      h(
        "dl",
        { class: "kv" },
        Object.entries(d)
          .filter(([k]) => k !== "attempts") // not a column: shown above
          .map(([k, v]) => [h("dt", null, k), h("dd", null, rawValue(k, v))]),
      ),
    ),
  ].filter((x): x is HTMLElement => x !== null);
}
