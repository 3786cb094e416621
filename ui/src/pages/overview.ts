// Overview: live counters (ws `metrics`), a live throughput chart, requests per minute over the last hour
// (analytics rollups, bumped by each ws `request`), totals for 24 h, and the most recent requests: the latest
// rows from /api/requests first, then each new one from /ws on top (none twice).

import { get, type Page } from "../api";
import { TimeChart, toUnix } from "../chart";
import { fmtInt, fmtMs, fmtNum, fmtPct, h } from "../dom";
import { costTotal } from "../format";
import { live } from "../live";
import { LiveRows, requestHead } from "../rows";
import type { Metrics, RequestItem, Timeseries, Totals } from "../types";
import { card, errorText, pageHeader, rangeFrom, type PageCtx } from "../ui";

const VISIBLE_ROWS = 50;

export function overviewPage(ctx: PageCtx): void {
  const counters = {
    rps: h("span", null, "—"),
    tps: h("span", null, "—"),
    cost: h("span", null, "—"),
    err: h("span", null, "—"),
    p95: h("span", null, "—"),
    cpu: h("span", null, "—"),
    mem: h("span", null, "—"),
    queue: h("span", null, "—"),
  };
  // Shown only when the live figures add up several instances (through Redis); each one is on the System page.
  const instancesHint = h("a", { href: "#/system", class: "muted", "data-testid": "cluster-hint", hidden: true });
  const showMetrics = (m: Metrics | null): void => {
    if (!m) return;
    counters.rps.textContent = fmtNum(m.requests_per_s, 2);
    counters.tps.textContent = fmtNum(m.tokens_per_s, 1);
    counters.cost.replaceChildren(costTotal(m.cost_per_min_usd, m.unpriced_requests));
    counters.err.textContent = fmtPct(m.error_rate);
    counters.p95.textContent = fmtMs(m.p95_ms);
    counters.cpu.textContent = `${fmtNum(m.cpu_percent)}%`;
    counters.mem.textContent = `${fmtNum(m.memory_percent)}%`;
    counters.queue.textContent = fmtInt(m.queue_depth);
    const n = m.cluster?.instances ?? 1;
    instancesHint.hidden = n <= 1;
    instancesHint.textContent = `${fmtInt(n)} instances`;
    instancesHint.title = `Live figures of ${fmtInt(n)} instances together; each one on the System page`;
  };

  const liveChart = new TimeChart("Live throughput (requests/s, errors %)", { height: 180, testid: "live-chart" });
  const minuteChart = new TimeChart("Requests per minute, last hour", { height: 180, testid: "overview-chart" });
  const totals = h("div", { class: "cards" });
  const rows = new LiveRows(VISIBLE_ROWS);
  const recentState = h("div", { class: "empty", "data-testid": "recent-empty" }, "Loading recent requests…");
  rows.onCount = (n) => {
    recentState.hidden = n > 0;
  };

  ctx.root.append(
    pageHeader("Overview", instancesHint),
    h(
      "div",
      { class: "cards", "data-testid": "live-counters" },
      card("Requests/s", counters.rps, "counter-rps"),
      card("Tokens/s", counters.tps, "counter-tps"),
      card("Cost/min", counters.cost, "counter-cost"),
      card("Error rate", counters.err, "counter-errors"),
      card("p95 latency", counters.p95, "counter-p95"),
      card("CPU", counters.cpu),
      card("Memory", counters.mem),
      card("Log queue", counters.queue),
    ),
    h("div", { class: "chart-grid" }, minuteChart.root, liveChart.root),
    h("h3", null, "Last 24 hours"),
    totals,
    h("h3", null, "Recent requests"),
    h("table", { class: "grid live", "data-testid": "live-table" }, requestHead(), rows.tbody),
    recentState,
  );

  // Live metrics chart.
  const drawLive = (): void => {
    const hist = live.metricsHistory;
    const xs = hist.map((m) => toUnix(m.ts));
    const end = xs.length ? xs[xs.length - 1] : Math.floor(Date.now() / 1000);
    // A fixed window: with one or two samples an automatic range would stretch over years.
    liveChart.setData(
      xs,
      [{ label: "requests/s" }, { label: "error %" }],
      [hist.map((m) => m.requests_per_s), hist.map((m) => m.error_rate * 100)],
      [end - 300, end],
    );
  };

  // Requests per minute: rollups from the API plus the live requests that arrived since.
  let minuteXs: number[] = [];
  let minuteReq: number[] = [];
  let minuteErr: number[] = [];
  const drawMinutes = (): void => {
    const now = Math.floor(Date.now() / 1000);
    minuteChart.setData(minuteXs, [{ label: "requests" }, { label: "errors" }], [minuteReq, minuteErr], [now - 3600, now + 60]);
  };
  let loadedAt = 0;
  const loadMinutes = async (): Promise<void> => {
    const { from, to } = rangeFrom("1h");
    try {
      const ts = await get<Timeseries>("/api/analytics/timeseries", { from, to, bucket: "minute", group_by: "none" });
      const points = ts.series[0]?.points ?? [];
      minuteXs = points.map((p) => toUnix(p.t));
      minuteReq = points.map((p) => p.requests);
      minuteErr = points.map((p) => p.errors);
      loadedAt = Date.parse(to);
      drawMinutes();
    } catch (err) {
      minuteChart.failed(errorText(err));
    }
  };
  const bumpMinute = (createdAt: string, isError: boolean): void => {
    if (loadedAt && Date.parse(createdAt) <= loadedAt) return; // already counted by the rollup read
    const t = Math.floor(toUnix(createdAt) / 60) * 60;
    if (!Number.isFinite(t)) return;
    const last = minuteXs.length - 1;
    if (last >= 0 && minuteXs[last] === t) {
      minuteReq[last] += 1;
      if (isError) minuteErr[last] += 1;
    } else if (last < 0 || minuteXs[last] < t) {
      minuteXs.push(t);
      minuteReq.push(1);
      minuteErr.push(isError ? 1 : 0);
      while (minuteXs.length > 0 && minuteXs[0] < t - 3600) {
        minuteXs.shift();
        minuteReq.shift();
        minuteErr.shift();
      }
    }
  };

  const loadTotals = async (): Promise<void> => {
    try {
      const t = await get<Totals>("/api/analytics/totals", rangeFrom("24h"));
      totals.replaceChildren(
        card("Requests", fmtInt(t.requests), "total-requests"),
        card("Errors", fmtInt(t.errors)),
        card("Prompt tokens", fmtInt(t.prompt_tokens)),
        card("Completion tokens", fmtInt(t.completion_tokens)),
        card("Cost", costTotal(t.cost_usd, t.unpriced_requests), "total-cost"),
        card("p50 / p95", `${fmtMs(t.p50_ms)} / ${fmtMs(t.p95_ms)}`),
      );
    } catch (err) {
      totals.replaceChildren(h("div", { class: "empty" }, `Totals unavailable (${errorText(err)})`));
    }
  };

  // Recent requests: what the live feed already holds at once, then the latest logged rows merged in.
  const loadRecent = async (): Promise<void> => {
    try {
      const page = await get<Page<RequestItem>>("/api/requests", { limit: VISIBLE_ROWS });
      rows.replace([...page.data, ...rows.items()], VISIBLE_ROWS);
      if (rows.size === 0) recentState.textContent = "No requests yet: send one through /v1 and it appears here.";
    } catch (err) {
      recentState.textContent = `Recent requests unavailable (${errorText(err)})`;
      recentState.hidden = false;
    }
  };

  showMetrics(live.lastMetrics);
  drawLive();
  rows.prepend(live.recent.slice(-VISIBLE_ROWS));
  void loadRecent();
  void loadMinutes();
  void loadTotals();

  const unsubscribe = live.subscribe((batch) => {
    if (batch.metrics.length) {
      showMetrics(batch.metrics[batch.metrics.length - 1]);
      drawLive();
    }
    if (batch.requests.length) {
      rows.prepend(batch.requests);
      for (const r of batch.requests) bumpMinute(r.created_at, r.status >= 400);
      drawMinutes();
    }
  });
  const timer = window.setInterval(() => {
    void loadMinutes();
    void loadTotals();
  }, 10_000);
  ctx.onLeave(() => {
    unsubscribe();
    window.clearInterval(timer);
    liveChart.destroy();
    minuteChart.destroy();
  });
}
