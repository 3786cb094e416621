// System: version, uptime, host and process resources, log writer, registry, provider health, the instances
// of the cluster (live, from the ws `metrics`), and the live event feed (provider up/down, config changed,
// registry refreshed, logins).

import { get } from "../api";
import { append, clear, fmtBytes, fmtInt, fmtMs, fmtNum, fmtPct, fmtTime, h, type Child } from "../dom";
import { usd } from "../format";
import { live } from "../live";
import type { ClusterStatus, HubEvent, InstanceMetrics, Metrics } from "../types";
import { badge, card, errorText, pageHeader, table, type Column, type PageCtx } from "../ui";

interface SystemInfo {
  version: string;
  uptime_s: number;
  host: { cpu_percent: number; memory: { total: number; used: number; percent: number }; disk: Record<string, number> };
  process: { cpu_percent: number; rss_bytes: number };
  log: { queue_depth: number; writer_lag_s: number; rows_written: number };
  registry: Record<string, unknown>;
  price_source?: string;
  providers: { name: string; error_rate: number | null; p50_ms: number | null; requests: number }[];
}

function uptime(s: number): string {
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${hh}h ${m}m` : hh ? `${hh}h ${m}m` : `${m}m ${Math.floor(s % 60)}s`;
}

function scalar(v: unknown): string {
  if (v === null || v === undefined) return "—";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** "last_error" -> "Last error": for names the page has no label of its own for. */
function humanize(name: string): string {
  const words = name.replace(/_/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function ago(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

/** Where prices come from, in words: the registry snapshot, or the offline data bundled with the gateway. */
function priceSource(source: unknown): string {
  if (typeof source !== "string" || source === "" || source === "none") return "none (no registry copy, no offline data)";
  if (source.startsWith("genai-prices")) {
    const version = source.split(":")[1];
    return `bundled offline data (genai-prices${version ? ` ${version}` : ""})`;
  }
  return `registry snapshot ${source}`;
}

/** The registry status as label/value pairs a person reads: known fields first, in this order. */
function registryRows(reg: Record<string, unknown>, prices: string | undefined): [string, string][] {
  const rows: [string, string][] = [];
  const offline = reg.source !== "models.dev";
  rows.push(["Source", offline ? "no registry copy yet (prices from the bundled offline data)" : "models.dev"]);
  if (!offline) rows.push(["Models", fmtInt(typeof reg.models === "number" ? reg.models : null)]);
  if (reg.snapshot) rows.push(["Snapshot", String(reg.snapshot)]);
  const age = typeof reg.age_seconds === "number" ? reg.age_seconds : null;
  rows.push(["Last checked", reg.fetched_at ? `${fmtTime(String(reg.fetched_at))}${age !== null ? ` (${ago(age)})` : ""}` : "never"]);
  const failures = typeof reg.failures === "number" ? reg.failures : 0;
  rows.push(["Last check", reg.last_error ? `failed: ${String(reg.last_error)}` : reg.fetched_at ? "succeeded" : "not yet"]);
  if (failures > 1) rows.push(["Failed checks in a row", fmtInt(failures)]);
  if (prices !== undefined) rows.push(["Prices from", priceSource(prices)]);
  const known = new Set(["source", "models", "snapshot", "age_seconds", "fetched_at", "last_error", "failures"]);
  for (const [k, v] of Object.entries(reg)) if (!known.has(k)) rows.push([humanize(k), scalar(v)]);
  return rows;
}

/** What the live figures cover: the cluster through Redis, this instance alone, or a gateway without Redis. */
function clusterLine(c: ClusterStatus): Child[] {
  const line: Child[] =
    c.redis === "connected"
      ? [`Cluster: ${fmtInt(c.instances)} ${c.instances === 1 ? "instance" : "instances"}, Redis connected`]
      : c.redis === "unreachable"
        ? [badge("Redis unreachable", "warn"), ": figures are this instance's only"]
        : ["Single instance (no Redis)"];
  if (c.hub_dropped > 0) {
    line.push(h("span", { class: "muted", "data-testid": "hub-dropped" }, ` · ${fmtInt(c.hub_dropped)} live messages dropped on the way to Redis`));
  }
  return line;
}

function lastReport(age: number): string {
  return age < 60 ? `${fmtNum(age)} s ago` : ago(age);
}

const INSTANCE_COLUMNS: Column<InstanceMetrics>[] = [
  { title: "Instance", cell: (i) => i.instance },
  { title: "Requests/s", cell: (i) => fmtNum(i.requests_per_s, 2), class: "num" },
  { title: "Tokens/s", cell: (i) => fmtNum(i.tokens_per_s), class: "num" },
  { title: "Cost/min", cell: (i) => usd(i.cost_per_min_usd), class: "num" },
  { title: "Error rate", cell: (i) => fmtPct(i.error_rate), class: "num" },
  { title: "p95", cell: (i) => fmtMs(i.p95_ms), class: "num" },
  { title: "Log queue", cell: (i) => fmtInt(i.queue_depth), class: "num" },
  { title: "CPU", cell: (i) => `${fmtNum(i.cpu_percent)}%`, class: "num" },
  { title: "Memory", cell: (i) => `${fmtNum(i.memory_percent)}%`, class: "num" },
  { title: "Processes", cell: (i) => fmtInt(i.processes), class: "num" },
  { title: "Last report", cell: (i) => lastReport(i.age_s), class: "num" },
];

const EVENT_NAMES: Record<string, string> = {
  provider_up: "Provider up",
  provider_down: "Provider down",
  config_changed: "Configuration changed",
  registry_refreshed: "Registry refreshed",
  user_logged_in: "User logged in",
  target_cooled_down: "Target cooling down",
  target_recovered: "Target recovered",
};

function eventDetail(detail: Record<string, unknown> | null | undefined): string {
  if (!detail || typeof detail !== "object") return scalar(detail);
  return Object.entries(detail)
    .map(([k, v]) => `${k.replace(/_/g, " ")} ${typeof v === "number" ? fmtInt(v) : scalar(v)}`)
    .join(", ");
}

function eventRow(e: HubEvent): HTMLElement {
  return h(
    "li",
    null,
    h("span", { class: "muted" }, fmtTime(e.ts)),
    " ",
    h("b", null, EVENT_NAMES[e.kind] ?? humanize(e.kind)),
    " ",
    h("span", null, eventDetail(e.detail)),
    e.instance ? h("span", { class: "muted" }, ` on ${e.instance}`) : "",
  );
}

export function systemPage(ctx: PageCtx): void {
  const body = h("div", { "data-testid": "system-info" }, h("div", { class: "muted" }, "Loading…"));
  const events = h("ul", { class: "events", "data-testid": "events" });
  const noEvents = h(
    "div",
    { class: "empty", "data-testid": "events-empty" },
    "No events yet: providers going up or down, configuration changes, registry refreshes and logins show here as they happen.",
  );
  const showEmpty = (): void => {
    noEvents.hidden = events.children.length > 0;
  };
  // Hidden until a metrics message says what it covers (an older server's has no instances: nothing to show).
  const instances = h("section", { "data-testid": "instances", hidden: true });
  const showInstances = (m: Metrics | null): void => {
    if (!m || (!m.cluster && !m.instances)) {
      instances.hidden = true;
      return;
    }
    instances.hidden = false;
    clear(instances);
    append(instances, [
      h("h3", null, "Instances"),
      m.cluster ? h("p", { class: "page-note", "data-testid": "cluster-status", "data-redis": m.cluster.redis }, clusterLine(m.cluster)) : null,
      table(INSTANCE_COLUMNS, m.instances ?? [], {
        testid: "instances-table",
        empty: "No instance has reported yet",
        rowProps: (i) => ({ "data-instance": i.instance }),
      }),
    ]);
  };
  ctx.root.append(pageHeader("System"), body, instances, h("h3", null, "Events"), noEvents, events);
  showInstances(live.lastMetrics);
  for (const e of live.events.slice(-50).reverse()) events.appendChild(eventRow(e));
  showEmpty();

  const load = async (): Promise<void> => {
    try {
      const s = await get<SystemInfo>("/api/system");
      const disk = s.host.disk ?? {};
      body.replaceChildren(
        h(
          "div",
          { class: "cards" },
          card("Version", s.version),
          card("Uptime", uptime(s.uptime_s)),
          card("Host CPU", `${fmtNum(s.host.cpu_percent)}%`),
          card("Host memory", `${fmtBytes(s.host.memory.used)} / ${fmtBytes(s.host.memory.total)} (${fmtNum(s.host.memory.percent)}%)`),
          card("Disk", disk.total !== undefined ? `${fmtBytes(disk.used)} / ${fmtBytes(disk.total)} (${fmtNum(disk.percent)}%)` : scalar(disk)),
          card("Process CPU", `${fmtNum(s.process.cpu_percent)}%`),
          card("Process RSS", fmtBytes(s.process.rss_bytes)),
          card("Log queue", String(s.log.queue_depth)),
          card("Writer lag", `${fmtNum(s.log.writer_lag_s, 2)} s`),
          card("Rows written", String(s.log.rows_written)),
        ),
        h("h3", null, "Registry"),
        h(
          "dl",
          { class: "kv", "data-testid": "registry-info" },
          registryRows(s.registry ?? {}, s.price_source).map(([k, v]) => [h("dt", null, k), h("dd", null, v)]),
        ),
        h("h3", null, "Provider health"),
        table(
          [
            { title: "Provider", cell: (p: SystemInfo["providers"][number]) => p.name },
            { title: "Requests", cell: (p) => String(p.requests), class: "num" },
            { title: "Error rate", cell: (p) => fmtPct(p.error_rate), class: "num" },
            { title: "p50", cell: (p) => fmtMs(p.p50_ms), class: "num" },
          ],
          s.providers ?? [],
          { empty: "No provider traffic yet" },
        ),
      );
    } catch (err) {
      body.replaceChildren(h("div", { class: "form-error" }, errorText(err)));
    }
  };
  void load();
  const timer = window.setInterval(() => void load(), 5000);
  const unsubscribe = live.subscribe((batch) => {
    if (batch.metrics.length) showInstances(batch.metrics[batch.metrics.length - 1]);
    for (const e of batch.events) events.insertBefore(eventRow(e), events.firstChild);
    while (events.children.length > 100) events.lastChild?.remove();
    showEmpty();
  });
  ctx.onLeave(() => {
    window.clearInterval(timer);
    unsubscribe();
  });
}
