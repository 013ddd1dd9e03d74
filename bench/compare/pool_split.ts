/**
 * The reduction split over MapPool workers: the sum of every float64 value of the data file,
 * with the file cut into `W` windows of equal length, each mapped on its own worker
 * (`MapPool.open`'s `worker` option) and summed there by `run` at the same time; against one
 * worker and against the same kernel in-process over `unsafeView()`.
 *
 * @module
 */
import { MapPool, type PoolFile } from "../../mod.ts";
import { sumFloat64 } from "../kernels.ts";
import { warmPageCache } from "./data.ts";
import { scaled } from "./options.ts";
import { commandText } from "./machine.ts";
import { formatBytes, formatRatio } from "./report.ts";
import {
  type Contender,
  ONE_OPERATION,
  timedContender,
  type Workload,
  type WorkloadEntry,
} from "./runner.ts";
import type { Session } from "./session.ts";

const KERNELS = new URL("../kernels.ts", import.meta.url);

/**
 * The worker counts measured: powers of two up to the CPUs this process may use (1 and 2 on a
 * 2-core machine). Each needs the file to split into windows of whole float64 values.
 */
export function workerCounts(cpus: number, fileBytes: number): number[] {
  const counts: number[] = [];
  for (let count = 1; count <= cpus && count <= 64; count *= 2) {
    if (fileBytes % (count * 8) === 0) counts.push(count);
  }
  return counts;
}

/**
 * Milliseconds the main threads of `pids` (a worker's JavaScript, which runs the kernel) spent
 * on a CPU, and how often another task took the CPU from them (`/proc/<pid>/sched`, read by
 * `cat`: Deno grants reads under /proc only with --allow-all), summed; zeros where unreadable.
 */
async function schedTimes(pids: readonly number[]): Promise<{ runMs: number; preempted: number }> {
  const text = await commandText("cat", pids.map((pid) => `/proc/${pid}/sched`)) ?? "";
  let runMs = 0;
  let preempted = 0;
  for (const match of text.matchAll(/se\.sum_exec_runtime\s*:\s*([\d.]+)/g)) runMs += +match[1];
  for (const match of text.matchAll(/nr_involuntary_switches\s*:\s*(\d+)/g)) preempted += +match[1];
  return { runMs, preempted };
}

/** Per timed batch of one split: wall time, the workers' CPU time, and their preemptions. */
interface SchedSamples {
  wallMs: number[];
  runMs: number[];
  preempted: number[];
}

/** What the contenders of the workload share. */
interface SplitRun {
  s: Session;
  /** Sums of the whole file per batch. */
  sums: number;
  /** One worker per window of the largest split; the smaller splits use its first workers. */
  pool: MapPool;
  /** Per worker count: where the workers' time went in each timed batch. */
  sched: Map<number, SchedSamples>;
}

/** Throws unless `sum` is the exact sum of the file. */
function checkSum(q: SplitRun, label: string, sum: number): void {
  if (sum !== q.s.expectedSum) {
    throw new Error(`${label} summed ${sum}, the file holds ${q.s.expectedSum}`);
  }
}

/** The file in `count` windows of equal length, window `k` on worker `k`, prefaulted there. */
async function openWindows(q: SplitRun, count: number): Promise<PoolFile[]> {
  const length = q.s.options.fileBytes / count;
  const windows = await Promise.all(
    Array.from(
      { length: count },
      (_, worker) => q.pool.open(q.s.dataPath, { offset: worker * length, length, worker }),
    ),
  );
  await Promise.all(windows.map((window) => window.prefault()));
  return windows;
}

/** `count` workers summing a window each at once; one worker is the baseline. */
async function splitSummer(q: SplitRun, count: number): Promise<Contender> {
  const windows = await openWindows(q, count);
  const label = count === 1
    ? "MapPool run(sumFloat64) on 1 worker, the whole file"
    : `MapPool run(sumFloat64) on ${count} workers at once, 1/${count} of the file each`;
  let sum = 0;
  const pids = (): number[] => q.pool.pids.slice(0, count);
  const samples: SchedSamples = { wallMs: [], runMs: [], preempted: [] };
  q.sched.set(count, samples);
  let start = { runMs: 0, preempted: 0, atMs: 0 };
  const before = async (): Promise<void> => {
    start = { ...await schedTimes(pids()), atMs: performance.now() };
  };
  const after = async (round: number): Promise<void> => {
    checkSum(q, label, sum);
    const wallMs = performance.now() - start.atMs;
    const end = await schedTimes(pids());
    if (round < 0) return;
    samples.wallMs.push(wallMs);
    samples.runMs.push(end.runMs - start.runMs);
    samples.preempted.push(end.preempted - start.preempted);
  };
  const role = count === 1 ? "baseline" : "contender";
  const spec = { label, family: "pool", role, before, after } as const;
  return timedContender(spec, ONE_OPERATION, async () => {
    for (let k = 0; k < q.sums; k++) {
      const parts = await Promise.all(
        windows.map((window) => window.run<number>(KERNELS, "sumFloat64")),
      );
      // Exact in any order (see data.ts), so the parts add up to the file's sum.
      sum = parts.reduce((total, part) => total + part, 0);
    }
  });
}

/** The same kernel in this process over the whole map: what one CPU does without a pool. */
function viewSummer(q: SplitRun): Contender {
  const label = "kernels.ts sumFloat64 over unsafeView(), in-process";
  let sum = 0;
  const after = (): void => checkSum(q, label, sum);
  return timedContender({ label, family: "view", role: "ceiling", after }, ONE_OPERATION, () => {
    for (let k = 0; k < q.sums; k++) sum = sumFloat64(q.s.view);
  });
}

/** The middle value of `values` (the upper one of the two middle values for an even count). */
function middle(values: readonly number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}

/**
 * The worker counts, and per count how much CPU its workers got: with W workers on W free CPUs
 * their CPU time is about W times the wall time; other processes on the machine take CPU time
 * from them (preemptions).
 */
function scalingNotes(sched: Map<number, SchedSamples>): string[] {
  const counts = [...sched.keys()];
  const notes = [
    `worker counts measured: ${counts.join(", ")} (powers of two up to the ` +
    `${navigator.hardwareConcurrency} CPUs); the ratio column is each split's speed-up over ` +
    `one worker (${formatRatio(1)} = no gain)`,
  ];
  for (const [count, samples] of sched) {
    if (samples.wallMs.length === 0) continue;
    const wall = middle(samples.wallMs);
    const run = middle(samples.runMs);
    notes.push(
      `${count} worker${
        count === 1 ? "" : "s"
      }, medians per timed batch (from \`/proc/<pid>/sched\` of the workers' main threads): ` +
        `${wall.toFixed(0)} ms wall, ${run.toFixed(0)} ms on a CPU in total ` +
        `(${(run / wall).toFixed(2)} CPUs busy on average), ` +
        `preempted ${middle(samples.preempted)} times by other tasks`,
    );
  }
  return notes;
}

async function poolSplitWorkload(s: Session): Promise<Workload> {
  warmPageCache(s.dataPath);
  const { options } = s;
  const counts = workerCounts(navigator.hardwareConcurrency, options.fileBytes);
  const pool = new MapPool({ workers: counts[counts.length - 1] });
  const q: SplitRun = { s, sums: scaled(options, 1, 2), pool, sched: new Map() };
  const contenders: Contender[] = [];
  try {
    for (const count of counts) contenders.push(await splitSummer(q, count));
  } catch (error) {
    await pool.close();
    throw error;
  }
  contenders.push(viewSummer(q));
  return {
    id: "pool-split",
    title: `reduction split over MapPool workers: sum of ${formatBytes(options.fileBytes)}`,
    operation: `sum all ${options.fileBytes / 8} float64 values of the file, in equal windows ` +
      "on W workers at once (`MapPool.open(path, { offset, length, worker })`, `run` on each)",
    cache: "page cache hot; each window prefaulted in its worker",
    opsPerRound: q.sums,
    bytesPerOp: options.fileBytes,
    throughput: true,
    rounds: options.rounds,
    contenders,
    notes: [
      `every sum is checked against the exact sum of the file (${s.expectedSum}); the kernel ` +
      "is bench/kernels.ts `sumFloat64`, the one the reduction workload runs",
    ],
    finish: () => scalingNotes(q.sched),
    close: () => pool.close(),
  };
}

/** The reduction split over 1, 2, ... workers; sums of the whole file per round: 1 or 2. */
export const POOL_SPLIT: WorkloadEntry = {
  id: "pool-split",
  seconds: [5, 20],
  build: poolSplitWorkload,
};
