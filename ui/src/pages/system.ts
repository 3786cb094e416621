// System: version, uptime, host and process resources, log writer, registry, provider health, and the
// live event feed (provider up/down, config changed, registry refreshed, logins).

import { get } from "../api";
import { fmtBytes, fmtMs, fmtNum, fmtPct, fmtTime, h } from "../dom";
import { live } from "../live";
import type { HubEvent } from "../types";
import { card, errorText, pageHeader, table, type PageCtx } from "../ui";

interface SystemInfo {
  version: string;
  uptime_s: number;
  host: { cpu_percent: number; memory: { total: number; used: number; percent: number }; disk: Record<string, number> };
  process: { cpu_percent: number; rss_bytes: number };
  log: { queue_depth: number; writer_lag_s: number; rows_written: number };
  registry: Record<string, unknown>;
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

function eventRow(e: HubEvent): HTMLElement {
  return h("li", null, h("span", { class: "muted" }, fmtTime(e.ts)), " ", h("b", null, e.kind), " ", h("span", null, scalar(e.detail)));
}

export function systemPage(ctx: PageCtx): void {
  const body = h("div", { "data-testid": "system-info" }, h("div", { class: "muted" }, "Loading…"));
  const events = h("ul", { class: "events", "data-testid": "events" });
  ctx.root.append(pageHeader("System"), body, h("h3", null, "Events"), events);
  for (const e of live.events.slice(-50).reverse()) events.appendChild(eventRow(e));

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
        h("dl", { class: "kv" }, Object.entries(s.registry ?? {}).map(([k, v]) => [h("dt", null, k), h("dd", null, scalar(v))])),
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
    for (const e of batch.events) events.insertBefore(eventRow(e), events.firstChild);
    while (events.children.length > 100) events.lastChild?.remove();
  });
  ctx.onLeave(() => {
    window.clearInterval(timer);
    unsubscribe();
  });
}
