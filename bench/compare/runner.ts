/**
 * Contenders, workloads and the interleaved runner of the comparison harness: every workload
 * runs a warm-up batch of each contender, then rounds of one batch per contender in a seeded
 * order, and reports medians over the rounds.
 *
 * @module
 */
import process from "node:process";
import { roundOrder } from "./data.ts";
import type { NumpyPeer } from "./numpy_peer.ts";
import type { Options } from "./options.ts";
import { type Progress, say } from "./progress.ts";
import {
  type Family,
  formatRate,
  formatRatio,
  formatTime,
  type Role,
  summarize,
  type WorkloadResult,
} from "./report.ts";
import type { Session } from "./session.ts";

/** One way of doing a workload's operation. */
export interface Contender {
  /** What it does, as the tables and the chart show it. */
  label: string;
  /** Kind of code (the chart's colour). */
  family: Family;
  /** Baseline, limit, unguarded ceiling or contender. */
  role: Role;
  /** Untimed, before each batch (round -1 is the warm-up). */
  before?(round: number): void | Promise<void>;
  /** One timed batch of the round's operations; returns the elapsed milliseconds. */
  batch(round: number): number | Promise<number>;
  /** Untimed, after each batch: checks and clean-up. */
  after?(round: number): void | Promise<void>;
}

/** A contender without its batch: what `timedContender` and `numpyReads` add the batch to. */
export type ContenderSpec = Omit<Contender, "batch">;

/** A workload: its contenders and how to run and describe them (as its result will). */
export interface Workload extends Omit<WorkloadResult, "contenders" | "skipped"> {
  /** In the order they are listed; each round runs them in a shuffled order. */
  contenders: Contender[];
  /** Notes known only after the rounds (residency checks, say). */
  finish?(): string[];
  /** Releases what the workload opened, after its rounds. */
  close?(): void | Promise<void>;
}

/** One row of the harness's table of workloads (`workloads.ts`). */
export interface WorkloadEntry {
  /** What `--only` calls it. */
  id: string;
  /** About how long it runs, in seconds, `[--quick, full]`: the progress estimate's start. */
  seconds: readonly [number, number];
  /** Whether the options let it run (beyond `--only`); always when absent. */
  enabled?(options: Options): boolean;
  /** Prepares it (untimed: files, checks of every contender's bytes), or says why it cannot run. */
  build(session: Session): Promise<Workload | WorkloadResult>;
}

/**
 * The round's operations `[start, end)` of a workload doing `ops` per round, the same for every
 * contender of the round; slice 0 is the warm-up's (round -1).
 */
export function roundSlice(ops: number): (round: number) => [number, number] {
  return (round) => [(round + 1) * ops, (round + 2) * ops];
}

/** A `roundSlice` for batches of one operation that take no position from it. */
export const ONE_OPERATION = (): [number, number] => [0, 1];

/**
 * A contender whose batch is `loop(start, end)` over the round's operations (from `slice`,
 * computed before the clock starts), timed with `performance.now()`.
 */
export function timedContender(
  spec: ContenderSpec,
  slice: (round: number) => [number, number],
  loop: (start: number, end: number) => void | Promise<void>,
): Contender {
  return {
    ...spec,
    batch(round) {
      const [start, end] = slice(round);
      const t0 = performance.now();
      const pending = loop(start, end);
      if (pending === undefined) return performance.now() - t0;
      return pending.then(() => performance.now() - t0);
    },
  };
}

/** What `numpyReads` asks numpy_memmap.py to read in each batch. */
export interface NumpyRead {
  /** The offsets' name (sent with `op: "offsets"` before). */
  name: string;
  /** Bytes per read. */
  size: number;
  /** Reads per batch. */
  count: number;
  /** Operations of the round (the first is the batch's first offset). */
  slice: (round: number) => [number, number];
  /** Whether numpy_memmap.py empties its core's caches before the batch. */
  evict: boolean;
  /**
   * Whether it first reads a byte of every page of its reused `np.copyto` target, as the harness
   * does for the target it shares among the Deno contenders (sequential_hot.ts, `touchTarget`).
   */
  touchTarget?: boolean;
}

/** The two numpy.memmap read contenders (`np.array` and `np.copyto`), timed in Python. */
export function numpyReads(
  numpy: NumpyPeer,
  read: NumpyRead,
  spec: Pick<ContenderSpec, "before"> = {},
): Contender[] {
  return (["array", "copyto"] as const).map((variant) => ({
    label: variant === "array"
      ? "numpy.memmap np.array(mm[a:b])"
      : "numpy.memmap np.copyto(out, mm[a:b])",
    family: "numpy",
    role: "contender",
    ...spec,
    async batch(round) {
      const { ns } = await numpy.request<{ ns: number }>({
        op: "read",
        name: read.name,
        size: read.size,
        start: read.slice(round)[0],
        count: read.count,
        variant,
        ...(read.evict ? { evict: true } : {}),
        ...(read.touchTarget ? { touch_target: true } : {}),
      });
      return ns / 1e6;
    },
  }));
}

/** Minor page faults of this process so far (getrusage). */
function minorFaults(): number {
  return process.resourceUsage().minorPageFault;
}

/** Per contender: the per-operation times of the rounds and the page faults of its batches. */
async function runRounds(
  workload: Workload,
  progress: Progress,
): Promise<{ samples: number[][]; faults: number[] }> {
  const samples: number[][] = workload.contenders.map(() => []);
  const faults: number[] = workload.contenders.map(() => 0);
  for (const contender of workload.contenders) {
    await contender.before?.(-1);
    await contender.batch(-1);
    await contender.after?.(-1);
  }
  const count = workload.contenders.length;
  for (let round = 0; round < workload.rounds; round++) {
    progress.round(workload.title, round);
    // Interleaved, in a new order each round, so that no contender always runs right after the
    // same neighbour: what ran just before can slow a copy down (a large copy right after a
    // kernel copy into the same buffer measured up to 20 % slower, whoever made it). Rotating
    // A B C, B C A, C A B kept every contender behind the same one in all rounds but one.
    const order = roundOrder(count, round);
    for (let k = 0; k < count; k++) {
      const c = order[k];
      const contender = workload.contenders[c];
      await contender.before?.(round);
      const faultsBefore = minorFaults();
      const elapsed = await contender.batch(round);
      faults[c] += minorFaults() - faultsBefore;
      await contender.after?.(round);
      samples[c].push(elapsed / workload.opsPerRound);
    }
  }
  return { samples, faults };
}

/** Runs the workload's warm-up and rounds, prints each contender's median, returns the result. */
export async function runWorkload(workload: Workload, progress: Progress): Promise<WorkloadResult> {
  progress.begin(workload.id, workload.title, workload.rounds);
  const { samples, faults } = await runRounds(workload, progress);
  progress.end(workload.id);
  const contenders = summarize(
    workload.contenders.map((contender, c) => ({
      label: contender.label,
      family: contender.family,
      role: contender.role,
      samples: samples[c],
    })),
    workload.bytesPerOp,
  );
  for (const entry of contenders) {
    say(
      `  ${entry.label}: ${formatTime(entry.median)}/op ${formatRate(entry.bytesPerSecond)} ` +
        `${entry.role === "baseline" ? "(baseline)" : formatRatio(entry.ratio)}`,
    );
  }
  const { id, title, operation, cache, opsPerRound, bytesPerOp, throughput, rounds } = workload;
  const notes = [
    ...workload.notes,
    ...(workload.finish?.() ?? []),
    `page faults in the harness process during the timed batches: ${
      workload.contenders.map((contender, c) => `${contender.label} ${faults[c]}`).join("; ")
    } (a page dropped from a map and touched again adds one fault per page; the runtime's own ` +
    "heap growth adds some)",
  ];
  await workload.close?.();
  return {
    id,
    title,
    operation,
    cache,
    opsPerRound,
    bytesPerOp,
    throughput,
    rounds,
    contenders,
    notes,
  };
}

/** The result of a workload that could not run, and why. */
export function skippedResult(
  described: Pick<WorkloadResult, "id" | "title" | "operation" | "cache">,
  reason: string,
): WorkloadResult {
  return {
    ...described,
    opsPerRound: 0,
    bytesPerOp: 0,
    throughput: false,
    rounds: 0,
    contenders: [],
    notes: [],
    skipped: reason,
  };
}

/** Whether `built` is a workload that did not run (a result with its reason). */
export function isSkipped(built: Workload | WorkloadResult): built is WorkloadResult {
  return "skipped" in built && built.skipped !== undefined;
}
