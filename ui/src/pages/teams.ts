// Teams: their limits (which apply to all their keys together) and their usage against them. Everyone sees the
// table; admins create, edit (name and limits, with the live usage in the dialog) and delete.

import { del, enc, get, patch, post } from "../api";
import { h, type Child } from "../dom";
import { hasUsageLimits, limitFields, limitsSummary, readLimits } from "../limits";
import type { Limits, Team } from "../types";
import { attempt, confirmDialog, errorText, formDialog, mutButton, pageHeader, table, type PageCtx } from "../ui";
import { liveUsageInDialog, UsageCells } from "../usage";

const NO_LIMITS: Limits = {
  rpm: null,
  tpm: null,
  max_parallel: null,
  budget_usd: null,
  budget_period: null,
  allowed_models: [],
  max_tokens_cap: null,
};

export async function teamsPage(ctx: PageCtx): Promise<void> {
  const list = h("div");
  const cells = new UsageCells();
  ctx.onLeave(cells.every(10_000));

  const create = (): void =>
    void formDialog(
      "Create team",
      [{ name: "name", label: "Name", required: true, placeholder: "e.g. research" }, ...limitFields(NO_LIMITS)],
      async (v) => {
        await post("/api/teams", { name: String(v.name).trim(), limits: readLimits(v) });
        await reload();
      },
      "Create",
    );

  const edit = (t: Team): void => {
    const closed = formDialog(`Team "${t.name}"`, [{ name: "name", label: "Name", value: t.name, required: true }, ...limitFields(t.limits)], async (v) => {
      const name = String(v.name).trim();
      await patch(`/api/teams/${enc(String(t.id))}`, { ...(name !== t.name ? { name } : {}), limits: readLimits(v) });
      await reload();
    });
    liveUsageInDialog("team", t.id, closed);
  };

  // The API refuses while keys belong to the team; its message (how many, what to do) is the toast.
  const remove = async (t: Team): Promise<void> => {
    if (!(await confirmDialog("Delete team", `Delete the team "${t.name}"? Its limits go with it.`, "Delete"))) return;
    if (await attempt(() => del(`/api/teams/${enc(String(t.id))}`), "Team deleted")) await reload();
  };

  const usageCell = (t: Team): Child => (hasUsageLimits(t.limits) ? cells.cell("team", t.id) : h("span", { class: "muted" }, "—"));

  ctx.root.append(
    pageHeader("Teams", ctx.isAdmin ? mutButton("Create team", create, { class: "btn-primary", testid: "create-team" }) : null),
    h("p", { class: "muted page-note" }, "A team's limits apply to all its keys together, on top of each key's own limits."),
    list,
  );

  const reload = async (): Promise<void> => {
    try {
      const teams = (await get<{ data: Team[] }>("/api/teams")).data;
      cells.reset();
      list.replaceChildren(
        table(
          [
            { title: "Name", cell: (t: Team) => t.name },
            { title: "Usage", cell: usageCell },
            { title: "Keys", class: "num", cell: (t) => String(t.keys) },
            { title: "Limits", class: "wrap", cell: (t) => limitsSummary(t.limits) || h("span", { class: "muted" }, "none") },
            ...(ctx.isAdmin
              ? [
                  {
                    title: "",
                    class: "row-actions",
                    cell: (t: Team): Child => [mutButton("Edit", () => edit(t)), mutButton("Delete", () => void remove(t), { class: "btn-danger" })],
                  },
                ]
              : []),
          ],
          teams,
          { testid: "teams-table", empty: ctx.isAdmin ? "No teams yet: create one, then move keys into it from their Limits dialog" : "No teams yet" },
        ),
      );
      await cells.refresh();
    } catch (err) {
      list.replaceChildren(h("div", { class: "form-error" }, errorText(err)));
    }
  };
  await reload();
}
