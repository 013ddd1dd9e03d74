/**
 * Summaries and rendering for the comparison harness (`bench/compare.ts`): medians and ratios
 * from the per-round samples, the Markdown report and the SVG chart. Pure functions, no I/O.
 *
 * @module
 */

/** Which kind of code a contender is; decides its colour in the chart. */
export type Family =
  | "node"
  | "deno"
  | "guardmap"
  | "batch"
  | "pool"
  | "view"
  | "numpy"
  | "limit";

/** The part a contender plays in its workload. */
export type Role = "baseline" | "limit" | "ceiling" | "contender";

/** One contender's measurements in one workload. */
export interface ContenderResult {
  /** What it does, as shown in the tables and the chart. */
  label: string;
  /** Kind of code, for the chart's colours. */
  family: Family;
  /** The baseline (ratio 1), the bandwidth limit, the unguarded ceiling, or a contender. */
  role: Role;
  /** Milliseconds per operation, one sample per round, in round order. */
  samples: number[];
  /** Median over the rounds of the per-operation time, in milliseconds. */
  median: number;
  /** Fastest round's per-operation time, in milliseconds. */
  min: number;
  /** Slowest round's per-operation time, in milliseconds. */
  max: number;
  /** Baseline median / this median: how many times as fast as the baseline (> 1 is faster). */
  ratio: number;
  /** Bytes per second at the median time, for workloads that move a known number of bytes. */
  bytesPerSecond: number | undefined;
}

/** One workload's results, or why it was skipped. */
export interface WorkloadResult {
  /** Short identifier (`random-4k`, `sequential-hot`, ...), used by `--only`. */
  id: string;
  /** Heading, e.g. "random 4 KiB reads". */
  title: string;
  /** What one operation is. */
  operation: string;
  /** Page cache and CPU cache state, in words. */
  cache: string;
  /** Operations per contender per round. */
  opsPerRound: number;
  /** Bytes one operation moves (0 when it is not a copy). */
  bytesPerOp: number;
  /** Whether the table leads with throughput (large copies) instead of time per operation. */
  throughput: boolean;
  /** Rounds run. */
  rounds: number;
  /** The contenders, in the order they ran within each round. */
  contenders: ContenderResult[];
  /** Extra facts measured during the workload (residency checks, result checks). */
  notes: string[];
  /** Set when the workload did not run, with the reason. */
  skipped?: string;
}

/** One of the issue's targets, judged on this run's medians. */
export interface TargetResult {
  /** The target, in words. */
  target: string;
  /** The numbers it was judged on. */
  measured: string;
  /** Met, missed, or not measured in this run. */
  met: boolean | undefined;
}

/** Facts about the run, for the report's header. */
export interface RunInfo {
  /** ISO date and time the run started (UTC). */
  date: string;
  /** The command line that produced the report. */
  command: string;
  /** Wall-clock seconds the run took. */
  seconds: number;
  /** Whether `--quick` scaled the sizes down. */
  quick: boolean;
  /** Machine, one fact per line. */
  machine: string[];
  /** Software versions and the library used, one fact per line. */
  software: string[];
  /** Page cache state and how it was controlled, one fact per line. */
  cache: string[];
  /** The method, one point per line. */
  method: string[];
}

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Turns raw per-round samples into results with medians and ratios to the baseline. */
export function summarize(
  raw: readonly { label: string; family: Family; role: Role; samples: number[] }[],
  bytesPerOp: number,
): ContenderResult[] {
  const baseline = raw.find((entry) => entry.role === "baseline");
  const baselineMedian = baseline === undefined ? NaN : median(baseline.samples);
  return raw.map((entry) => {
    const middle = median(entry.samples);
    return {
      label: entry.label,
      family: entry.family,
      role: entry.role,
      samples: entry.samples,
      median: middle,
      min: Math.min(...entry.samples),
      max: Math.max(...entry.samples),
      ratio: baselineMedian / middle,
      bytesPerSecond: bytesPerOp > 0 ? bytesPerOp / (middle / 1000) : undefined,
    };
  });
}

/** A duration given in milliseconds, with a unit that keeps 3-4 significant digits. */
export function formatTime(milliseconds: number): string {
  if (!Number.isFinite(milliseconds)) return "n/a";
  const ns = milliseconds * 1e6;
  if (ns < 1000) return `${ns.toPrecision(3)} ns`;
  if (ns < 1e6) return `${(ns / 1000).toPrecision(3)} µs`;
  if (ns < 1e9) return `${(ns / 1e6).toPrecision(3)} ms`;
  return `${(ns / 1e9).toPrecision(3)} s`;
}

/** Bytes per second as GiB/s (or MiB/s below 1 GiB/s). */
export function formatRate(bytesPerSecond: number | undefined): string {
  if (bytesPerSecond === undefined || !Number.isFinite(bytesPerSecond)) return "";
  const gib = bytesPerSecond / 2 ** 30;
  if (gib >= 1) return `${gib.toFixed(2)} GiB/s`;
  return `${(bytesPerSecond / 2 ** 20).toFixed(1)} MiB/s`;
}

/** A ratio to the baseline, "12.3x" (two significant digits below 10). */
export function formatRatio(ratio: number): string {
  if (!Number.isFinite(ratio)) return "n/a";
  return ratio >= 10 ? `${ratio.toFixed(1)}x` : `${ratio.toFixed(2)}x`;
}

/** A byte count as B, KiB, MiB or GiB. */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`;
  }
  return `${bytes} B`;
}

function roleNote(role: Role): string {
  switch (role) {
    case "baseline":
      return " (baseline)";
    case "limit":
      return " (limit)";
    case "ceiling":
      return " (unguarded ceiling)";
    default:
      return "";
  }
}

function workloadTable(workload: WorkloadResult): string[] {
  const lines = [
    `### ${workload.title}`,
    "",
    `One operation: ${workload.operation}. ${workload.opsPerRound} operations per contender ` +
    `per round, ${workload.rounds} rounds. Cache: ${workload.cache}.`,
    "",
  ];
  if (workload.skipped !== undefined) {
    lines.push(`**Not run:** ${workload.skipped}`, "");
    return lines;
  }
  const rate = workload.bytesPerOp > 0;
  lines.push(
    rate
      ? "| contender | median per op | throughput (median) | vs baseline | per-op range over rounds |"
      : "| contender | median per op | vs baseline | per-op range over rounds |",
    rate ? "| --- | ---: | ---: | ---: | --- |" : "| --- | ---: | ---: | --- |",
  );
  for (const entry of workload.contenders) {
    const cells = [
      `${entry.label}${roleNote(entry.role)}`,
      formatTime(entry.median),
      ...(rate ? [formatRate(entry.bytesPerSecond)] : []),
      entry.role === "baseline" ? "1" : formatRatio(entry.ratio),
      `${formatTime(entry.min)} – ${formatTime(entry.max)}`,
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  lines.push("");
  for (const note of workload.notes) lines.push(`- ${note}`);
  if (workload.notes.length > 0) lines.push("");
  return lines;
}

/**
 * The whole report as Markdown. `analysis` is the hand-written "Where the time goes" text
 * (bench/where_the_time_goes.md), inserted as it is.
 */
export function renderMarkdown(
  run: RunInfo,
  workloads: readonly WorkloadResult[],
  targets: readonly TargetResult[],
  analysis: string | undefined,
  chartFile: string,
): string {
  const lines = [
    "# guardmap against the alternatives and the memory-bandwidth limit",
    "",
    "<!-- Generated by bench/compare.ts; edit bench/compare/*.ts or bench/where_the_time_goes.md",
    "     instead, then run `tools/dev compare` again. -->",
    "",
    `Generated by \`${run.command}\` on ${run.date} in ${Math.round(run.seconds)} s` +
    (run.quick ? " (**--quick**: sizes scaled down; not the reference run)." : "."),
    "",
    `![speed relative to node:fs, per workload](${chartFile})`,
    "",
    "## Targets",
    "",
    "| target | measured (medians) | met? |",
    "| --- | --- | --- |",
    ...targets.map((target) =>
      `| ${target.target} | ${target.measured} | ${
        target.met === undefined ? "not measured" : target.met ? "**met**" : "**not met**"
      } |`
    ),
    "",
    "## Run",
    "",
    ...run.machine.map((line) => `- ${line}`),
    ...run.software.map((line) => `- ${line}`),
    "",
    "### Cache state",
    "",
    ...run.cache.map((line) => `- ${line}`),
    "",
    "### Method",
    "",
    ...run.method.map((line) => `- ${line}`),
    "",
    "## Results",
    "",
    'Median over rounds of the per-operation time; "vs baseline" is the baseline\'s median ' +
    "divided by the contender's (2x = twice as fast as the baseline, 0.5x = half as fast).",
    "",
    ...workloads.flatMap(workloadTable),
  ];
  if (analysis !== undefined) {
    lines.push("## Where the time goes", "", analysis.trim(), "");
  }
  return lines.join("\n");
}

const COLORS: Record<Family, string> = {
  node: "#7f7f7f",
  deno: "#e69f00",
  guardmap: "#0072b2",
  batch: "#d55e00",
  pool: "#7b4fa0",
  view: "#56b4e9",
  numpy: "#009e73",
  limit: "#222222",
};

const FAMILY_NAMES: Record<Family, string> = {
  node: "node:fs (baseline)",
  deno: "Deno.FsFile",
  guardmap: "guardmap in-process (guarded)",
  batch: "guardmap readMany (guarded, batched)",
  pool: "guardmap MapPool (worker process)",
  view: "unsafeView (unguarded)",
  numpy: "numpy.memmap (Python)",
  limit: "memcpy limit",
};

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

/** Ticks of a log axis: 1, 2 and 5 times the powers of ten inside `[low, high]`. */
function logTicks(low: number, high: number): number[] {
  const ticks: number[] = [];
  for (
    let exponent = Math.floor(Math.log10(low));
    exponent <= Math.ceil(Math.log10(high));
    exponent++
  ) {
    for (const step of [1, 2, 5]) {
      const value = step * 10 ** exponent;
      if (value >= low * 0.999 && value <= high * 1.001) ticks.push(value);
    }
  }
  return ticks;
}

function tickLabel(value: number): string {
  return value >= 1 ? `${value}x` : `${Number(value.toPrecision(1))}x`;
}

/** Where the chart's parts go: the label column, the bars' span and the log scale. */
interface ChartLayout {
  labelWidth: number;
  chartRight: number;
  width: number;
  low: number;
  high: number;
  /** The x coordinate of a ratio. */
  x: (ratio: number) => number;
}

const ROW_HEIGHT = 18;
const ROW_GAP = 4;
const GROUP_GAP = 16;

function chartLayout(shown: readonly WorkloadResult[]): ChartLayout {
  // About 6.6 px per character at 12 px (DejaVu Sans is wider than most sans fonts).
  const charWidth = 6.6;
  const longest = Math.max(
    20,
    ...shown.flatMap((workload) => workload.contenders.map((entry) => entry.label.length)),
  );
  const labelWidth = Math.ceil(longest * charWidth) + 16;
  const chartLeft = labelWidth + 10;
  const chartWidth = 520;
  const chartRight = chartLeft + chartWidth;
  const ratios = shown.flatMap((workload) =>
    workload.contenders.map((entry) => entry.ratio).filter((ratio) => ratio > 0 && isFinite(ratio))
  );
  const low = Math.min(0.5, ...ratios) / 1.25;
  const high = Math.max(2, ...ratios) * 1.25;
  const x = (ratio: number): number =>
    chartLeft +
    ((Math.log(ratio) - Math.log(low)) / (Math.log(high) - Math.log(low))) * chartWidth;
  return { labelWidth, chartRight, width: chartRight + 190, low, high, x };
}

/** The legend, one item per family shown, wrapped to the width; `bottom` is its last line's y. */
function chartLegend(
  shown: readonly WorkloadResult[],
  width: number,
): { lines: string[]; bottom: number } {
  const families = [...new Set(shown.flatMap((w) => w.contenders.map((c) => c.family)))];
  const lines: string[] = [];
  let legendX = 10;
  let legendY = 62;
  for (const family of families) {
    const itemWidth = 28 + FAMILY_NAMES[family].length * 6.8;
    if (legendX + itemWidth > width - 10) {
      legendX = 10;
      legendY += 18;
    }
    lines.push(
      `<rect x="${legendX}" y="${legendY - 10}" width="12" height="12" fill="${COLORS[family]}"/>`,
      `<text x="${legendX + 16}" y="${legendY}" class="legend">${
        escapeXml(FAMILY_NAMES[family])
      }</text>`,
    );
    legendX += itemWidth;
  }
  return { lines, bottom: legendY };
}

/** One contender's row at `y`: its label, its bar from the 1x line, its ratio and time. */
function chartRow(
  layout: ChartLayout,
  workload: WorkloadResult,
  entry: ContenderResult,
  y: number,
): string[] {
  const { x, low, high } = layout;
  const barY = y + 2;
  const from = x(1);
  const to = x(Math.min(Math.max(entry.ratio, low), high));
  const left = Math.min(from, to);
  const barWidth = Math.max(Math.abs(to - from), 1);
  const value = workload.throughput && entry.bytesPerSecond !== undefined
    ? formatRate(entry.bytesPerSecond)
    : `${formatTime(entry.median)}/op`;
  return [
    `<text x="${layout.labelWidth}" y="${y + 13}" class="label" text-anchor="end">${
      escapeXml(entry.label)
    }</text>`,
    entry.role === "baseline"
      ? `<rect x="${from - 2}" y="${barY}" width="4" height="${ROW_HEIGHT - 4}" fill="${
        COLORS[entry.family]
      }"/>`
      : `<rect x="${left.toFixed(1)}" y="${barY}" width="${barWidth.toFixed(1)}" height="${
        ROW_HEIGHT - 4
      }" fill="${COLORS[entry.family]}"${entry.role === "ceiling" ? ' fill-opacity="0.6"' : ""}/>`,
    `<text x="${layout.chartRight + 10}" y="${y + 13}" class="value">${
      escapeXml(`${entry.role === "baseline" ? "1x" : formatRatio(entry.ratio)} · ${value}`)
    }</text>`,
  ];
}

/** The workloads' groups of rows from `top` down; `bottom` is the y below the last group. */
function chartBody(
  layout: ChartLayout,
  shown: readonly WorkloadResult[],
  top: number,
): { lines: string[]; bottom: number } {
  const lines: string[] = [];
  let y = top;
  for (const workload of shown) {
    const tag = workload.cache.startsWith("page cache cold") ? "page cache cold" : "page cache hot";
    lines.push(
      `<text x="10" y="${y + 13}" class="group">${escapeXml(workload.title)}</text>` +
        `<text x="${layout.chartRight + 10}" y="${y + 13}" class="note">${tag}</text>`,
    );
    y += ROW_HEIGHT + ROW_GAP;
    for (const entry of workload.contenders) {
      lines.push(...chartRow(layout, workload, entry, y));
      y += ROW_HEIGHT + ROW_GAP;
    }
    y += GROUP_GAP;
  }
  return { lines, bottom: y };
}

/** The vertical lines of the log scale and their labels, the 1x line drawn darker. */
function chartGrid(layout: ChartLayout, top: number, bottom: number): string[] {
  const grid: string[] = [];
  for (const tick of logTicks(layout.low, layout.high)) {
    const tickX = layout.x(tick).toFixed(1);
    grid.push(
      `<line x1="${tickX}" y1="${top - 6}" x2="${tickX}" y2="${bottom - GROUP_GAP}" class="${
        tick === 1 ? "one" : "grid"
      }"/>`,
      `<text x="${tickX}" y="${top - 10}" class="tick" text-anchor="middle">${
        tickLabel(tick)
      }</text>`,
    );
  }
  return grid;
}

/**
 * The chart: for each workload a group of horizontal bars, one per contender, of its speed
 * relative to the workload's baseline on a log scale. Bars grow right of the 1x line for
 * faster than the baseline and left of it for slower; each is labelled with its ratio and its
 * median time (or throughput).
 */
export function renderSvg(run: RunInfo, workloads: readonly WorkloadResult[]): string {
  const shown = workloads.filter((workload) => workload.skipped === undefined);
  const layout = chartLayout(shown);
  const { width } = layout;
  const legend = chartLegend(shown, width);
  const top = legend.bottom + 34;
  const body = chartBody(layout, shown, top);
  const height = body.bottom + 24;
  const machine = (run.machine[0] ?? "").replace(/^Machine: /, "").split(", L2")[0];
  const rounds = [...new Set(shown.map((workload) => workload.rounds))].join("/");
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`,
    "<style>",
    ".title{font-size:16px;font-weight:bold}.sub{font-size:11px;fill:#555}",
    ".group{font-size:13px;font-weight:bold}.label{font-size:12px}.value{font-size:12px}",
    ".note{font-size:11px;fill:#777}.tick{font-size:11px;fill:#555}.legend{font-size:11px}",
    ".grid{stroke:#ddd;stroke-width:1}.one{stroke:#333;stroke-width:1.5}",
    "</style>",
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="10" y="22" class="title">guardmap vs the alternatives: speed relative to ` +
    `node:fs (log scale; right of 1x = faster)</text>`,
    `<text x="10" y="40" class="sub">${
      escapeXml(
        `${run.date}${run.quick ? " (--quick, sizes scaled down)" : ""} · ${machine} · median ` +
          `of ${rounds} interleaved rounds · labels: ratio · median time per operation (or ` +
          "throughput)",
      )
    }</text>`,
    ...legend.lines,
    ...chartGrid(layout, top, body.bottom),
    ...body.lines,
    `<text x="10" y="${height - 8}" class="sub">${
      escapeXml("Tables, method and targets: bench/RESULTS.md (made by bench/compare.ts)")
    }</text>`,
    "</svg>",
    "",
  ].join("\n");
}
