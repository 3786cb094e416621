// Time-series charts on uPlot; a chart with no data shows an empty state, and a failed load shows the same
// empty state with a short note, never an error dialog.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { h } from "./dom";

const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563"];

export interface SeriesSpec {
  label: string;
  color?: string;
}

export class TimeChart {
  readonly root: HTMLDivElement;
  private plot: uPlot | null = null;
  private readonly body: HTMLDivElement;
  private readonly empty: HTMLDivElement;
  private readonly observer: ResizeObserver;
  private specs: SeriesSpec[] = [];
  private xRange: [number, number] | null = null;

  constructor(
    title: string,
    private readonly opts: { height?: number; testid?: string; yFormat?: (v: number) => string; nullText?: string } = {},
  ) {
    this.body = h("div", { class: "chart-body" });
    this.empty = h("div", { class: "chart-empty", "data-testid": "chart-empty" }, "No data for this range yet");
    this.root = h(
      "div",
      { class: "chart", "data-testid": opts.testid, "data-total": "0", "data-points": "0" },
      h("div", { class: "chart-title" }, title),
      this.body,
      this.empty,
    );
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(this.root);
  }

  private width(): number {
    return Math.max(200, this.root.clientWidth - 16);
  }

  private resize(): void {
    if (this.plot) this.plot.setSize({ width: this.width(), height: this.opts.height ?? 220 });
  }

  /** xs: unix seconds; ys: one array per series (null = gap); xRange: the time span to show, when known. */
  setData(xs: number[], specs: SeriesSpec[], ys: (number | null)[][], xRange?: [number, number]): void {
    this.xRange = xRange ?? null;
    let total = 0;
    for (const s of ys) for (const v of s) if (v !== null && Number.isFinite(v)) total += v;
    this.root.dataset.total = String(Math.round(total * 1e6) / 1e6);
    this.root.dataset.points = String(xs.length);
    this.root.dataset.loaded = "true";
    const hasData = xs.length > 0 && ys.some((s) => s.some((v) => v !== null));
    this.empty.textContent = "No data for this range yet";
    this.empty.hidden = hasData;
    this.body.hidden = !hasData;
    if (!hasData) return;
    const sameShape =
      this.plot !== null &&
      specs.length === this.specs.length &&
      specs.every((s, i) => s.label === this.specs[i]?.label);
    const data = [xs, ...ys] as uPlot.AlignedData;
    if (sameShape && this.plot) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    this.specs = specs;
    const fmt = this.opts.yFormat;
    this.plot = new uPlot(
      {
        width: this.width(),
        height: this.opts.height ?? 220,
        legend: { show: true },
        cursor: { drag: { x: true, y: false } },
        scales: {
          x: {
            time: true,
            range: (_u, min, max): [number, number] => this.xRange ?? (min === max ? [min - 60, max + 60] : [min, max]),
          },
        },
        axes: [{}, { size: 60, values: fmt ? (_u, vals) => vals.map((v) => fmt(v)) : undefined }],
        series: [
          {},
          ...specs.map((s, i) => ({
            label: s.label,
            stroke: s.color ?? PALETTE[i % PALETTE.length],
            width: 1.5,
            spanGaps: false,
            points: { show: xs.length < 60 },
            // The legend (the cursor's values) in the axis' format; a gap under the cursor as nullText.
            value: fmt
              ? (_u: uPlot, v: number | null, _s: number, idx: number | null): string =>
                  idx === null ? "—" : v === null ? (this.opts.nullText ?? "—") : fmt(v)
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
    this.plot?.destroy();
    this.plot = null;
    this.specs = [];
    this.body.hidden = true;
    this.empty.hidden = false;
    this.empty.textContent = `No data (${message})`;
  }

  destroy(): void {
    this.observer.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }
}

export const toUnix = (iso: string): number => Math.floor(new Date(iso).getTime() / 1000);
