// Time-series charts on uPlot. Every chart has the same empty state ("No data for this range") when no series
// has data in the range, and a failed load shows it with a short note, never an error dialog. Colours mean
// what they show: red is for errors only; the y axis is as wide as its widest label; a chart follows the width
// of its container.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { h } from "./dom";

export const EMPTY_TEXT = "No data for this range";

/** Requests and other counts: calm colours; none of them is red (red means errors) or green (green means ok). */
const PALETTE = ["#2563eb", "#0d9488", "#7c3aed", "#d97706", "#64748b", "#0891b2", "#4f46e5", "#a16207", "#0f766e"];
/** Errors: red first, then other warm colours when several error series share a chart (grouped error rates). */
const ERROR_PALETTE = ["#dc2626", "#ea580c", "#9f1239", "#f43f5e", "#b45309", "#e11d48"];
const ERROR_LABEL = /\berrors?\b/i;

// uPlot's default axis font; the axis width is measured with it.
const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
const TICK_SIZE = 10;
const AXIS_GAP = 5;

export interface SeriesSpec {
  label: string;
  color?: string;
}

/** The label of a series or a top-N row whose grouping key is empty: one name everywhere (legend, table). */
const NO_KEY: Record<string, string> = {
  model: "(no model)",
  provider: "(no provider)",
  target: "(no target)",
  client: "(no key)",
};

export function groupLabel(key: string | null | undefined, groupBy: string): string {
  if (key !== null && key !== undefined && key !== "") return key;
  return groupBy === "none" ? "all" : (NO_KEY[groupBy] ?? "(none)");
}

/** Stroke colours for the series of one chart: errors red, everything else from the neutral palette. */
export function seriesColors(specs: SeriesSpec[], tone: "default" | "errors" = "default"): string[] {
  let plain = 0;
  let errors = 0;
  return specs.map((s) => {
    if (s.color) return s.color;
    if (tone === "errors" || ERROR_LABEL.test(s.label)) return ERROR_PALETTE[errors++ % ERROR_PALETTE.length];
    return PALETTE[plain++ % PALETTE.length];
  });
}

/** The decimals that tell axis ticks `step` apart (0.000002 needs 6, 0.25 needs 2, 5 needs none). */
export function tickDecimals(step: number): number {
  if (!(step > 0) || !Number.isFinite(step)) return 0;
  for (let d = 0; d < 12; d += 1) {
    const scaled = step * 10 ** d;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6 * Math.max(1, scaled)) return d;
  }
  return 12;
}

let measure: CanvasRenderingContext2D | null = null;

function textWidth(text: string): number {
  measure ??= document.createElement("canvas").getContext("2d");
  if (!measure) return text.length * 7;
  measure.font = AXIS_FONT;
  return measure.measureText(text).width;
}

/** The y axis width that fits its widest label (plus tick and gap), so "$0.0012" is never cut off. */
function axisWidth(values: (string | null)[] | null): number {
  let widest = 0;
  for (const v of values ?? []) if (v) widest = Math.max(widest, textWidth(v));
  return Math.max(24, Math.ceil(widest) + TICK_SIZE + AXIS_GAP + 4);
}

export class TimeChart {
  readonly root: HTMLDivElement;
  private plot: uPlot | null = null;
  private readonly body: HTMLDivElement;
  private readonly empty: HTMLDivElement;
  private readonly observer: ResizeObserver;
  private specs: SeriesSpec[] = [];
  private xRange: [number, number] | null = null;
  private lastWidth = 0;
  private frame = 0;

  constructor(
    title: string,
    private readonly opts: {
      height?: number;
      testid?: string;
      /** Tick labels; `step` is the distance between ticks (see tickDecimals). */
      yFormat?: (v: number, step: number) => string;
      /** "errors": every series is an error series (drawn in red and warm colours). */
      tone?: "default" | "errors";
      /** What the legend shows under the cursor for a gap (a bucket with no value). */
      nullText?: string;
      /** The legend's value under the cursor (default: the tick format). */
      valueFormat?: (v: number) => string;
    } = {},
  ) {
    this.body = h("div", { class: "chart-body" });
    this.empty = h("div", { class: "chart-empty", "data-testid": "chart-empty" }, "Loading…");
    this.root = h(
      "div",
      { class: "chart", "data-testid": opts.testid, "data-total": "0", "data-points": "0" },
      h("div", { class: "chart-title" }, title),
      this.body,
      this.empty,
    );
    this.body.hidden = true;
    // Follow the container's width (phones, a narrowed window, the sidebar collapsing), once per frame.
    this.observer = new ResizeObserver(() => {
      if (this.frame) return;
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.resize();
      });
    });
    this.observer.observe(this.root);
  }

  private width(): number {
    return Math.max(160, this.root.clientWidth - 16);
  }

  private resize(): void {
    if (!this.plot) return;
    const width = this.width();
    if (width === this.lastWidth) return;
    this.lastWidth = width;
    this.plot.setSize({ width, height: this.opts.height ?? 220 });
  }

  /**
   * xs: unix seconds; ys: one array per series (null = gap); xRange: the time span to show, when known.
   * hasData: whether the range has any data (e.g. any request); by default, whether any value is non-zero, so
   * zero-filled buckets of an empty range show the empty state, not flat lines on a made-up axis.
   */
  setData(
    xs: number[],
    specs: SeriesSpec[],
    ys: (number | null)[][],
    xRange?: [number, number],
    opts: { hasData?: boolean } = {},
  ): void {
    this.xRange = xRange ?? null;
    let total = 0;
    let nonZero = false;
    for (const s of ys) {
      for (const v of s) {
        if (v === null || !Number.isFinite(v)) continue;
        total += v;
        if (v !== 0) nonZero = true;
      }
    }
    this.root.dataset.total = String(Math.round(total * 1e6) / 1e6);
    this.root.dataset.points = String(xs.length);
    this.root.dataset.loaded = "true";
    const hasData = xs.length > 0 && (opts.hasData ?? nonZero) && ys.some((s) => s.some((v) => v !== null));
    this.root.dataset.empty = String(!hasData);
    this.empty.textContent = EMPTY_TEXT;
    this.empty.hidden = hasData;
    this.body.hidden = !hasData;
    if (!hasData) {
      // Drop the plot: the next data may have other series, and a hidden plot would not follow resizes.
      this.plot?.destroy();
      this.plot = null;
      this.specs = [];
      return;
    }
    const sameShape =
      this.plot !== null &&
      specs.length === this.specs.length &&
      specs.every((s, i) => s.label === this.specs[i]?.label);
    const data = [xs, ...ys] as uPlot.AlignedData;
    if (sameShape && this.plot) {
      this.plot.setData(data);
      this.resize();
      return;
    }
    this.plot?.destroy();
    this.specs = specs;
    const fmt = this.opts.yFormat;
    const colors = seriesColors(specs, this.opts.tone);
    this.lastWidth = this.width();
    this.plot = new uPlot(
      {
        width: this.lastWidth,
        height: this.opts.height ?? 220,
        legend: { show: true },
        cursor: { drag: { x: true, y: false } },
        scales: {
          x: {
            time: true,
            range: (_u, min, max): [number, number] => this.xRange ?? (min === max ? [min - 60, max + 60] : [min, max]),
          },
          y: {
            // From zero (every metric here is a count, a rate or an amount), and a real span when all are equal.
            range: (_u, min, max): [number, number] => {
              const lo = Math.min(0, min ?? 0);
              const hi = max !== null && max !== undefined && max > lo ? max : lo + 1;
              const [a, b] = uPlot.rangeNum(lo, hi, 0.1, true);
              return [a ?? lo, b ?? hi];
            },
          },
        },
        axes: [
          { font: AXIS_FONT },
          {
            font: AXIS_FONT,
            gap: AXIS_GAP,
            ticks: { size: TICK_SIZE },
            size: (_u, values) => {
              // The labels the axis was sized for, for tests and for reading the chart without hovering.
              this.root.dataset.yLabels = JSON.stringify(values ?? []);
              return axisWidth(values);
            },
            values: fmt ? (_u, vals, _axis, _space, step) => vals.map((v) => fmt(v, step)) : undefined,
          },
        ],
        series: [
          {},
          ...specs.map((s, i) => ({
            label: s.label,
            stroke: colors[i],
            width: 1.5,
            spanGaps: false,
            points: { show: xs.length < 60 },
            // The legend (the cursor's values) in the axis' format; a gap under the cursor as nullText.
            value:
              this.opts.valueFormat || fmt
                ? (_u: uPlot, v: number | null, _s: number, idx: number | null): string =>
                    idx === null
                      ? "—"
                      : v === null
                        ? (this.opts.nullText ?? "—")
                        : (this.opts.valueFormat ?? ((x: number) => (fmt ? fmt(x, 0) : String(x))))(v)
                : undefined,
          })),
        ],
      },
      data,
      this.body,
    );
  }

  /** A load failed: keep the page usable and say so quietly. */
  failed(message: string): void {
    this.root.dataset.loaded = "failed";
    this.root.dataset.empty = "true";
    this.plot?.destroy();
    this.plot = null;
    this.specs = [];
    this.body.hidden = true;
    this.empty.hidden = false;
    this.empty.textContent = `${EMPTY_TEXT} (${message})`;
  }

  destroy(): void {
    this.observer.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.plot?.destroy();
    this.plot = null;
  }
}

export const toUnix = (iso: string): number => Math.floor(new Date(iso).getTime() / 1000);
