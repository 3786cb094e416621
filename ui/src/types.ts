// Shapes of the dashboard contract (the shared dashboard contract: endpoints and /ws messages).

export interface RequestItem {
  id: number | null; // null on live (/ws) rows: a row is identified by its request_id
  request_id: string;
  created_at: string;
  endpoint: string;
  client_key_id: number | null;
  client_key_name?: string | null; // null: no key, or a deleted/unknown one
  requested_model: string | null;
  provider: string | null;
  model: string | null;
  stream: boolean;
  status: number;
  error_type: string | null;
  finish_reason: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  reasoning_tokens: number | null;
  cache_read_tokens: number | null;
  cache_write_tokens: number | null;
  estimated: boolean;
  cost_usd: string | null;
  price_unknown: boolean;
  latency_ms: number | null;
  ttfb_ms: number | null;
  client_ip: string | null; // behind a trusted reverse proxy, the address it forwarded
  error_class: string | null; // the upstream failure's class: rate_limited, overloaded, server_error, ...
  // Routing writes a row per attempt of a request (same request_id); only the last is final (what the client saw).
  attempt: number;
  final: boolean;
  model_group: string | null; // the model group the client named; null for a plain model name
}

/** One attempt of a request, as a request detail lists them (oldest first). */
export interface RequestAttempt {
  id: number;
  attempt: number;
  final: boolean;
  provider: string | null;
  model: string | null;
  status: number;
  error_class: string | null;
  error_type: string | null;
  cost_usd: string | null;
  latency_ms: number;
  created_at: string;
}

/** GET /api/requests/{id}: every column of the row. */
export interface RequestDetail extends RequestItem {
  error_message: string | null;
  upstream_ms: number | null;
  overhead_ms: number | null;
  cost_input_usd: string | null;
  cost_cache_read_usd: string | null;
  cost_cache_write_usd: string | null;
  cost_output_usd: string | null;
  cost_reasoning_usd: string | null;
  price_source: string | null;
  attempts: RequestAttempt[]; // every attempt of the request (this row's among them), by attempt number
}

export interface Metrics {
  requests_per_s: number;
  tokens_per_s: number;
  cost_per_min_usd: string | null; // null when every request of the window had no known price
  unpriced_requests: number; // requests of the window without a known price (not in cost_per_min_usd)
  error_rate: number;
  p95_ms: number | null;
  cpu_percent: number;
  memory_percent: number;
  queue_depth: number;
  ts: string;
  // Added with the hub across instances (issue 20); optional so that an older server's message still renders.
  instances?: InstanceMetrics[]; // sorted by instance name; this instance alone without Redis
  cluster?: ClusterStatus;
}

/** One instance's own figures, as it last reported them to the cluster. */
export interface InstanceMetrics {
  instance: string; // GOPHERGATE_INSTANCE_NAME, by default "<hostname>:<port>"
  processes: number; // worker processes reporting under this name
  requests_per_s: number;
  tokens_per_s: number;
  cost_per_min_usd: string | null;
  error_rate: number;
  p95_ms: number | null;
  queue_depth: number;
  cpu_percent: number;
  memory_percent: number;
  age_s: number; // seconds since it last reported; one that stops reporting drops out after ~3 intervals
}

/** With Redis the top-level figures of `Metrics` are the whole cluster's; unreachable or off, this instance's. */
export interface ClusterStatus {
  redis: "off" | "connected" | "unreachable";
  instances: number;
  hub_dropped: number; // live messages not published to Redis (dropped rather than slowing requests)
}

export interface HubEvent {
  kind: string;
  detail: Record<string, unknown>;
  ts: string;
  /** The instance it happened on (GOPHERGATE_INSTANCE_NAME); absent from an older server. */
  instance?: string;
}

export type WsMessage =
  | { type: "request"; data: RequestItem }
  | { type: "metrics"; data: Metrics }
  | { type: "event"; data: HubEvent }
  | { type: "ping"; data?: unknown };

export type BudgetPeriod = "day" | "week" | "month" | "total";

export interface Limits {
  rpm: number | null;
  tpm: number | null;
  max_parallel: number | null;
  budget_usd: string | null;
  budget_period: BudgetPeriod | null;
  allowed_models: string[];
  max_tokens_cap: number | null;
}

export interface ClientKey {
  id: number;
  name: string;
  hint: string;
  created_at: string;
  revoked_at: string | null;
  last_used_at: string | null;
  team: { id: number; name: string } | null;
  expires_at: string | null;
  limits: Limits;
}

export interface Health {
  error_rate: number | null;
  p50_ms: number | null;
  requests: number;
}

export interface Provider {
  name: string;
  kind: string;
  dialect: string | null;
  base_url: string | null;
  api_key_masked?: string | null;
  enabled: boolean;
  source: "env" | "config" | "database";
  models: string[];
  health: Health | null;
}

export interface Pricing {
  currency?: string;
  unit?: string;
  input?: number | string | null;
  output?: number | string | null;
  cache_read?: number | string | null;
  cache_write?: number | string | null;
  reasoning?: number | string | null;
  discount?: { percent: number | string; until: string } | null;
  source?: string;
}

export interface ModelItem {
  id: string;
  provider: string;
  registry_id: string | null;
  enabled: boolean;
  context_window: number | null;
  max_output_tokens: number | null;
  capabilities: unknown;
  pricing: Pricing | null;
  override: Record<string, string | null> | null;
}

export interface Point {
  t: string;
  requests: number;
  errors: number;
  error_rate: number;
  prompt_tokens: number;
  completion_tokens: number;
  reasoning_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  cost_usd: string | null; // null when no request of the bucket had a known price
  unpriced_requests: number;
  p50_ms: number | null;
  p95_ms: number | null;
  cache_hit_ratio: number | null; // cache-read over prompt tokens; null without prompt tokens
}

export interface Timeseries {
  bucket: string;
  series: { key: string | null; client_key_name?: string | null; points: Point[] }[];
}

export interface Totals {
  requests: number;
  errors: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: string | null;
  unpriced_requests: number;
  p50_ms: number | null;
  p95_ms: number | null;
  cache_hit_ratio: number | null;
}

export interface TopRow {
  key: string | null;
  client_key_name?: string | null; // by client key: its name (null when deleted)
  requests: number;
  tokens: number;
  cost_usd: string | null;
  unpriced_requests: number;
  cache_hit_ratio: number | null; // cache-read over prompt tokens; null without prompt tokens
}

export interface Team {
  id: number;
  name: string;
  created_at: string;
  updated_at: string;
  keys: number; // how many keys belong to it (revoked ones too)
  limits: Limits;
}

/** One limit's count in the current minute (or in flight); `limit` and `remaining` are null without a limit. */
export interface UsageCount {
  limit: number | null;
  used: number;
  remaining?: number | null;
}

/** Money values are decimal strings. */
export interface BudgetUsage {
  limit_usd: string;
  period: BudgetPeriod;
  spend_usd: string;
  reserved_usd: string;
  remaining_usd: string;
  period_start: string | null;
  resets_at: string | null;
}

/** GET /api/keys/{id}/usage and /api/teams/{id}/usage. */
export interface ScopeUsage {
  scope: "key" | "team";
  id: number;
  mode: "memory" | "redis" | "redis-unavailable";
  requests: UsageCount;
  tokens: UsageCount;
  in_flight: UsageCount;
  budget: BudgetUsage | null;
  expires_at: string | null; // keys only
  expired: boolean; // keys only
}

/** GET /api/routing: model groups (docs/routing.md) and what this gateway process knows of each target. */
export interface RoutingTargetRef {
  model: string;
  provider: string | null;
  upstream_model: string | null;
  weight?: number;
}

export interface RoutingGroup {
  name: string;
  strategy: string;
  targets: RoutingTargetRef[];
  fallbacks: RoutingTargetRef[];
  rules: number;
  retries: number;
  retry_on: string[];
  first_token_timeout_s: number | null;
  affinity: string;
}

export interface RoutingTargetState {
  provider: string;
  model: string;
  state: "open" | "cooling_down" | "half_open";
  cooldown_remaining_s: number;
  in_flight: number;
  ttft_ms: number | null;
  recent_failures: number;
}

export interface RoutingInfo {
  groups: RoutingGroup[];
  targets: RoutingTargetState[];
  shared: { redis: boolean; connected: boolean } | null;
}
