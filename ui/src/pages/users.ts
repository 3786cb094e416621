// Users (admin only): create, change role, set password, delete.

import { del, enc, listAll, patch, post, type User } from "../api";
import { h } from "../dom";
import { attempt, badge, confirmDialog, formDialog, mutButton, pageHeader, table, type PageCtx } from "../ui";

export async function usersPage(ctx: PageCtx): Promise<void> {
  if (!ctx.isAdmin) return;
  const list = h("div");
  const create = (): void =>
    void formDialog(
      "Create user",
      [
        { name: "username", label: "Username", required: true },
        { name: "password", label: "Password", type: "password", required: true },
        { name: "role", label: "Role", type: "select", options: ["viewer", "admin"], value: "viewer" },
      ],
      async (v) => {
        await post("/api/users", { username: String(v.username).trim(), password: v.password, role: v.role });
        await reload();
      },
      "Create",
    );
  const role = (u: User): void =>
    void formDialog(`Role of ${u.username}`, [{ name: "role", label: "Role", type: "select", options: ["viewer", "admin"], value: u.role }], async (v) => {
      await patch(`/api/users/${enc(String(u.id))}`, { role: v.role });
      await reload();
    });
  const passwd = (u: User): void =>
    void formDialog(
      `Password of ${u.username}`,
      [{ name: "password", label: "New password", type: "password", required: true, hint: "signs the user out everywhere" }],
      async (v) => {
        await patch(`/api/users/${enc(String(u.id))}`, { password: v.password });
      },
    );
  const remove = async (u: User): Promise<void> => {
    if (!(await confirmDialog("Delete user", `Delete ${u.username}? Their sessions end at once.`, "Delete"))) return;
    if (await attempt(() => del(`/api/users/${enc(String(u.id))}`), "User deleted")) await reload();
  };

  ctx.root.append(pageHeader("Users", mutButton("Create user", create, { class: "btn-primary", testid: "create-user" })), list);
  const reload = async (): Promise<void> => {
    try {
      const users = await listAll<User>("/api/users");
      list.replaceChildren(
        table(
          [
            { title: "ID", cell: (u: User) => String(u.id) },
            { title: "Username", cell: (u) => u.username },
            { title: "Role", cell: (u) => badge(u.role, u.role === "admin" ? "warn" : "muted") },
            {
              title: "",
              class: "row-actions",
              cell: (u) =>
                u.id === ctx.user.id
                  ? [mutButton("Password", () => passwd(u))]
                  : [mutButton("Role", () => role(u)), mutButton("Password", () => passwd(u)), mutButton("Delete", () => void remove(u), { class: "btn-danger" })],
            },
          ],
          users,
          { testid: "users-table" },
        ),
      );
    } catch (err) {
      list.replaceChildren(h("div", { class: "form-error" }, String(err)));
    }
  };
  await reload();
}
