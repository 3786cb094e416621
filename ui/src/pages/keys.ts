// Client keys (admin only): create with a copy-once reveal, rename, limits (team, expiry), revoke, rotate; the
// usage of each key with limits against them.

import { enc, get, listAll, patch, post } from "../api";
import { fmtTime, h, type Child } from "../dom";
import { hasUsageLimits, limitFields, limitsSummary, readLimits } from "../limits";
import type { ClientKey, Limits, Team } from "../types";
import {
  attempt,
  badge,
  confirmDialog,
  errorText,
  formDialog,
  localToIso,
  mutButton,
  pageHeader,
  revealSecret,
  table,
  type Field,
  type FormValues,
  type PageCtx,
} from "../ui";
import { expiry, liveUsageInDialog, UsageCells } from "../usage";

function limitsText(k: ClientKey): string {
  return limitsSummary(k.limits) || "none";
}

/** An ISO time as a datetime-local input's value (local time, to the minute). */
function toLocalInput(isoTime: string | null): string {
  if (!isoTime) return "";
  const d = new Date(isoTime);
  if (Number.isNaN(d.getTime())) return "";
  const p = (n: number): string => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export async function keysPage(ctx: PageCtx): Promise<void> {
  if (!ctx.isAdmin) return; // the route is admin-only; viewers never get here
  const list = h("div");
  let teams: Team[] = [];
  const teamField = (value: string): Field => ({
    name: "team_id",
    label: "Team",
    type: "select",
    value,
    options: [{ value: "", label: "no team" }, ...teams.map((t) => ({ value: String(t.id), label: t.name }))],
    hint: "the team's limits apply to all its keys together, besides the key's own",
  });
  const createKey = async (): Promise<void> => {
    let created: { key: ClientKey; secret: string } | null = null;
    await formDialog(
      "Create client key",
      [
        { name: "name", label: "Name", required: true, placeholder: "e.g. backend-prod" },
        ...(teams.length ? [teamField("")] : []),
      ],
      async (v: FormValues) => {
        const team = v.team_id ? { team_id: Number(v.team_id) } : {};
        created = await post<{ key: ClientKey; secret: string }>("/api/keys", { name: String(v.name).trim(), ...team });
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

  // Limits, team and expiry in one dialog, with the key's live usage above the fields while it is open.
  const limits = (k: ClientKey): void => {
    const expires = toLocalInput(k.expires_at);
    const team = k.team ? String(k.team.id) : "";
    const closed = formDialog(
      `Limits for "${k.name}"`,
      [
        teamField(team),
        { name: "expires_at", label: "Expires", type: "datetime-local", value: expires, hint: "your local time; empty = never" },
        ...limitFields(k.limits),
      ],
      async (v) => {
        const body: { limits: Limits; team_id?: number | null; expires_at?: string | null } = { limits: readLimits(v) };
        if (String(v.team_id) !== team) body.team_id = v.team_id ? Number(v.team_id) : null;
        if (String(v.expires_at) !== expires) {
          const at = localToIso(String(v.expires_at));
          if (v.expires_at && !at) throw new Error(`not a date and time: ${String(v.expires_at)}`);
          body.expires_at = at || null;
        }
        await patch(`/api/keys/${enc(String(k.id))}`, body);
        await reload();
      },
    );
    // formDialog builds its dialog at once: the live usage goes above its fields.
    if (!k.revoked_at) liveUsageInDialog("key", k.id, closed);
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

  // Usage only for live keys with a limit it counts against; the expiry alone needs no request.
  const cells = new UsageCells();
  ctx.onLeave(cells.every(10_000));
  const usageCell = (k: ClientKey): Child => {
    if (k.revoked_at) return null;
    if (hasUsageLimits(k.limits)) return cells.cell("key", k.id);
    return expiry(k.expires_at);
  };

  const reload = async (): Promise<void> => {
    try {
      const [keys, allTeams] = await Promise.all([listAll<ClientKey>("/api/keys"), get<{ data: Team[] }>("/api/teams")]);
      teams = allTeams.data;
      cells.reset();
      list.replaceChildren(
        table(
          [
            { title: "ID", cell: (k: ClientKey) => `#${k.id}` },
            { title: "Name", cell: (k) => k.name },
            { title: "Key", cell: (k) => h("code", null, k.hint) },
            { title: "Status", cell: (k) => (k.revoked_at ? badge("revoked", "err") : badge("active", "ok")) },
            { title: "Team", cell: (k) => (k.team ? k.team.name : h("span", { class: "muted" }, "—")) },
            { title: "Limits", class: "wrap", cell: (k) => limitsText(k) },
            { title: "Usage", cell: (k) => usageCell(k) },
            { title: "Created", cell: (k) => fmtTime(k.created_at) },
            { title: "Last used", cell: (k) => fmtTime(k.last_used_at) },
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
      await cells.refresh();
    } catch (err) {
      list.replaceChildren(h("div", { class: "form-error" }, errorText(err)));
    }
  };
  await reload();
}
