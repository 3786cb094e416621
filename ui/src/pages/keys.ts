// Client keys (admin only): create with a copy-once reveal, rename, limits, revoke, rotate.

import { enc, listAll, patch, post } from "../api";
import { fmtTime, h } from "../dom";
import { formatUsd } from "../format";
import type { BudgetPeriod, ClientKey, Limits } from "../types";
import {
  attempt,
  badge,
  confirmDialog,
  errorText,
  formDialog,
  mutButton,
  pageHeader,
  revealSecret,
  table,
  type FormValues,
  type PageCtx,
} from "../ui";

function limitsText(k: ClientKey): string {
  const l = k.limits;
  const parts: string[] = [];
  if (k.team) parts.push(`team ${k.team.name}`);
  if (l.rpm !== null) parts.push(`${l.rpm} req/min`);
  if (l.tpm !== null) parts.push(`${l.tpm} tok/min`);
  if (l.max_parallel !== null) parts.push(`${l.max_parallel} in flight`);
  if (l.budget_usd !== null) parts.push(`${formatUsd(l.budget_usd)}/${l.budget_period ?? "?"}`);
  if (l.allowed_models.length) parts.push(`models ${l.allowed_models.join(", ")}`);
  if (l.max_tokens_cap !== null) parts.push(`max_tokens ≤ ${l.max_tokens_cap}`);
  if (k.expires_at) parts.push(`expires ${fmtTime(k.expires_at)}`);
  return parts.length ? parts.join(", ") : "none";
}

// Until the governance issue lands, nothing checks these limits on /v1: the dialog says so.
const LIMITS_NOTE =
  "These limits are stored now but not enforced yet: requests are not refused or throttled by them until budgets and rate limits land in a later release.";

// Empty or 0 = no limit.
const posOrNull = (v: string | boolean): number | null => {
  const s = String(v).trim();
  if (!s) return null;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new Error(`not a whole number: ${s}`);
  return n === 0 ? null : n;
};
const decOrNull = (v: string | boolean): string | null => {
  const s = String(v).trim();
  if (!s) return null;
  if (!/^\d+(\.\d+)?$/.test(s)) throw new Error(`not an amount in USD: ${s}`);
  return Number(s) === 0 ? null : s;
};

export async function keysPage(ctx: PageCtx): Promise<void> {
  if (!ctx.isAdmin) return; // the route is admin-only; viewers never get here
  const list = h("div");
  const createKey = async (): Promise<void> => {
    let created: { key: ClientKey; secret: string } | null = null;
    await formDialog(
      "Create client key",
      [{ name: "name", label: "Name", required: true, placeholder: "e.g. backend-prod" }],
      async (v: FormValues) => {
        created = await post<{ key: ClientKey; secret: string }>("/api/keys", { name: String(v.name).trim() });
      },
      "Create",
    );
    const res = created as { key: ClientKey; secret: string } | null;
    created = null;
    if (!res) return;
    await reload();
    await revealSecret(`Key "${res.key.name}" created`, res.secret);
  };
  const create = mutButton("Create key", () => void createKey(), { class: "btn-primary", testid: "create-key" });
  ctx.root.append(pageHeader("Client keys", create), list);

  const rename = (k: ClientKey): void =>
    void formDialog("Rename key", [{ name: "name", label: "Name", value: k.name, required: true }], async (v) => {
      await patch(`/api/keys/${enc(String(k.id))}`, { name: String(v.name).trim() });
      await reload();
    });

  const limits = (k: ClientKey): void => {
    void formDialog(
      `Limits for "${k.name}"`,
      [
        { name: "rpm", label: "Requests per minute", type: "number", value: k.limits.rpm?.toString() ?? "", hint: "empty = no limit" },
        { name: "tpm", label: "Tokens per minute", type: "number", value: k.limits.tpm?.toString() ?? "" },
        { name: "max_parallel", label: "Requests in flight", type: "number", value: k.limits.max_parallel?.toString() ?? "" },
        { name: "budget_usd", label: "Budget (USD)", value: k.limits.budget_usd ?? "" },
        {
          name: "budget_period",
          label: "Budget period",
          type: "select",
          value: k.limits.budget_period ?? "month",
          options: [
            { value: "day", label: "per day" },
            { value: "week", label: "per week (from Monday)" },
            { value: "month", label: "per month" },
            { value: "total", label: "in total (never resets)" },
          ],
        },
        { name: "allowed_models", label: "Allowed models", value: k.limits.allowed_models.join(", "), hint: "patterns, comma-separated (gpt-4o*, anthropic/*); empty = all" },
        { name: "max_tokens_cap", label: "Largest max_tokens", type: "number", value: k.limits.max_tokens_cap?.toString() ?? "" },
      ],
      async (v) => {
        const budget = decOrNull(v.budget_usd);
        const body: Limits = {
          rpm: posOrNull(v.rpm),
          tpm: posOrNull(v.tpm),
          max_parallel: posOrNull(v.max_parallel),
          budget_usd: budget,
          budget_period: budget === null ? null : (String(v.budget_period) as BudgetPeriod),
          allowed_models: String(v.allowed_models)
            .split(",")
            .map((p) => p.trim())
            .filter((p) => p !== ""),
          max_tokens_cap: posOrNull(v.max_tokens_cap),
        };
        await patch(`/api/keys/${enc(String(k.id))}`, { limits: body });
        await reload();
      },
    );
    // formDialog builds its dialog at once: the note goes above its fields.
    const bodies = document.querySelectorAll<HTMLElement>("[role=dialog] .modal-body");
    bodies[bodies.length - 1]?.prepend(h("p", { class: "muted", "data-testid": "limits-note" }, LIMITS_NOTE));
  };

  const revoke = async (k: ClientKey): Promise<void> => {
    if (!(await confirmDialog("Revoke key", `Revoke "${k.name}" (${k.hint})? Clients using it stop working at once.`, "Revoke"))) return;
    if (await attempt(() => post(`/api/keys/${enc(String(k.id))}/revoke`), "Key revoked")) await reload();
  };

  const rotate = async (k: ClientKey): Promise<void> => {
    if (!(await confirmDialog("Rotate key", `Replace the secret of "${k.name}"? The old secret stops working.`, "Rotate"))) return;
    try {
      const res = await post<{ key: ClientKey; secret: string }>(`/api/keys/${enc(String(k.id))}/rotate`);
      await revealSecret(`New secret for "${res.key.name}"`, res.secret);
    } catch (err) {
      await confirmDialog("Rotate failed", errorText(err), "OK");
    }
    await reload();
  };

  const reload = async (): Promise<void> => {
    try {
      const keys = await listAll<ClientKey>("/api/keys");
      list.replaceChildren(
        table(
          [
            { title: "ID", cell: (k: ClientKey) => `#${k.id}` },
            { title: "Name", cell: (k) => k.name },
            { title: "Key", cell: (k) => h("code", null, k.hint) },
            { title: "Status", cell: (k) => (k.revoked_at ? badge("revoked", "err") : badge("active", "ok")) },
            { title: "Created", cell: (k) => fmtTime(k.created_at) },
            { title: "Last used", cell: (k) => fmtTime(k.last_used_at) },
            { title: "Limits", cell: (k) => h("span", { title: "stored, not enforced yet" }, limitsText(k)) },
            {
              title: "",
              class: "row-actions",
              cell: (k) =>
                k.revoked_at
                  ? null
                  : [
                      mutButton("Rename", () => rename(k)),
                      mutButton("Limits", () => limits(k)),
                      mutButton("Rotate", () => void rotate(k)),
                      mutButton("Revoke", () => void revoke(k), { class: "btn-danger" }),
                    ],
            },
          ],
          keys,
          { testid: "keys-table", empty: "No client keys yet" },
        ),
      );
    } catch (err) {
      list.replaceChildren(h("div", { class: "form-error" }, errorText(err)));
    }
  };
  await reload();
}
