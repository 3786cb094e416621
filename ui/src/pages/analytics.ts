// Analytics & costs: range, bucket and grouping selectors (model, provider, routing target, client key, model
// group); requests, cost, tokens and latency charts from the rollups; totals; top N with each row's prompt-cache hit
// ratio; CSV export of the same time series.

import { get, withQuery } from "../api";
import { groupLabel, tickDecimals, TimeChart, toUnix, type SeriesSpec } from "../chart";
import { fmtInt, fmtMs, fmtPct, h } from "../dom";
import { costTotal, formatUsd } from "../format";
import type { Point, Timeseries, TopRow, Totals } from "../types";
import { card, errorText, localToIso, pageHeader, RANGES, rangeFrom, table, type PageCtx } from "../ui";

type Metric = (p: Point) => number | null;

const DEFAULT_BUCKET: Record<string, string> = {
  "15m": "minute",
  "1h": "minute",
  "6h": "minute",
  "24h": "hour",
  "7d": "hour",
  "30d": "day",
};

function select(name: string, options: [string, string][], value: string): HTMLSelectElement {
  return h(
    "select",
    { name, "data-testid": `analytics-${name}` },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)),
  );
}

/** Align several series (each with its own timestamps) on one x axis for uPlot. */
function align(ts: Timeseries, metric: Metric, groupBy: string): { xs: number[]; ys: (number | null)[][]; keys: string[] } {
  const xsSet = new Set<number>();
  for (const s of ts.series) for (const p of s.points) xsSet.add(toUnix(p.t));
  const xs = [...xsSet].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const ys = ts.series.map((s) => {
    const col: (number | null)[] = new Array<number | null>(xs.length).fill(null);
    for (const p of s.points) col[index.get(toUnix(p.t)) ?? 0] = metric(p);
    return col;
  });
  // Client keys by name (a deleted key by its id); a series without a key, model or provider by one label.
  const label = (s: Timeseries["series"][number]): string =>
    s.client_key_name ?? (s.client_key_name === null && s.key ? `#${s.key}` : groupLabel(s.key, groupBy));
  return { xs, ys, keys: ts.series.map(label) };
}

export function analyticsPage(ctx: PageCtx): void {
  const range = select("range", [...Object.keys(RANGES).map((k): [string, string] => [k, `last ${k}`]), ["custom", "custom…"]], "24h");
  const fromInput = h("input", { type: "datetime-local", name: "from", hidden: true });
  const toInput = h("input", { type: "datetime-local", name: "to", hidden: true });
  const bucket = select("bucket", [["minute", "per minute"], ["hour", "per hour"], ["day", "per day"]], "hour");
  const groupBy = select(
    "group_by",
    [
      ["none", "no grouping"],
      ["model", "by model"],
      ["provider", "by provider"],
      ["target", "by target"],
      ["client", "by client key"],
      ["group", "by model group"],
    ],
    "none",
  );
  const topBy = select(
    "top_by",
    [["model", "model"], ["provider", "provider"], ["target", "target"], ["client", "client key"], ["group", "model group"]],
    "model",
  );
  const topMetric = select("top_metric", [["cost", "cost"], ["requests", "requests"], ["tokens", "tokens"]], "cost");
  const exportLink = h("a", { class: "btn", "data-testid": "export-csv", download: "gophergate-analytics.csv" }, "Export CSV");
  const apply = h("button", { type: "button", class: "btn btn-primary", "data-testid": "analytics-apply" }, "Apply");

  const charts = {
    requests: new TimeChart("Requests", { testid: "chart-requests" }),
    cost: new TimeChart("Cost (USD)", {
      testid: "chart-cost",
      yFormat: (v, step) => `$${v.toFixed(Math.max(2, tickDecimals(step)))}`,
      nullText: "?",
      valueFormat: formatUsd,
    }),
    tokens: new TimeChart("Tokens", { testid: "chart-tokens" }),
    latency: new TimeChart("Latency (ms)", { testid: "chart-latency" }),
    errors: new TimeChart("Error rate (%)", { testid: "chart-errors", tone: "errors" }),
  };
  const totals = h("div", { class: "cards", "data-testid": "analytics-totals" });
  // Under the cost chart: how many requests of the range had no known price (their cost is not drawn).
  const costNote = h("div", { class: "muted", "data-testid": "chart-cost-unpriced", hidden: true });
  charts.cost.root.append(costNote);
  const top = h("div", { "data-testid": "analytics-top" });

  range.addEventListener("change", () => {
    const custom = range.value === "custom";
    fromInput.hidden = !custom;
    toInput.hidden = !custom;
    if (!custom) bucket.value = DEFAULT_BUCKET[range.value] ?? "hour";
  });

  ctx.root.append(
    pageHeader("Analytics & costs"),
    h(
      "div",
      { class: "toolbar" },
      range,
      fromInput,
      toInput,
      bucket,
      groupBy,
      apply,
      exportLink,
    ),
    totals,
    h("div", { class: "chart-grid" }, charts.requests.root, charts.cost.root, charts.tokens.root, charts.latency.root, charts.errors.root),
    h("div", { class: "page-header" }, h("h3", null, "Top"), h("div", { class: "actions" }, topMetric, h("span", null, "by"), topBy)),
    top,
  );

  const currentRange = (): { from: string; to: string } => {
    if (range.value !== "custom") return rangeFrom(range.value);
    const fallback = rangeFrom("24h");
    return { from: localToIso(fromInput.value) || fallback.from, to: localToIso(toInput.value) || fallback.to };
  };

  // Only the latest answer is shown: an older one that lands later (the grouping changed meanwhile) is dropped.
  let topAsked = 0;
  const loadTop = async (r: { from: string; to: string }): Promise<void> => {
    const asked = ++topAsked;
    const by = topBy.value;
    try {
      const res = await get<{ data: TopRow[] }>("/api/analytics/top", { ...r, by, metric: topMetric.value, n: 10 });
      if (asked !== topAsked) return;
      top.replaceChildren(
        table(
          [
            {
              title: by,
              cell: (x: TopRow) =>
                x.client_key_name !== undefined && x.key !== null
                  ? h("span", { title: `client key id ${x.key}` }, x.client_key_name ?? `#${x.key}`)
                  : groupLabel(x.key, by),
            },
            { title: "Requests", cell: (x) => fmtInt(x.requests), class: "num" },
            { title: "Tokens", cell: (x) => fmtInt(x.tokens), class: "num" },
            { title: "Cost", cell: (x) => costTotal(x.cost_usd, x.unpriced_requests), class: "num" },
            // Cache reads over prompt tokens: how well routing's cache affinity keeps provider caches warm.
            { title: "Cache hits", cell: (x) => fmtPct(x.cache_hit_ratio), class: "num" },
          ],
          res.data,
          { empty: "No requests in this range" },
        ),
      );
    } catch (err) {
      if (asked === topAsked) top.replaceChildren(h("div", { class: "empty" }, `No data (${errorText(err)})`));
    }
  };

  // As for the top table: only the latest answers are drawn, with the grouping they were asked with (an older
  // answer that lands after the range or grouping changed would otherwise be labelled with the new grouping).
  let asked = 0;
  const load = async (): Promise<void> => {
    const mine = ++asked;
    const r = currentRange();
    const by = groupBy.value;
    const q = { ...r, bucket: bucket.value, group_by: by };
    exportLink.href = withQuery("/api/analytics/export.csv", q);
    void loadTop(r);
    get<Totals>("/api/analytics/totals", r).then(
      (t) =>
        mine === asked &&
        totals.replaceChildren(
          card("Requests", fmtInt(t.requests)),
          card("Errors", fmtInt(t.errors)),
          card("Prompt tokens", fmtInt(t.prompt_tokens)),
          card("Completion tokens", fmtInt(t.completion_tokens)),
          card("Cost", costTotal(t.cost_usd, t.unpriced_requests), "analytics-total-cost"),
          card("p50 / p95", `${fmtMs(t.p50_ms)} / ${fmtMs(t.p95_ms)}`),
          card("Cache hits", fmtPct(t.cache_hit_ratio), "analytics-total-cache"),
        ),
      (err) =>
        mine === asked && totals.replaceChildren(h("div", { class: "empty" }, `Totals unavailable (${errorText(err)})`)),
    );
    let ts: Timeseries;
    try {
      ts = await get<Timeseries>("/api/analytics/timeseries", q);
    } catch (err) {
      if (mine === asked) for (const c of Object.values(charts)) c.failed(errorText(err));
      return;
    }
    if (mine !== asked) return;
    const grouped = by !== "none";
    const span: [number, number] = [toUnix(r.from), toUnix(r.to)];
    // Buckets come zero-filled: the range has data when it has a request (then a 0% error rate is data too).
    const hasData = ts.series.some((s) => s.points.some((p) => p.requests > 0));
    const draw = (chart: TimeChart, metric: Metric): void => {
      const a = align(ts, metric, by);
      chart.setData(a.xs, a.keys.map((k): SeriesSpec => ({ label: k })), a.ys, span, { hasData });
    };
    draw(charts.requests, (p) => p.requests);
    // A bucket whose requests all had no known price has no cost to draw: a gap ("?"), never a 0.
    draw(charts.cost, (p) => (p.cost_usd === null ? null : Number(p.cost_usd)));
    let unpriced = 0;
    for (const s of ts.series) for (const p of s.points) unpriced += p.unpriced_requests;
    costNote.hidden = unpriced === 0;
    costNote.textContent = unpriced
      ? `${fmtInt(unpriced)} request${unpriced === 1 ? "" : "s"} without a known price: not in this chart`
      : "";
    draw(charts.errors, (p) => p.error_rate * 100);
    if (grouped) {
      draw(charts.tokens, (p) => p.prompt_tokens + p.completion_tokens);
      draw(charts.latency, (p) => p.p95_ms);
    } else {
      // One series: break tokens down by class and show both latency percentiles.
      const pts = ts.series[0]?.points ?? [];
      const xs = pts.map((p) => toUnix(p.t));
      charts.tokens.setData(
        xs,
        [{ label: "prompt" }, { label: "completion" }, { label: "reasoning" }, { label: "cache read" }, { label: "cache write" }],
        [
          pts.map((p) => p.prompt_tokens),
          pts.map((p) => p.completion_tokens),
          pts.map((p) => p.reasoning_tokens),
          pts.map((p) => p.cache_read_tokens),
          pts.map((p) => p.cache_write_tokens),
        ],
        span,
        { hasData },
      );
      charts.latency.setData(xs, [{ label: "p50" }, { label: "p95" }], [pts.map((p) => p.p50_ms), pts.map((p) => p.p95_ms)], span, { hasData });
    }
  };

  apply.addEventListener("click", () => void load());
  bucket.addEventListener("change", () => void load());
  groupBy.addEventListener("change", () => void load());
  range.addEventListener("change", () => {
    if (range.value !== "custom") void load();
  });
  topBy.addEventListener("change", () => void loadTop(currentRange()));
  topMetric.addEventListener("change", () => void loadTop(currentRange()));
  void load();
  ctx.onLeave(() => {
    for (const c of Object.values(charts)) c.destroy();
  });
}
