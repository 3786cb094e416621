// Providers: everyone sees the list and health; admins add, edit, disable, delete and test connections.
// Viewers never see a masked API key or any control that changes something.

import { del, enc, get, patch, post, type Page } from "../api";
import { fmtMs, fmtPct, h } from "../dom";
import { loadRouting, targetsTable } from "../routing";
import type { Provider } from "../types";
import {
  attempt,
  badge,
  confirmDialog,
  errorText,
  formDialog,
  mutButton,
  pageHeader,
  table,
  toast,
  type Field,
  type FormValues,
  type PageCtx,
} from "../ui";

/** What the backend supports, from the list's metadata: provider kinds, dialects, and the kinds that take one. */
interface Choices {
  kinds: string[];
  dialects: string[];
  dialectKinds: string[];
}

interface ProviderPage extends Page<Provider> {
  kinds?: string[];
  dialects?: string[];
  dialect_kinds?: string[];
}

async function loadProviders(): Promise<{ providers: Provider[]; choices: Choices }> {
  const providers: Provider[] = [];
  let choices: Choices = { kinds: [], dialects: [], dialectKinds: [] };
  let cursor: string | null = null;
  for (let i = 0; i < 100; i += 1) {
    const page: ProviderPage = await get<ProviderPage>("/api/providers", { limit: 500, cursor });
    if (i === 0) choices = { kinds: page.kinds ?? [], dialects: page.dialects ?? [], dialectKinds: page.dialect_kinds ?? [] };
    providers.push(...page.data);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return { providers, choices };
}

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
  if (v.dialect !== undefined) {
    // "" = the kind's own dialect; on edit, sent only when changed ("" then goes back to the default).
    const dialect = String(v.dialect).trim();
    if (editing ? dialect !== (original.dialect ?? "") : dialect) body.dialect = dialect;
  }
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
  let choices: Choices = { kinds: [], dialects: [], dialectKinds: [] };
  const dialectField = (p?: Provider): Field[] => {
    if (p && !choices.dialectKinds.includes(p.kind)) return []; // native providers (Gemini, Anthropic) have none
    const current = p?.dialect ?? "";
    const values = current && !choices.dialects.includes(current) ? [...choices.dialects, current] : choices.dialects;
    return [
      {
        name: "dialect",
        label: "Dialect",
        type: "select",
        options: [{ value: "", label: "default for the kind" }, ...values],
        value: current,
        hint: p ? undefined : `for the kinds ${choices.dialectKinds.join(", ")}`,
      },
    ];
  };
  const fields = (p?: Provider): Field[] => [
    ...(p ? [] : [{ name: "name", label: "Name", required: true, placeholder: "e.g. openai-eu" }]),
    ...(p ? [] : [{ name: "kind", label: "Kind", type: "select" as const, options: choices.kinds, value: "openai" }]),
    { name: "base_url", label: "Base URL", value: p?.base_url ?? "", placeholder: "default for the kind" },
    {
      name: "api_key",
      label: "API key",
      type: "password" as const,
      value: "",
      hint: p ? "leave empty to keep the stored key" : "stored encrypted; never shown again",
    },
    ...dialectField(p),
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
  // One notice per test: "Testing…" is replaced by the result.
  const test = async (p: Provider, button: HTMLButtonElement): Promise<void> => {
    button.disabled = true;
    const note = toast(`Testing ${p.name}…`, "ok", { sticky: true });
    try {
      const r = await post<{ ok: boolean; latency_ms: number; models?: number; error?: string }>(`/api/providers/${enc(p.name)}/test`);
      if (r.ok) note.update(`${p.name}: OK in ${Math.round(r.latency_ms)} ms${r.models !== undefined ? `, ${r.models} models` : ""}`);
      else note.update(`${p.name}: ${r.error ?? "failed"}`, "error");
    } catch (err) {
      note.update(`${p.name}: ${errorText(err)}`, "error");
    } finally {
      button.disabled = false;
    }
  };

  const routing = h("div");
  ctx.root.append(
    pageHeader("Providers", ctx.isAdmin ? mutButton("Add provider", add, { class: "btn-primary", testid: "add-provider" }) : null),
    list,
    h("h3", null, "Routing targets"),
    h("p", { class: "muted" }, "Targets of model groups as this gateway process sees them; a target that keeps failing cools down, then one request probes it."),
    routing,
  );

  const reload = async (): Promise<void> => {
    try {
      const loaded = await loadProviders();
      const providers = loaded.providers;
      choices = loaded.choices;
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
                    cell: (p: Provider) => {
                      const testButton: HTMLButtonElement = mutButton("Test", () => void test(p, testButton));
                      return [
                        testButton,
                        mutButton("Edit", () => edit(p)),
                        mutButton(p.enabled ? "Disable" : "Enable", () => void toggle(p)),
                        mutButton("Delete", () => void remove(p), { class: "btn-danger" }),
                      ];
                    },
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
    try {
      routing.replaceChildren(targetsTable((await loadRouting()).targets));
    } catch (err) {
      routing.replaceChildren(h("div", { class: "form-error" }, String(err)));
    }
  };
  await reload();
}
