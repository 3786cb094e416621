// App shell: session check, login page, navigation (hash routes) and the live connection indicator.

import { ApiError, get, handleUnauthorized, post, setCsrf, type User } from "./api";
import { clear, h } from "./dom";
import { live } from "./live";
import { analyticsPage } from "./pages/analytics";
import { keysPage } from "./pages/keys";
import { modelsPage } from "./pages/models";
import { overviewPage } from "./pages/overview";
import { providersPage } from "./pages/providers";
import { requestsPage } from "./pages/requests";
import { systemPage } from "./pages/system";
import { teamsPage } from "./pages/teams";
import { usersPage } from "./pages/users";
import "./style.css";
import { errorText, type PageCtx } from "./ui";

interface Route {
  path: string;
  title: string;
  adminOnly: boolean;
  render: (ctx: PageCtx) => void | Promise<void>;
}

const ROUTES: Route[] = [
  { path: "overview", title: "Overview", adminOnly: false, render: overviewPage },
  { path: "analytics", title: "Analytics & costs", adminOnly: false, render: analyticsPage },
  { path: "requests", title: "Request log", adminOnly: false, render: requestsPage },
  { path: "keys", title: "Client keys", adminOnly: true, render: keysPage },
  { path: "teams", title: "Teams", adminOnly: false, render: teamsPage },
  { path: "providers", title: "Providers", adminOnly: false, render: providersPage },
  { path: "models", title: "Models & prices", adminOnly: false, render: modelsPage },
  { path: "users", title: "Users", adminOnly: true, render: usersPage },
  { path: "system", title: "System", adminOnly: false, render: systemPage },
];

const app = document.getElementById("app") as HTMLElement;
let user: User | null = null;
let leaveHandlers: (() => void)[] = [];

function leavePage(): void {
  for (const fn of leaveHandlers) {
    try {
      fn();
    } catch (err) {
      console.error(err);
    }
  }
  leaveHandlers = [];
}

function showLogin(message = ""): void {
  leavePage();
  user = null;
  live.stop();
  setCsrf("");
  clear(app);
  const error = h("div", { class: "form-error", role: "alert", "data-testid": "login-error" }, message);
  const username = h("input", { name: "username", autocomplete: "username", required: true, "data-testid": "login-username" });
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
    "data-testid": "login-password",
  });
  const submit = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "login-submit" }, "Sign in");
  const form = h(
    "form",
    { class: "login-card" },
    h("h1", null, "GopherGate"),
    h("label", { class: "field" }, h("span", null, "Username"), username),
    h("label", { class: "field" }, h("span", null, "Password"), password),
    error,
    submit,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    error.textContent = "";
    try {
      const res = await post<{ user: User; csrf_token: string }>("/api/auth/login", {
        username: username.value,
        password: password.value,
      });
      password.value = "";
      startSession(res.user, res.csrf_token);
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 401 ? "Wrong username or password" : errorText(err);
    } finally {
      submit.disabled = false;
    }
  });
  app.appendChild(h("div", { class: "login-page" }, form));
  username.focus();
}

function startSession(u: User, csrf: string): void {
  user = u;
  setCsrf(csrf);
  live.start();
  renderShell();
  if (!location.hash || location.hash === "#/" || location.hash === "#/login") location.hash = "#/overview";
  else route();
}

let content: HTMLElement | null = null;
let nav: HTMLElement | null = null;
let shell: HTMLElement | null = null;

function renderShell(): void {
  if (!user) return;
  clear(app);
  const isAdmin = user.role === "admin";
  const dot = h("span", { class: "conn", "data-testid": "live-status", title: "live connection" });
  live.onState((s) => {
    dot.className = `conn conn-${s}`;
    dot.dataset.state = s;
    dot.textContent = s === "open" ? "live" : s === "connecting" ? "connecting…" : "offline";
    // A dropped socket may mean the session ended (expired, revoked): ask once; a 401 shows the login page.
    if (s === "closed" && user) {
      get("/api/auth/me").catch((err: unknown) => {
        if (err instanceof ApiError && err.status === 401 && user) showLogin("Your session ended; please sign in again.");
      });
    }
  });
  const logout = h("button", { type: "button", class: "btn btn-link", "data-testid": "logout" }, "Sign out");
  logout.addEventListener("click", async () => {
    try {
      await post("/api/auth/logout");
    } catch {
      // The session may already be gone; the login page is right either way.
    }
    location.hash = "#/overview";
    showLogin();
  });
  nav = h(
    "nav",
    { class: "nav", "aria-label": "Pages" },
    ROUTES.filter((r) => isAdmin || !r.adminOnly).map((r) =>
      h("a", { href: `#/${r.path}`, "data-route": r.path, "data-testid": `nav-${r.path}` }, r.title),
    ),
  );
  content = h("main", { class: "content" });
  // Below the narrow breakpoint (style.css) the sidebar is a top bar and the navigation a menu behind a button.
  const menu = h(
    "button",
    {
      type: "button",
      class: "btn menu-toggle",
      "aria-expanded": "false",
      "aria-controls": "nav-panel",
      "data-testid": "nav-toggle",
    },
    "Menu",
  );
  const panel = h(
    "div",
    { class: "nav-panel", id: "nav-panel" },
    nav,
    h("div", { class: "who" }, h("div", { "data-testid": "whoami" }, `${user.username} (${user.role})`), logout),
  );
  shell = h(
    "div",
    { class: "shell" },
    h("aside", { class: "sidebar" }, h("div", { class: "topbar" }, h("div", { class: "brand" }, "GopherGate"), dot, menu), panel),
    content,
  );
  menu.addEventListener("click", () => setMenu(!menuOpen()));
  // Choosing a page, Escape (below) or a click on the page closes the menu.
  nav.addEventListener("click", (ev) => {
    if ((ev.target as Element | null)?.closest("a")) setMenu(false);
  });
  content.addEventListener("click", () => setMenu(false));
  app.appendChild(shell);
}

const menuOpen = (): boolean => shell?.classList.contains("nav-open") ?? false;

function setMenu(open: boolean): void {
  shell?.classList.toggle("nav-open", open);
  shell?.querySelector(".menu-toggle")?.setAttribute("aria-expanded", String(open));
}

document.addEventListener("keydown", (ev) => {
  if (ev.key !== "Escape" || !menuOpen()) return;
  setMenu(false);
  shell?.querySelector<HTMLElement>(".menu-toggle")?.focus();
});

async function route(): Promise<void> {
  if (!user || !content) return;
  const path = location.hash.replace(/^#\/?/, "").split("?")[0] || "overview";
  const isAdmin = user.role === "admin";
  const r = ROUTES.find((x) => x.path === path && (isAdmin || !x.adminOnly)) ?? ROUTES[0];
  leavePage();
  clear(content);
  setMenu(false);
  for (const a of nav?.querySelectorAll("a") ?? []) a.classList.toggle("active", a.dataset.route === r.path);
  document.title = `${r.title} · GopherGate`;
  const ctx: PageCtx = { root: content, user, isAdmin, onLeave: (fn) => leaveHandlers.push(fn) };
  const root = content;
  delete root.dataset.rendered;
  try {
    await r.render(ctx);
  } catch (err) {
    root.appendChild(h("div", { class: "form-error" }, errorText(err)));
  }
  // Which page has rendered (tests wait for it): still this one, unless the user has moved on meanwhile.
  if (location.hash.replace(/^#\/?/, "").split("?")[0] === path) root.dataset.rendered = r.path;
}

window.addEventListener("hashchange", () => void route());
handleUnauthorized(() => showLogin("Your session ended; please sign in again."));

async function boot(): Promise<void> {
  try {
    const me = await get<{ user: User; csrf_token: string }>("/api/auth/me");
    startSession(me.user, me.csrf_token);
  } catch {
    showLogin();
  }
}

void boot();
