// Routing views shared by the models page (the model groups) and the providers page (each target's state).

import { get } from "./api";
import { fmtInt, fmtMs, h } from "./dom";
import type { RoutingGroup, RoutingInfo, RoutingTargetRef, RoutingTargetState } from "./types";
import { badge, table } from "./ui";

export async function loadRouting(): Promise<RoutingInfo> {
  return get<RoutingInfo>("/api/routing");
}

function targetName(t: RoutingTargetRef): string {
  const served = t.provider ? `${t.provider}/${t.upstream_model}` : "not served";
  return t.model === served ? t.model : `${t.model} (${served})`;
}

/** The model groups: a client-facing name, its strategy and its targets in order, then its fallbacks. */
export function groupsTable(groups: RoutingGroup[]): HTMLElement {
  return table(
    [
      { title: "Group", cell: (g: RoutingGroup) => h("code", null, g.name) },
      { title: "Strategy", cell: (g) => g.strategy },
      {
        title: "Targets",
        cell: (g) =>
          g.targets.map((t) => h("div", null, targetName(t), g.strategy === "weighted" ? h("span", { class: "muted" }, ` ×${t.weight}`) : "")),
      },
      { title: "Fallbacks", cell: (g) => (g.fallbacks.length ? g.fallbacks.map((t) => h("div", null, targetName(t))) : "—") },
      { title: "Rules", cell: (g) => fmtInt(g.rules), class: "num" },
      { title: "Retries", cell: (g) => fmtInt(g.retries), class: "num" },
      { title: "Affinity", cell: (g) => g.affinity },
    ],
    groups,
    { testid: "groups-table", empty: "No model groups configured" },
  );
}

function stateBadge(t: RoutingTargetState): HTMLElement {
  if (t.state === "cooling_down") return badge(`cooling down ${Math.ceil(t.cooldown_remaining_s)} s`, "err");
  if (t.state === "half_open") return badge("half open", "warn");
  return badge("open", "ok");
}

/** Each target this process has routed to: open, cooling down or half open (the next request probes it). */
export function targetsTable(targets: RoutingTargetState[]): HTMLElement {
  return table(
    [
      { title: "Target", cell: (t: RoutingTargetState) => `${t.provider}/${t.model}` },
      { title: "State", cell: (t) => stateBadge(t) },
      { title: "In flight", cell: (t) => fmtInt(t.in_flight), class: "num" },
      { title: "Time to first token", cell: (t) => fmtMs(t.ttft_ms), class: "num" },
      { title: "Recent failures", cell: (t) => fmtInt(t.recent_failures), class: "num" },
    ],
    targets,
    { testid: "targets-table", empty: "No routed requests yet" },
  );
}
