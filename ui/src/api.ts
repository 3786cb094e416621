// JSON client for /api: the session cookie rides along; every mutating call carries X-CSRF-Token.

export type Role = "admin" | "viewer";
export interface User {
  id: number;
  username: string;
  role: Role;
}
export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null,
    readonly param: string | null,
  ) {
    super(message);
  }
}

let csrfToken = "";

export function setCsrf(token: string): void {
  csrfToken = token;
}

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** Called when a request answers 401 (the session ended): the app shows the login page. */
let onUnauthorized: () => void = () => {};
export function handleUnauthorized(fn: () => void): void {
  onUnauthorized = fn;
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === null || v === undefined || v === "" || v === false) continue;
    params.set(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

export async function api<T>(method: string, path: string, body?: unknown, query?: Query): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (MUTATING.has(method)) headers["X-CSRF-Token"] = csrfToken;
  const resp = await fetch(withQuery(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (resp.status === 204) return undefined as T;
  let payload: unknown = null;
  const text = await resp.text();
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = null;
    }
  }
  if (!resp.ok) {
    const err = (payload as { error?: { message?: string; code?: string; param?: string } } | null)?.error;
    const retry = resp.headers.get("retry-after");
    let message = err?.message || `${resp.status} ${resp.statusText}`;
    if (resp.status === 429 && retry) message += ` (retry after ${retry} s)`;
    if (resp.status === 401 && path !== "/api/auth/login" && path !== "/api/auth/me") onUnauthorized();
    throw new ApiError(resp.status, message, err?.code ?? null, err?.param ?? null);
  }
  return payload as T;
}

export const get = <T>(path: string, query?: Query): Promise<T> => api<T>("GET", path, undefined, query);
export const post = <T>(path: string, body?: unknown): Promise<T> => api<T>("POST", path, body ?? {});
export const patch = <T>(path: string, body: unknown): Promise<T> => api<T>("PATCH", path, body);
export const put = <T>(path: string, body: unknown): Promise<T> => api<T>("PUT", path, body);
export const del = <T>(path: string): Promise<T> => api<T>("DELETE", path);

/** Every page of a cursor-paginated list (used for small lists: keys, providers, models, users). */
export async function listAll<T>(path: string, query?: Query): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 100; i += 1) {
    const page: Page<T> = await get<Page<T>>(path, { ...query, limit: 500, cursor });
    out.push(...page.data);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return out;
}

export const enc = encodeURIComponent;
