// Providers: everyone sees the list and health; admins add, edit, disable, delete and test connections.
// Viewers never see a masked API key or any control that changes something.

import { del, enc, listAll, patch, post } from "../api";
import { fmtMs, fmtPct, h } from "../dom";
import type { Provider } from "../types";
import { attempt, badge, confirmDialog, formDialog, mutButton, pageHeader, table, toast, type FormValues, type PageCtx } from "../ui";

const KINDS = ["openai", "deepseek", "xai", "moonshot", "ollama", "gemini", "anthropic", "custom"];

function providerBody(v: FormValues, original?: Provider): Record<string, unknown> {
  const editing = original !== undefined;
  const body: Record<string, unknown> = {};
  if (!editing) {
    body.name = String(v.name).trim();
    body.kind = v.kind;
  }
  const base = String(v.base_url).trim();
  if (base || !editing) body.base_url = base || undefined;
  const key = String(v.api_key);
  if (key) body.api_key = key; // empty = keep the stored key
  const dialect = String(v.dialect).trim();
  if (dialect) body.dialect = dialect;
  const models = String(v.models)
    .split(",")
    .map((m) => m.trim())
    .filter(Boolean);
  // On edit, send the list only when it changed (an empty list clears it: models are discovered again).
  if (editing ? models.join(",") !== original.models.join(",") : models.length > 0) body.models = models;
  body.enabled = Boolean(v.enabled);
  return body;
}

export async function providersPage(ctx: PageCtx): Promise<void> {
  const list = h("div");
  const fields = (p?: Provider) => [
    ...(p ? [] : [{ name: "name", label: "Name", required: true, placeholder: "e.g. openai-eu" }]),
    ...(p ? [] : [{ name: "kind", label: "Kind", type: "select" as const, options: KINDS, value: "openai" }]),
    { name: "base_url", label: "Base URL", value: p?.base_url ?? "", placeholder: "default for the kind" },
    {
      name: "api_key",
      label: "API key",
      type: "password" as const,
      value: "",
      hint: p ? "leave empty to keep the stored key" : "stored encrypted; never shown again",
    },
    { name: "dialect", label: "Dialect (custom kind)", value: p?.dialect ?? "" },
    { name: "models", label: "Models (comma-separated, empty = discover)", value: p?.models.join(", ") ?? "" },
    { name: "enabled", label: "Enabled", type: "checkbox" as const, value: p?.enabled ?? true },
  ];

  const add = (): void =>
    void formDialog("Add provider", fields(), async (v) => {
      await post("/api/providers", providerBody(v));
      await reload();
    }, "Add");
  const edit = (p: Provider): void =>
    void formDialog(`Edit ${p.name}`, fields(p), async (v) => {
      await patch(`/api/providers/${enc(p.name)}`, providerBody(v, p));
      await reload();
    });
  const toggle = async (p: Provider): Promise<void> => {
    if (await attempt(() => patch(`/api/providers/${enc(p.name)}`, { enabled: !p.enabled }), p.enabled ? "Disabled" : "Enabled")) await reload();
  };
  const remove = async (p: Provider): Promise<void> => {
    if (!(await confirmDialog("Delete provider", `Delete provider "${p.name}"?`, "Delete"))) return;
    if (await attempt(() => del(`/api/providers/${enc(p.name)}`), "Provider deleted")) await reload();
  };
  const test = async (p: Provider): Promise<void> => {
    toast(`Testing ${p.name}…`);
    await attempt(async () => {
      const r = await post<{ ok: boolean; latency_ms: number; models?: number; error?: string }>(`/api/providers/${enc(p.name)}/test`);
      if (r.ok) toast(`${p.name}: OK in ${Math.round(r.latency_ms)} ms${r.models !== undefined ? `, ${r.models} models` : ""}`);
      else toast(`${p.name}: ${r.error ?? "failed"}`, "error");
    });
  };

  ctx.root.append(pageHeader("Providers", ctx.isAdmin ? mutButton("Add provider", add, { class: "btn-primary", testid: "add-provider" }) : null), list);

  const reload = async (): Promise<void> => {
    try {
      const providers = await listAll<Provider>("/api/providers");
      list.replaceChildren(
        table(
          [
            { title: "Name", cell: (p: Provider) => p.name },
            { title: "Kind", cell: (p) => (p.dialect && p.dialect !== p.kind ? `${p.kind} (${p.dialect})` : p.kind) },
            { title: "Base URL", cell: (p) => p.base_url ?? "default" },
            // Secrets, even masked, are for admins only.
            ...(ctx.isAdmin ? [{ title: "API key", cell: (p: Provider) => h("code", null, p.api_key_masked ?? "—") }] : []),
            { title: "Source", cell: (p) => p.source },
            { title: "Status", cell: (p) => (p.enabled ? badge("enabled", "ok") : badge("disabled", "muted")) },
            { title: "Models", cell: (p) => String(p.models.length), class: "num" },
            { title: "Requests", cell: (p) => String(p.health?.requests ?? 0), class: "num" },
            { title: "Errors", cell: (p) => fmtPct(p.health?.error_rate), class: "num" },
            { title: "p50", cell: (p) => fmtMs(p.health?.p50_ms), class: "num" },
            ...(ctx.isAdmin
              ? [
                  {
                    title: "",
                    class: "row-actions",
                    cell: (p: Provider) => [
                      mutButton("Test", () => void test(p)),
                      mutButton("Edit", () => edit(p)),
                      mutButton(p.enabled ? "Disable" : "Enable", () => void toggle(p)),
                      mutButton("Delete", () => void remove(p), { class: "btn-danger" }),
                    ],
                  },
                ]
              : []),
          ],
          providers,
          { testid: "providers-table", empty: "No providers configured" },
        ),
      );
    } catch (err) {
      list.replaceChildren(h("div", { class: "form-error" }, String(err)));
    }
  };
  await reload();
}
