/**
 * Stress: a MapPool serves concurrent callers that read and write their own regions of two files
 * (checked byte for byte against a model) and read a region nobody writes, while its workers are
 * killed with real SIGKILLs, some of them while starting, and sometimes stopped with SIGSTOP and
 * continued with SIGCONT; the storm ends with every worker process killed every 30 ms for 3 s,
 * also while starting. Before the storm, a probe reads from a worker stopped with SIGSTOP that a
 * timer continues after 1 s. Checks: no wrong byte; every call resolves or rejects with a
 * GuardmapError (a WorkerCrashedError mostly); the host's event loop keeps running (a 20 ms
 * interval timer never waits longer than LAG_LIMIT_MS, whatever a stopped worker does); once the
 * kills stop the pool serves calls again within RECOVERY_MS (a pool that gave up must let a start
 * be tried again); after close() no worker process or /dev/shm file is left. The storm itself
 * lasts `--seconds` (at least 5 makes sense: the burst takes 3) after the probe.
 *
 *   deno run -A tests/stress/kill_storm.ts [--seconds N] [--json]
 *
 * @module
 */
import { join } from "node:path";
import { GuardmapError, MapPool, type PoolFile } from "../../mod.ts";
import {
  bump,
  descendants,
  errorKind,
  finish,
  formatCounts,
  log,
  modelByte,
  parseArgs,
  scratchDir,
  shmEntriesOf,
  sleep,
} from "./_common.ts";

const CALLERS = 8;
const REGION = 128 * 1024;
const STATIC = 2 * 1024 * 1024;
const FILE_SIZE = (CALLERS / 2) * REGION + STATIC;
const CALL_TIMEOUT_MS = 3000;
const LAG_LIMIT_MS = 500;
const RECOVERY_MS = 15_000;
const BURST_MS = 3000;
const BURST_EVERY_MS = 30;

const args = parseArgs(30);
const started = performance.now();
using tmp = scratchDir("kill");
const paths = [join(tmp.dir, "a.bin"), join(tmp.dir, "b.bin")];
const staticByte = (file: number, offset: number) => modelByte(file + 100, 0, offset);
for (const [file, path] of paths.entries()) {
  const bytes = new Uint8Array(FILE_SIZE);
  for (let i = 0; i < FILE_SIZE; i++) bytes[i] = staticByte(file, i);
  Deno.writeFileSync(path, bytes);
}

const counts: Record<string, number> = {};
const failures: string[] = [];
const fail = (message: string) => {
  bump(counts, "failures");
  if (failures.length < 10) failures.push(message);
};

// The host's event loop: a 20 ms interval; the longest gap between two ticks is the freeze.
let lastTick = performance.now();
let maxLagMs = 0;
const ticker = setInterval(() => {
  const now = performance.now();
  maxLagMs = Math.max(maxLagMs, now - lastTick - 20);
  lastTick = now;
}, 20);

const pool = new MapPool({
  workers: 2,
  callTimeoutMs: CALL_TIMEOUT_MS,
  startTimeoutMs: 10_000,
  restart: { backoffMs: 50, backoffMaxMs: 1000 },
});
const files: PoolFile[] = [];
for (const path of paths) files.push(await pool.open(path, { mode: "r+" }));
const hostPids = new Set<number>([Deno.pid]);
log(`pool of 2 workers, ${CALLERS} callers, ${args.seconds} s`);

/** A call must resolve, or reject with a GuardmapError; anything else is a failure. */
async function call<T>(what: string, run: () => Promise<T>): Promise<T | undefined> {
  try {
    const value = await run();
    bump(counts, `${what} ok`);
    return value;
  } catch (error) {
    bump(counts, errorKind(error));
    if (!(error instanceof GuardmapError)) {
      fail(`${what}: not a GuardmapError: ${errorKind(error)}: ${(error as Error)?.message}`);
    } else if (error.name === "MappedIOError") {
      fail(`${what}: MappedIOError with nothing truncated: ${error.message}`);
    }
    return undefined;
  }
}

async function caller(index: number): Promise<void> {
  const file = files[index % 2];
  const fileIndex = index % 2;
  const base = Math.floor(index / 2) * REGION;
  const version = new Int32Array(REGION); // version 0 is the static pattern of the file
  const expected = (i: number) =>
    version[i] === 0 ? staticByte(fileIndex, base + i) : modelByte(index, version[i], base + i);
  let nextVersion = 1;
  let seed = index * 7919 + 1;
  const random = (limit: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % limit;
  };
  // Bounded by the deadline: every iteration awaits one call, which the pool bounds in time.
  while (performance.now() < deadline) {
    const kind = random(10);
    const length = 1 + random(REGION);
    const position = random(REGION - length + 1);
    if (kind < 4) {
      const v = nextVersion++;
      const source = new Uint8Array(length);
      for (let i = 0; i < length; i++) source[i] = modelByte(index, v, base + position + i);
      // A write that failed may have landed in part: repeat it until it succeeds, so the model
      // is exact again before anything reads the region.
      let written = false;
      for (let attempt = 0; attempt < 50 && !written && performance.now() < deadline; attempt++) {
        written = (await call("write", () => file.write(source, base + position))) === length;
      }
      if (written) version.fill(v, position, position + length);
      else return; // the region is unknown now; this caller stops checking
    } else if (kind < 8) {
      const target = new Uint8Array(length);
      if ((await call("read", () => file.read(target, base + position))) !== length) continue;
      bump(counts, "bytes checked", length);
      for (let i = 0; i < length; i++) {
        if (target[i] !== expected(position + i)) {
          fail(
            `caller ${index}: byte ${base + position + i}: ${target[i]}, expected ${
              expected(position + i)
            }`,
          );
          break;
        }
      }
    } else {
      // The region nobody writes; 1 MiB or more takes the pool's asynchronous path.
      const big = random(2) === 0 ? 1024 * 1024 + random(STATIC / 2) : 1 + random(65536);
      const at = (CALLERS / 2) * REGION + random(STATIC - big + 1);
      const target = new Uint8Array(big);
      if ((await call("static read", () => file.read(target, at))) !== big) continue;
      bump(counts, "bytes checked", big);
      for (let i = 0; i < big; i++) {
        if (target[i] !== staticByte(fileIndex, at + i)) {
          fail(
            `caller ${index}: static byte ${at + i}: ${target[i]}, expected ${
              staticByte(fileIndex, at + i)
            }`,
          );
          break;
        }
      }
    }
  }
}

const faults: Record<string, number> = {};
const workerPids = new Set<number>();
async function killer(): Promise<void> {
  let round = 0;
  // First let the callers get going (bounded by the deadline).
  while ((counts["read ok"] ?? 0) < 20 && performance.now() < deadline - BURST_MS - 500) {
    await sleep(20);
  }
  // Bounded by the deadline; each round sleeps.
  while (performance.now() < deadline - BURST_MS - 500) {
    round++;
    const pids = pool.pids;
    pids.forEach((pid) => workerPids.add(pid));
    if (pids.length === 0) {
      await sleep(20);
      continue;
    }
    const pid = pids[round % pids.length];
    try {
      if (round % 6 === 1) {
        Deno.kill(pid, "SIGSTOP");
        bump(faults, "SIGSTOP");
        // A small read on each file while the worker is stopped (one of them is on it): the
        // host must keep running its timers meanwhile.
        for (const file of files) {
          void call("read while stopped", () => file.read(new Uint8Array(16), 0));
        }
        await sleep(800 + (round * 37) % 700);
        Deno.kill(pid, "SIGCONT");
        bump(faults, "SIGCONT");
      } else {
        Deno.kill(pid, "SIGKILL");
        bump(faults, "SIGKILL");
        // Now and then kill again 30 ms later: the new worker is still starting.
        if (round % 4 === 0) {
          await sleep(30);
          for (const next of pool.pids) {
            if (next === pid) continue;
            workerPids.add(next);
            Deno.kill(next, "SIGKILL");
            bump(faults, "SIGKILL while starting");
          }
        }
      }
    } catch {
      bump(faults, "signal to a worker already gone");
    }
    await sleep(100 + (round * 53) % 150);
  }
  await burst();
}

/**
 * The end of the storm: every BURST_EVERY_MS for BURST_MS, SIGKILL to every child process of
 * this one (the pool's workers, including those still starting, which `pool.pids` does not list
 * yet; this process starts no other children).
 */
async function burst(): Promise<void> {
  const end = performance.now() + BURST_MS;
  // Bounded by BURST_MS.
  while (performance.now() < end) {
    for (const pid of descendants()) {
      workerPids.add(pid);
      try {
        Deno.kill(pid, "SIGKILL");
        bump(faults, "SIGKILL in the burst");
      } catch {
        bump(faults, "signal to a worker already gone");
      }
    }
    await sleep(BURST_EVERY_MS);
  }
}

/**
 * Before the storm: stop the worker of files[0] with SIGSTOP, continue it from a 1 s timer, and
 * read 16 bytes from files[0] meanwhile. The timer must fire (so the read succeeds after about
 * 1 s); a host that waits for the worker without yielding freezes until the call times out.
 */
async function freezeProbe(): Promise<void> {
  const pid = pool.pids[0];
  Deno.kill(pid, "SIGSTOP");
  bump(faults, "SIGSTOP");
  const resume = setTimeout(() => {
    Deno.kill(pid, "SIGCONT");
    bump(faults, "SIGCONT");
  }, 1000);
  const started = performance.now();
  await call("read while stopped", () => files[0].read(new Uint8Array(16), 0));
  probeMs = performance.now() - started;
  clearTimeout(resume);
  try {
    Deno.kill(pid, "SIGCONT");
  } catch { /* killed for not answering */ }
}
let probeMs = 0;
await freezeProbe();
// The storm's own time budget starts after the probe.
const deadline = performance.now() + args.seconds * 1000;

await Promise.all([killer(), ...Array.from({ length: CALLERS }, (_, index) => caller(index))]);
const stormLagMs = maxLagMs;

// After the storm: the pool must serve calls again once the kills stop.
const recoveryStart = performance.now();
let recoveredMs: number | undefined;
const probe = new Uint8Array(16);
while (performance.now() - recoveryStart < RECOVERY_MS) {
  try {
    await files[0].read(probe, (CALLERS / 2) * REGION);
    recoveredMs = performance.now() - recoveryStart;
    break;
  } catch (error) {
    bump(counts, `after the storm: ${errorKind(error)}`);
    await sleep(200);
  }
}
if (recoveredMs === undefined) {
  fail(`the pool did not serve a call within ${RECOVERY_MS} ms after the kills stopped`);
}
pool.pids.forEach((pid) => workerPids.add(pid));
clearInterval(ticker);
if (stormLagMs > LAG_LIMIT_MS) {
  fail(`the host's event loop froze for ${Math.round(stormLagMs)} ms (limit ${LAG_LIMIT_MS})`);
}
const restarts = pool.restarts;
await pool.close();
await sleep(200);
const leftChildren = descendants();
const leftShm = shmEntriesOf([...hostPids, ...workerPids]);
if (leftChildren.length > 0) fail(`processes left after close(): ${leftChildren.join(" ")}`);
if (leftShm.length > 0) fail(`/dev/shm files left after close(): ${leftShm.join(" ")}`);
const calls = Object.entries(counts).filter(([key]) => key.endsWith(" ok"))
  .reduce((sum, [, value]) => sum + value, 0);
const rejected = Object.entries(counts).filter(([key]) =>
  /Error/.test(key) && !key.startsWith("after")
)
  .reduce((sum, [, value]) => sum + value, 0);
finish({
  name: "kill_storm",
  ok: failures.length === 0 && calls > 0,
  seconds: Math.round((performance.now() - started) / 100) / 10,
  load: `MapPool of 2 workers, ${CALLERS} concurrent callers: ${calls} calls ok, ${rejected} ` +
    `rejected, ${((counts["bytes checked"] ?? 0) / 2 ** 20).toFixed(0)} MiB read and checked`,
  faults: `${formatCounts(faults)}; ${restarts} restarts`,
  checked:
    `wrong bytes, untyped rejections, event-loop freeze (max ${Math.round(stormLagMs)} ms, ` +
    `limit ${LAG_LIMIT_MS}; a read from a stopped worker took ${
      Math.round(probeMs)
    } ms), recovery after the storm (${
      recoveredMs === undefined ? "none" : `${Math.round(recoveredMs)} ms`
    }), ` +
    `${leftChildren.length} processes and ${leftShm.length} /dev/shm files left`,
  detail: failures.length > 0 ? failures.join("; ") : `outcomes: ${formatCounts(counts)}`,
});
