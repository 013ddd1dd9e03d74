/**
 * Helpers shared by the stress scripts in this folder. Not a script itself: the runners
 * (tools/stress.ts, tests/stress_test.ts) skip files whose name starts with `_`.
 *
 * The conventions every script follows: `deno run -A tests/stress/NAME.ts [--seconds N]
 * [--json]`; it bounds its own run time, stays on this machine, exits 0 only when every
 * invariant held, and prints one JSON object as its last stdout line (see {@linkcode StressResult}).
 *
 * @module
 */
import { join } from "node:path";

/** The last stdout line of every stress script. */
export interface StressResult {
  /** The script's name (its file name without `.ts`). */
  name: string;
  /** Whether every invariant held. */
  ok: boolean;
  /** Wall-clock seconds the run took. */
  seconds: number;
  /** What ran, with counts. */
  load: string;
  /** What was injected, with counts. */
  faults: string;
  /** What was verified: leaks, mismatches, crashes. */
  checked: string;
  /** Failures, or anything else worth reading. */
  detail: string;
}

/** The command line of a stress script. */
export interface StressArgs {
  /** The time budget in seconds. */
  seconds: number;
  /** `--json`: print only the result line on stdout (progress goes to stderr either way). */
  json: boolean;
}

/** Parses `--seconds N` (default `defaultSeconds`) and `--json`. */
export function parseArgs(defaultSeconds: number): StressArgs {
  const args = { seconds: defaultSeconds, json: false };
  for (let i = 0; i < Deno.args.length; i++) {
    const arg = Deno.args[i];
    if (arg === "--json") args.json = true;
    else if (arg === "--seconds") {
      args.seconds = Number(Deno.args[++i]);
      if (!(args.seconds > 0)) throw new TypeError(`--seconds needs a positive number`);
    } else throw new TypeError(`unknown argument ${arg} (use --seconds N, --json)`);
  }
  return args;
}

/** Progress on stderr, so that stdout ends with the one JSON line. */
export function log(message: string): void {
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
}

/** Prints the result as the last stdout line and exits 0 when ok, 1 otherwise. */
export function finish(result: StressResult): never {
  console.log(JSON.stringify(result));
  Deno.exit(result.ok ? 0 : 1);
}

/** The number of open descriptors of this process. */
export function descriptorCount(): number {
  let count = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) count++;
  return count;
}

/** The lines of /proc/self/maps that contain `text` (a scratch directory, say). */
export function mappingsContaining(text: string): number {
  return Deno.readTextFileSync("/proc/self/maps").split("\n")
    .filter((line) => line.includes(text)).length;
}

/** The process ids of every descendant of `pid` (children, their children, ...), never others. */
export function descendants(pid: number = Deno.pid): number[] {
  const found: number[] = [];
  const queue = [pid];
  // Bounded: a process tree here is a few dozen processes at most.
  for (let step = 0; step < 10_000 && queue.length > 0; step++) {
    const parent = queue.shift()!;
    let tasks: string[];
    try {
      tasks = [...Deno.readDirSync(`/proc/${parent}/task`)].map((entry) => entry.name);
    } catch {
      continue; // the process is gone
    }
    for (const task of tasks) {
      let children = "";
      try {
        children = Deno.readTextFileSync(`/proc/${parent}/task/${task}/children`);
      } catch {
        continue;
      }
      for (const child of children.trim().split(/\s+/).filter((word) => word !== "")) {
        found.push(Number(child));
        queue.push(Number(child));
      }
    }
  }
  return found;
}

/** The /dev/shm entries created by guardmap on behalf of one of `pids` (`guardmap-PID-...`). */
export function shmEntriesOf(pids: Iterable<number>): string[] {
  const wanted = new Set([...pids].map((pid) => `guardmap-${pid}-`));
  const entries: string[] = [];
  for (const entry of Deno.readDirSync("/dev/shm")) {
    const prefix = entry.name.match(/^guardmap-\d+-/)?.[0];
    if (prefix !== undefined && wanted.has(prefix)) entries.push(join("/dev/shm", entry.name));
  }
  return entries;
}

/** A scratch directory, removed on dispose. */
export function scratchDir(prefix: string): { dir: string } & Disposable {
  const dir = Deno.makeTempDirSync({ prefix: `guardmap-stress-${prefix}-` });
  return { dir, [Symbol.dispose]: () => Deno.removeSync(dir, { recursive: true }) };
}

/** The expected byte at file offset `offset` of file `file` after `version` rewrites. */
export function modelByte(file: number, version: number, offset: number): number {
  return (offset * 31 + file * 17 + version * 101 + (offset >>> 8)) & 0xff;
}

/** The error's class name and code, for counting ("MappedIOError/EIO"). */
export function errorKind(error: unknown): string {
  if (!(error instanceof Error)) return `non-Error ${typeof error}`;
  const code = (error as { code?: unknown }).code;
  return code === undefined ? error.name : `${error.name}/${String(code)}`;
}

/** Adds one to `counts[key]`. */
export function bump(counts: Record<string, number>, key: string, by = 1): void {
  counts[key] = (counts[key] ?? 0) + by;
}

/** `{a: 1, b: 2}` as "a 1, b 2", for the result's fields. */
export function formatCounts(counts: Record<string, number>): string {
  const entries = Object.entries(counts);
  return entries.length === 0
    ? "none"
    : entries.map(([key, value]) => `${key} ${value}`).join(", ");
}

/** Resolves after `milliseconds`. */
export function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}
