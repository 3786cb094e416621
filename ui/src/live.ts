// The live feed: one WebSocket to /ws (reconnecting with capped exponential backoff plus jitter), a capped
// buffer of the most recent request rows, and listeners that are called at most once per animation frame
// with everything that arrived since the previous frame, so 100 requests/s cost ~60 small DOM updates/s.

import type { HubEvent, Metrics, RequestItem, WsMessage } from "./types";

export const LIVE_CAP = 500;

type Batch = { requests: RequestItem[]; metrics: Metrics[]; events: HubEvent[] };
type Listener = (batch: Batch) => void;
export type ConnState = "connecting" | "open" | "closed";

class LiveFeed {
  /** Newest last; never longer than LIVE_CAP. */
  readonly recent: RequestItem[] = [];
  readonly metricsHistory: Metrics[] = [];
  readonly events: HubEvent[] = [];
  lastMetrics: Metrics | null = null;
  state: ConnState = "closed";

  private ws: WebSocket | null = null;
  private listeners = new Set<Listener>();
  private stateListeners = new Set<(s: ConnState) => void>();
  private pending: Batch = { requests: [], metrics: [], events: [] };
  private frame = 0;
  private attempt = 0;
  private retryTimer = 0;
  private stopped = true;

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.retryTimer);
    this.ws?.close();
    this.ws = null;
    this.recent.length = 0;
    this.metricsHistory.length = 0;
    this.events.length = 0;
    this.lastMetrics = null;
    this.setState("closed");
    this.stateListeners.clear();
  }

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  onState(fn: (s: ConnState) => void): () => void {
    this.stateListeners.add(fn);
    fn(this.state);
    return () => this.stateListeners.delete(fn);
  }

  private setState(s: ConnState): void {
    this.state = s;
    for (const fn of this.stateListeners) fn(s);
  }

  private connect(): void {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    this.ws = ws;
    this.setState("connecting");
    ws.onopen = () => {
      this.attempt = 0;
      this.setState("open");
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data !== "string") return;
      let msg: WsMessage;
      try {
        msg = JSON.parse(ev.data) as WsMessage;
      } catch {
        return;
      }
      this.receive(msg);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.setState("closed");
      if (this.stopped) return;
      // 0.5 s, 1 s, 2 s ... capped at 30 s, with jitter so many tabs do not reconnect in lockstep.
      const delay = Math.min(30_000, 500 * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
      this.attempt = Math.min(this.attempt + 1, 10);
      this.retryTimer = window.setTimeout(() => this.connect(), delay);
    };
  }

  private receive(msg: WsMessage): void {
    switch (msg.type) {
      case "request":
        this.recent.push(msg.data);
        if (this.recent.length > LIVE_CAP) this.recent.splice(0, this.recent.length - LIVE_CAP);
        this.pending.requests.push(msg.data);
        if (this.pending.requests.length > LIVE_CAP) this.pending.requests.splice(0, LIVE_CAP / 2);
        break;
      case "metrics":
        this.lastMetrics = msg.data;
        this.metricsHistory.push(msg.data);
        if (this.metricsHistory.length > 300) this.metricsHistory.shift();
        this.pending.metrics.push(msg.data);
        break;
      case "event":
        this.events.push(msg.data);
        if (this.events.length > 100) this.events.shift();
        this.pending.events.push(msg.data);
        break;
      default:
        return;
    }
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  private flush(): void {
    this.frame = 0;
    const batch = this.pending;
    this.pending = { requests: [], metrics: [], events: [] };
    for (const fn of this.listeners) {
      try {
        fn(batch);
      } catch (err) {
        console.error(err);
      }
    }
  }
}

export const live = new LiveFeed();
