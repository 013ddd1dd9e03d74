/**
 * Stress: Web Workers map, read, readMany, write and close a few files while this thread keeps
 * truncating them (at random sizes, page-aligned or not) and extending them back. Every byte a
 * call reported as read must be one the model allows at that offset (the pattern, what the
 * writers write there, or the zeros of a re-extension); a write read back with no truncation in
 * between must read back exactly. Faults must be MappedIOErrors; a SIGBUS or SIGSEGV that
 * escapes the guard kills this process, which the runners report as a crash.
 *
 *   deno run -A tests/stress/webworker_truncation_storm.ts [--seconds N] [--json]
 *
 * @module
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import {
  bump,
  finish,
  formatCounts,
  log,
  modelByte,
  parseArgs,
  scratchDir,
  sleep,
} from "./_common.ts";
import type { TruncationJob, TruncationReport } from "./_truncation_worker.ts";

const WORKERS = 4;
const FILES = 3;
const SIZE = 256 * 1024;
const PAGE = 4096;

const args = parseArgs(20);
const started = performance.now();
using tmp = scratchDir("truncation");
const paths = Array.from({ length: FILES }, (_, file) => join(tmp.dir, `file-${file}.bin`));
const full = paths.map((_, file) => {
  const bytes = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) bytes[i] = modelByte(file, 0, i);
  return bytes;
});
paths.forEach((path, file) => Deno.writeFileSync(path, full[file]));

// [0]: stop flag; [1]: truncation epoch, odd while a truncation and its repair run.
const shared = new SharedArrayBuffer(8);
const flags = new Int32Array(shared);
const reports: Promise<TruncationReport>[] = [];
const workers: Worker[] = [];
const crashes: string[] = [];
for (let index = 0; index < WORKERS; index++) {
  const worker = new Worker(new URL("./_truncation_worker.ts", import.meta.url), {
    type: "module",
  });
  workers.push(worker);
  reports.push(
    new Promise((resolve) => {
      worker.onmessage = (event: MessageEvent<TruncationReport>) => resolve(event.data);
      worker.onerror = (event) => {
        event.preventDefault();
        crashes.push(`worker ${index}: ${event.message}`);
        resolve({ counts: {}, mismatches: [] });
      };
    }),
  );
  const job: TruncationJob = { paths, size: SIZE, shared, seed: 0x9e3779b9 * (index + 1) };
  worker.postMessage(job);
}
log(`${WORKERS} workers on ${FILES} files of ${SIZE} bytes for ${args.seconds} s`);

// The truncator: cut a file to a random size, give the workers a moment to fault on it, extend it
// back (the kernel zero-fills) and write the pattern back over part of the cut range.
const truncator: Record<string, number> = {};
const deadline = started + args.seconds * 1000;
let seed = 12345;
while (performance.now() < deadline) {
  seed = (seed * 1103515245 + 12345) >>> 0;
  const file = seed % FILES;
  const aligned = (seed >>> 8) % 2 === 0;
  const cut = aligned ? ((seed >>> 9) % (SIZE / PAGE)) * PAGE : (seed >>> 9) % SIZE;
  Atomics.add(flags, 1, 1);
  Deno.truncateSync(paths[file], cut);
  bump(truncator, "truncations");
  await sleep(1 + (seed >>> 20) % 3);
  Deno.truncateSync(paths[file], SIZE);
  if ((seed >>> 24) % 2 === 0) {
    const fd = openSync(paths[file], "r+");
    writeSync(fd, full[file], cut, SIZE - cut, cut);
    closeSync(fd);
    bump(truncator, "pattern rewrites");
  }
  Atomics.add(flags, 1, 1);
  await sleep(1);
}
Atomics.store(flags, 0, 1);
const timeout = sleep(30_000).then(() => undefined);
const gathered = await Promise.race([Promise.all(reports), timeout]);
workers.forEach((worker) => worker.terminate());

const counts: Record<string, number> = {};
const failures: string[] = [...crashes];
if (gathered === undefined) failures.push("a worker did not stop within 30 s of the stop flag");
for (const report of gathered ?? []) {
  for (const [key, value] of Object.entries(report.counts)) bump(counts, key, value);
  failures.push(...report.mismatches);
}
const mismatches = counts["mismatches"] ?? 0;
const unexpected = counts["unexpected errors"] ?? 0;
const ioErrors = Object.entries(counts).filter(([key]) => key.startsWith("MappedIOError"))
  .reduce((sum, [, value]) => sum + value, 0);
const seconds = Math.round((performance.now() - started) / 100) / 10;
const operations = ["opens", "reads", "readMany", "writes", "closes"]
  .map((key) => `${counts[key] ?? 0} ${key}`).join(", ");
finish({
  name: "webworker_truncation_storm",
  ok: failures.length === 0 && mismatches === 0 && unexpected === 0 && (counts.reads ?? 0) > 0,
  seconds,
  load: `${WORKERS} Web Workers on ${FILES} files of ${SIZE / 1024} KiB: ${operations}`,
  faults: `${truncator.truncations ?? 0} truncations (random sizes, half page-aligned) and ` +
    `re-extensions, ${truncator["pattern rewrites"] ?? 0} pattern rewrites`,
  checked: `${mismatches} mismatches against the model, ${crashes.length} worker crashes, ` +
    `${unexpected} untyped/unexpected errors; ${ioErrors} MappedIOErrors`,
  detail: failures.length > 0
    ? failures.slice(0, 5).join("; ")
    : `outcomes: ${formatCounts(counts)}`,
});
