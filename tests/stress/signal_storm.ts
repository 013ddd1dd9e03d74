/**
 * Stress: guarded reads that fault (SIGBUS) all the time while other signals arrive.
 *
 *   deno run -A tests/stress/signal_storm.ts [--seconds N] [--json]
 *
 * A child Deno process maps a file and reads it at random positions in a loop while a Web Worker
 * in the same process truncates and re-extends the file, so that many reads end in a
 * `MappedIOError`. The child registers `Deno.addSignalListener` listeners for SIGINT, SIGUSR1 and
 * SIGUSR2, and this process sends it the three in turn, about 2,000 per second in total. Each guarded fault
 * enters guardmap's SIGBUS handler on the thread's small alternate signal stack, and each of the
 * other signals enters Deno's handler; issue 10 found them nesting there until the stack
 * overflowed (SIGSEGV). tests/stress/profiler_storm.ts runs the same child under V8's sampling
 * profiler instead (its SIGPROF).
 *
 * The run passes when the child exits 0 (no crash), a large number of reads faulted (so the storm
 * really happened) and both listeners saw signals. The last stdout line is the JSON result that
 * every script in tests/stress/ prints. Set GUARDMAP_LIB to run against another build of the
 * library (the child inherits the environment).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import type { TruncatorJob } from "./_signal_storm_truncator.ts";

/** The last stdout line of the script. */
export interface StormResult {
  name: string;
  ok: boolean;
  seconds: number;
  load: string;
  faults: string;
  checked: string;
  detail: string;
  /** The numbers behind the text fields, for tests/signal_storm_test.ts. */
  counts: StormCounts;
}

/** What the child and this process counted. */
export interface StormCounts {
  /** Guarded reads that completed. */
  reads: number;
  /** Guarded reads that ended in a MappedIOError. */
  mappedIOErrors: number;
  /** Truncate + re-extend cycles of the worker. */
  truncations: number;
  /** Signals this process sent (listeners mode). */
  sent: number;
  /** Calls of the child's listener of each signal sent (listeners mode). */
  listenerCalls: Record<string, number>;
  /** `tick` lines in V8's profiler logs (profiler mode). */
  profilerTicks: number;
  /** Size of the child's main-thread alternate signal stack (Rust std's). */
  altStackBytes: number;
  /** The deepest the alternate stack was ever written during the storm. */
  altStackHighWaterBytes: number;
  /** The depth of one guarded fault taken alone (kernel frame + guardmap's handler). */
  faultFrameBytes: number;
  /** The child's exit code and the signal that ended it, if any. */
  exitCode: number;
  exitSignal: string | null;
}

/** `listeners`: STORM_SIGNALS from outside; `profiler`: the child runs with `--prof`. */
export type StormMode = "listeners" | "profiler";

/** The child's report: its last stdout line. */
interface TargetReport {
  reads: number;
  mappedIOErrors: number;
  truncations: number;
  listenerCalls: Record<string, number>;
  altStackBytes: number;
  altStackHighWaterBytes: number;
  faultFrameBytes: number;
  otherErrors: string[];
}

const FILE_BYTES = 1 << 20;
const KEPT_BYTES = 64 << 10;
const READ_BYTES = 16 << 10;
/**
 * The signals sent in listeners mode, in turn, each with a listener in the child. Issue 10 used
 * SIGINT and SIGUSR1; here, with two kinds, at most three frames stacked on the alternate stack
 * (our SIGBUS frame, then one of each, 10.6 KB of 11,952 bytes) and the process survived. A
 * third kind makes a fourth frame possible, which does not fit: main's handler then crashed the
 * child within 0.1 s. Deno 2.9 also starts its inspector on SIGUSR1 (see the stderr note below).
 */
export const STORM_SIGNALS: readonly Deno.Signal[] = ["SIGINT", "SIGUSR1", "SIGUSR2"];
/** Signals per second sent in listeners mode, all kinds together. */
const SIGNAL_RATE = 2_000;
/** Reads between two yields to the event loop (where the signal listeners run). */
const READS_PER_TURN = 500;
/** At least this many MappedIOErrors per second of storm, or the run proves nothing. */
export const FAULTS_PER_SECOND_MIN = 200;
/**
 * Calibration faults: the child takes this many guarded faults one at a time before the storm and
 * keeps the smallest alternate-stack depth it saw as the size of one fault frame (a SIGPROF that
 * happens to land during one of them only makes that one deeper).
 */
const CALIBRATION_FAULTS = 20;

function parseArgs(): {
  seconds: number;
  json: boolean;
  role: string;
  path: string;
  listen: boolean;
} {
  const args = { seconds: 10, json: false, role: "orchestrator", path: "", listen: false };
  for (let i = 0; i < Deno.args.length; i++) {
    const arg = Deno.args[i];
    if (arg === "--json") args.json = true;
    else if (arg === "--listen") args.listen = true;
    else if (arg === "--seconds") args.seconds = Number(Deno.args[++i]);
    else if (arg === "--role") args.role = Deno.args[++i];
    else if (arg === "--path") args.path = Deno.args[++i];
    else throw new TypeError(`unknown argument ${arg} (use --seconds N, --json)`);
  }
  if (!(args.seconds > 0)) throw new TypeError(`--seconds needs a positive number`);
  return args;
}

/** Progress goes to stderr, so that stdout ends with the one JSON line. */
function log(message: string): void {
  console.error(`[signal_storm ${new Date().toISOString().slice(11, 19)}] ${message}`);
}

// ---- the child: guarded reads under truncation, with listeners ---------------------------------

async function runTarget(seconds: number, path: string, listen: boolean): Promise<void> {
  // mod.ts is imported here, not at the top, so that the orchestrator never loads the library.
  const { MappedFile, MappedIOError } = await import("../../mod.ts");
  const report: TargetReport = {
    reads: 0,
    mappedIOErrors: 0,
    truncations: 0,
    listenerCalls: {},
    altStackBytes: 0,
    altStackHighWaterBytes: 0,
    faultFrameBytes: 0,
    otherErrors: [],
  };
  const altStack = paintAltStack();
  if (listen) {
    for (const signal of STORM_SIGNALS) {
      report.listenerCalls[signal] = 0;
      Deno.addSignalListener(signal, () => report.listenerCalls[signal]++);
    }
  }
  using map = MappedFile.open(path);
  const target = new Uint8Array(READ_BYTES);
  report.faultFrameBytes = calibrate(altStack, () => {
    Deno.truncateSync(path, KEPT_BYTES);
    try {
      map.read(target, FILE_BYTES - READ_BYTES);
    } catch (error) {
      if (!(error instanceof MappedIOError)) throw error;
    } finally {
      Deno.truncateSync(path, FILE_BYTES);
    }
  });
  const shared = new SharedArrayBuffer(8);
  const flags = new Int32Array(shared);
  const worker = new Worker(new URL("./_signal_storm_truncator.ts", import.meta.url), {
    type: "module",
  });
  const stopped = new Promise((resolve) => worker.onmessage = resolve);
  const job: TruncatorJob = { path, fileBytes: FILE_BYTES, keptBytes: KEPT_BYTES, shared };
  worker.postMessage(job);
  // The orchestrator sends nothing before this line: a SIGINT without a listener would kill us.
  console.log("ready");
  let random = 0x9e3779b9;
  const deadline = performance.now() + seconds * 1000;
  // Bounded by the deadline; each turn is READS_PER_TURN reads.
  while (performance.now() < deadline && report.otherErrors.length < 10) {
    for (let i = 0; i < READS_PER_TURN; i++) {
      random ^= random << 13;
      random ^= random >>> 17;
      random ^= random << 5;
      const position = (random >>> 0) % (FILE_BYTES - READ_BYTES);
      try {
        map.read(target, position);
        report.reads++;
      } catch (error) {
        if (error instanceof MappedIOError) report.mappedIOErrors++;
        else report.otherErrors.push(String(error));
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  Atomics.store(flags, 0, 1);
  await stopped;
  worker.terminate();
  report.truncations = Atomics.load(flags, 1);
  report.altStackBytes = altStack.byteLength;
  report.altStackHighWaterBytes = highWater(altStack);
  // Let listeners run for signals still pending, then report. The listeners stay registered until
  // the process exits: the orchestrator may still be sending, and SIGINT without one would kill.
  await new Promise((resolve) => setTimeout(resolve, 10));
  console.log(JSON.stringify(report));
  Deno.exit(0);
}

const PAINT = 0xa5;

/**
 * Fills this thread's alternate signal stack with PAINT and returns a view of it (empty when the
 * thread has none). Signal handlers with SA_ONSTACK, and any handler that interrupts one, write
 * their frames there from the top down; `highWater` later finds the deepest byte they touched.
 * The thread is not on that stack now (this is ordinary JavaScript), so painting it is safe.
 */
function paintAltStack(): Uint8Array {
  const libc = Deno.dlopen(
    "libc.so.6",
    {
      sigaltstack: { parameters: ["buffer", "buffer"], result: "i32" },
    } as const,
  );
  // struct stack_t on 64-bit Linux: void *ss_sp; int ss_flags; size_t ss_size.
  const current = new BigUint64Array(3);
  const status = libc.symbols.sigaltstack(null, current);
  libc.close();
  if (status !== 0) throw new Error("sigaltstack failed");
  const disabled = (Number(current[1] & 0xffffffffn) & 2) !== 0; // SS_DISABLE
  if (disabled || current[0] === 0n) return new Uint8Array(0);
  const pointer = Deno.UnsafePointer.create(current[0])!;
  const view = new Uint8Array(
    Deno.UnsafePointerView.getArrayBuffer(pointer, Number(current[2])),
  );
  view.fill(PAINT);
  return view;
}

/**
 * The alternate-stack depth of one guarded fault taken alone: the smallest of CALIBRATION_FAULTS
 * runs of `fault`, each on a freshly painted stack, which is painted again afterwards.
 */
function calibrate(stack: Uint8Array, fault: () => void): number {
  let smallest = stack.length;
  for (let i = 0; i < CALIBRATION_FAULTS; i++) {
    stack.fill(PAINT);
    fault();
    smallest = Math.min(smallest, highWater(stack));
  }
  stack.fill(PAINT);
  return smallest;
}

/** Bytes from the top of the painted stack down to the deepest byte that is no longer PAINT. */
function highWater(stack: Uint8Array): number {
  for (let index = 0; index < stack.length; index++) {
    if (stack[index] !== PAINT) return stack.length - index;
  }
  return 0;
}

// ---- the orchestrator --------------------------------------------------------------------------

/** Collects a child's output lines and tells when "ready" arrived. */
function lineReader(
  stream: ReadableStream<Uint8Array>,
): { lines: string[]; ready: Promise<void>; done: Promise<void> } {
  const lines: string[] = [];
  let markReady = () => {};
  const ready = new Promise<void>((resolve) => markReady = resolve);
  const done = (async () => {
    let pending = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      const parts = pending.split("\n");
      pending = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        if (line === "ready") markReady();
      }
    }
    if (pending !== "") lines.push(pending);
    markReady();
  })();
  return { lines, ready, done };
}

/** Sends STORM_SIGNALS in turn to `pid` at SIGNAL_RATE until `stop()` is true. Returns the count. */
async function sendSignals(pid: number, stop: () => boolean): Promise<number> {
  const start = performance.now();
  let sent = 0;
  // Bounded by the child's exit (stop), which the orchestrator's own timeout guarantees.
  while (!stop()) {
    const due = Math.floor(((performance.now() - start) / 1000) * SIGNAL_RATE);
    // At most 50 ms worth per turn, so a stalled timer never turns into a burst of thousands.
    const limit = Math.min(due, sent + SIGNAL_RATE / 20);
    try {
      while (sent < limit) {
        Deno.kill(pid, STORM_SIGNALS[sent % STORM_SIGNALS.length]);
        sent++;
      }
    } catch {
      break; // The child is gone.
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return sent;
}

/** The `tick` lines V8's `--prof` wrote into `dir`'s isolate logs. */
function profilerTicks(dir: string): number {
  let ticks = 0;
  for (const entry of Deno.readDirSync(dir)) {
    if (!entry.name.endsWith(".log")) continue;
    const text = Deno.readTextFileSync(join(dir, entry.name));
    for (const line of text.split("\n")) if (line.startsWith("tick,")) ticks++;
  }
  return ticks;
}

/**
 * Runs one storm in a child process and checks it. Used by this script (listeners) and by
 * profiler_storm.ts (profiler).
 *
 * @example
 * ```ts ignore
 * import { runStorm } from "./signal_storm.ts";
 * const result = await runStorm("listeners", 5);
 * console.log(result.ok, result.counts.mappedIOErrors);
 * ```
 */
export async function runStorm(mode: StormMode, seconds: number): Promise<StormResult> {
  const started = performance.now();
  // The scratch directory is also the child's cwd: --prof writes its logs there.
  const dir = Deno.makeTempDirSync({ prefix: "guardmap-signal-storm-" });
  try {
    const path = join(dir, "storm.bin");
    Deno.writeFileSync(path, new Uint8Array(FILE_BYTES).fill(0x5a));
    const script = fileURLToPath(import.meta.url);
    const args = [
      "run",
      "--quiet",
      "-A",
      ...(mode === "profiler" ? ["--v8-flags=--prof"] : []),
      script,
      "--role",
      "target",
      "--seconds",
      String(seconds),
      "--path",
      path,
      ...(mode === "listeners" ? ["--listen"] : []),
    ];
    log(`${mode}: ${Deno.execPath()} ${args.join(" ")}`);
    const child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: dir,
      stdout: "piped",
      // Piped: Deno 2.9 answers SIGUSR1 by starting its inspector on 127.0.0.1:9229 and, when
      // that port is taken (another storm), prints an error line for every SIGUSR1.
      stderr: "piped",
    }).spawn();
    // The child bounds its own time; this is the backstop if it hangs.
    const timeout = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }, (seconds + 60) * 1000);
    let exited = false;
    const status = child.status.then((value) => {
      exited = true;
      return value;
    });
    const reader = lineReader(child.stdout);
    const errors = lineReader(child.stderr);
    await Promise.race([reader.ready, status]);
    const sent = mode === "listeners" && !exited ? await sendSignals(child.pid, () => exited) : 0;
    const { code, signal } = await status;
    clearTimeout(timeout);
    await Promise.all([reader.done, errors.done]);
    const ticks = mode === "profiler" ? profilerTicks(dir) : 0;
    const result = judge(mode, seconds, started, reader.lines, code, signal, sent, ticks);
    const stderr = errors.lines.filter((line) => !line.includes("inspector server"));
    if (!result.ok && stderr.length > 0) {
      result.detail += `; the child's stderr ends: ${stderr.slice(-5).join(" | ")}`;
    }
    return result;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/**
 * The alternate-stack invariant: at its deepest, the stack still had room for one more guarded
 * fault frame (measured by the child before the storm). Handlers that stack on guardmap's frame
 * break it: before the fix of issue 10, the storm left 1.3-1.9 KB of Deno's 11,952 bytes free
 * when it did not crash, less than one 3.4 KB fault frame (zig/SIGNALS.md).
 */
export function altStackProblem(counts: StormCounts): string | undefined {
  if (counts.altStackBytes === 0 || counts.faultFrameBytes === 0) {
    return "the child's main thread had no alternate signal stack to measure";
  }
  const free = counts.altStackBytes - counts.altStackHighWaterBytes;
  if (free >= counts.faultFrameBytes) return undefined;
  return `the alternate stack was used down to ${counts.altStackHighWaterBytes} of ` +
    `${counts.altStackBytes} bytes: ${free} left, less than one fault frame ` +
    `(${counts.faultFrameBytes}); handlers nested on it`;
}

function judge(
  mode: StormMode,
  seconds: number,
  started: number,
  lines: string[],
  exitCode: number,
  exitSignal: Deno.Signal | null,
  sent: number,
  profilerTicks: number,
): StormResult {
  const last = lines.at(-1) ?? "";
  let report: TargetReport | undefined;
  try {
    report = last.startsWith("{") ? JSON.parse(last) : undefined;
  } catch { /* judged below */ }
  const counts: StormCounts = {
    reads: report?.reads ?? 0,
    mappedIOErrors: report?.mappedIOErrors ?? 0,
    truncations: report?.truncations ?? 0,
    sent,
    listenerCalls: report?.listenerCalls ?? {},
    profilerTicks,
    altStackBytes: report?.altStackBytes ?? 0,
    altStackHighWaterBytes: report?.altStackHighWaterBytes ?? 0,
    faultFrameBytes: report?.faultFrameBytes ?? 0,
    exitCode,
    exitSignal,
  };
  const failures: string[] = [];
  if (exitSignal !== null) failures.push(`the child died of ${exitSignal}`);
  else if (exitCode !== 0) failures.push(`the child exited with code ${exitCode}`);
  if (report === undefined) failures.push("the child printed no report");
  for (const error of report?.otherErrors ?? []) failures.push(`unexpected error: ${error}`);
  const faultsMin = Math.floor(FAULTS_PER_SECOND_MIN * seconds);
  if (report !== undefined && counts.mappedIOErrors < faultsMin) {
    failures.push(`only ${counts.mappedIOErrors} MappedIOErrors (at least ${faultsMin} expected)`);
  }
  if (report !== undefined && counts.reads === 0) failures.push("no read completed");
  if (mode === "listeners" && report !== undefined) {
    for (const signal of STORM_SIGNALS) {
      if (!(counts.listenerCalls[signal] > 0)) failures.push(`the ${signal} listener never ran`);
    }
  }

  if (mode === "profiler" && profilerTicks === 0) failures.push("the profiler logged no tick");
  const problem = altStackProblem(counts);
  if (report !== undefined && problem !== undefined) failures.push(problem);
  const injected = mode === "listeners"
    ? `SIGBUS from ${counts.truncations} truncations; ${sent} signals sent ` +
      `(${STORM_SIGNALS.join("+")}), listener calls ${JSON.stringify(counts.listenerCalls)}`
    : `SIGBUS from ${counts.truncations} truncations; V8 --prof logged ${profilerTicks} ticks`;
  return {
    name: mode === "listeners" ? "signal_storm" : "profiler_storm",
    ok: failures.length === 0,
    seconds: Math.round((performance.now() - started) / 100) / 10,
    load: `${counts.reads + counts.mappedIOErrors} guarded 16 KiB reads ` +
      `(${counts.mappedIOErrors} MappedIOError) in a child with a truncating Web Worker`,
    faults: injected,
    checked: `child exit (code ${exitCode}, signal ${exitSignal ?? "none"}), ` +
      `MappedIOErrors >= ${faultsMin}, signals delivered; main thread's alternate stack used ` +
      `${counts.altStackHighWaterBytes} of ${counts.altStackBytes} bytes at most ` +
      `(one fault frame: ${counts.faultFrameBytes})`,
    detail: failures.length === 0 ? "no crash" : failures.join("; "),
    counts,
  };
}

/** Runs the orchestrator for `mode` with this process's arguments and exits with its verdict. */
export async function main(mode: StormMode): Promise<never> {
  const args = parseArgs();
  const result = await runStorm(mode, args.seconds);
  if (!args.json) log(`${result.ok ? "ok" : "FAILED"}: ${result.detail}`);
  console.log(JSON.stringify(result));
  Deno.exit(result.ok ? 0 : 1);
}

if (import.meta.main) {
  const args = parseArgs();
  if (args.role === "target") await runTarget(args.seconds, args.path, args.listen);
  else await main("listeners");
}
