// Models & prices: the registry view with prices and providers; admins enable/disable models and set or
// clear price overrides.

import { del, enc, listAll, patch, put } from "../api";
import { fmtInt, h } from "../dom";
import { formatUsd } from "../format";
import { groupsTable, loadRouting } from "../routing";
import type { ModelItem, Pricing } from "../types";
import { attempt, badge, confirmDialog, formDialog, mutButton, pageHeader, table, type PageCtx } from "../ui";

const PRICE_FIELDS = ["input", "output", "cache_read", "cache_write", "reasoning"] as const;

function price(v: number | string | null | undefined): string {
  return v === null || v === undefined ? "—" : formatUsd(v);
}

function priceCell(p: Pricing | null): string {
  if (!p) return "unknown";
  return `${price(p.input)} / ${price(p.output)}`;
}

export async function modelsPage(ctx: PageCtx): Promise<void> {
  const filter = h("input", { type: "search", placeholder: "filter models", "data-testid": "models-filter" });
  const list = h("div");
  let models: ModelItem[] = [];
  const groups = h("div");
  ctx.root.append(
    pageHeader("Models & prices", filter),
    h("h3", null, "Model groups"),
    h("p", { class: "muted" }, "Client-facing names routed over several targets (docs/routing.md)."),
    groups,
    h("p", { class: "muted" }, "Prices in USD per 1M tokens (input / output)."),
    list,
  );

  const path = (m: ModelItem): string => `/api/models/${enc(m.provider)}/${enc(m.id)}`;
  const toggle = async (m: ModelItem): Promise<void> => {
    if (await attempt(() => patch(path(m), { enabled: !m.enabled }), m.enabled ? "Model disabled" : "Model enabled")) await reload();
  };
  const override = (m: ModelItem): void =>
    void formDialog(
      `Price override: ${m.provider}/${m.id}`,
      [
        ...PRICE_FIELDS.map((f) => ({
          name: f,
          label: `${f.replace("_", " ")} (USD / 1M tokens)`,
          value: m.override?.[f] ?? "",
          placeholder: String(m.pricing?.[f] ?? ""),
        })),
        { name: "discount_percent", label: "Discount %", value: m.override?.discount_percent ?? "" },
        { name: "discount_until", label: "Discount until (ISO 8601)", value: m.override?.discount_until ?? "", placeholder: "2026-12-31T00:00:00Z" },
      ],
      async (v) => {
        const body: Record<string, string> = {};
        for (const [k, val] of Object.entries(v)) {
          const s = String(val).trim();
          if (!s) continue;
          if (k !== "discount_until" && !/^\d+(\.\d+)?$/.test(s)) throw new Error(`${k}: not a decimal number`);
          body[k] = s;
        }
        await put(`${path(m)}/price`, body);
        await reload();
      },
    );
  const clearOverride = async (m: ModelItem): Promise<void> => {
    if (!(await confirmDialog("Clear override", `Remove the price override of ${m.id}?`, "Clear"))) return;
    if (await attempt(() => del(`${path(m)}/price`), "Override removed")) await reload();
  };

  const render = (): void => {
    const q = filter.value.trim().toLowerCase();
    const rows = q ? models.filter((m) => `${m.provider}/${m.id} ${m.registry_id ?? ""}`.toLowerCase().includes(q)) : models;
    list.replaceChildren(
      table(
        [
          { title: "Model", cell: (m: ModelItem) => m.id },
          { title: "Provider", cell: (m) => m.provider },
          { title: "Registry id", cell: (m) => m.registry_id ?? "—" },
          { title: "Status", cell: (m) => (m.enabled ? badge("enabled", "ok") : badge("disabled", "muted")) },
          { title: "Context", cell: (m) => fmtInt(m.context_window), class: "num" },
          { title: "Max out", cell: (m) => fmtInt(m.max_output_tokens), class: "num" },
          { title: "Price in / out", cell: (m) => priceCell(m.pricing), class: "num" },
          { title: "Source", cell: (m) => (m.override ? badge("override", "warn") : (m.pricing?.source ?? "—")) },
          ...(ctx.isAdmin
            ? [
                {
                  title: "",
                  class: "row-actions",
                  cell: (m: ModelItem) => [
                    mutButton(m.enabled ? "Disable" : "Enable", () => void toggle(m)),
                    mutButton("Set price", () => override(m)),
                    m.override ? mutButton("Clear price", () => void clearOverride(m)) : null,
                  ],
                },
              ]
            : []),
        ],
        rows.slice(0, 500),
        { testid: "models-table", empty: "No models" },
      ),
      rows.length > 500 ? h("p", { class: "muted" }, `Showing 500 of ${rows.length}; filter to narrow down.`) : "",
    );
  };
  let pending = 0;
  filter.addEventListener("input", () => {
    window.clearTimeout(pending);
    pending = window.setTimeout(render, 120);
  });

  const reload = async (): Promise<void> => {
    try {
      models = await listAll<ModelItem>("/api/models");
      render();
    } catch (err) {
      list.replaceChildren(h("div", { class: "form-error" }, String(err)));
    }
    try {
      groups.replaceChildren(groupsTable((await loadRouting()).groups));
    } catch (err) {
      groups.replaceChildren(h("div", { class: "form-error" }, String(err)));
    }
  };
  await reload();
}
