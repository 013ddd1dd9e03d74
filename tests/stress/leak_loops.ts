/**
 * Stress: leaks. Each phase runs in a fresh process of its own (this script with `--phase`), so
 * that one phase's leak cannot fail the next, and counts this process's descriptors
 * (/proc/self/fd), mappings of the scratch files (/proc/self/maps), descendant processes and
 * the /dev/shm files named after them, before and after:
 *
 * - `open_close`: MappedFile open/read/close cycles (100,000; 10,000 in the short version);
 * - `pool_cycles`: MapPool create/open/read/close cycles (50; short 5);
 * - `dropped`: maps opened and dropped without close (100,000; short 10,000), yielding to the
 *   event loop every 256: none may fail (the 4,096-map cap must not fill with garbage); then as
 *   many in a loop that never yields: those past the cap must fail with an error naming it;
 * - `web_workers`: Web Workers that each open 100 maps and are terminated (45; short 4): their
 *   maps (descriptors and mappings) must be released within RELEASE_MS; then one worker opens
 *   maps up to the cap and is terminated: this thread must be able to open 200 maps again;
 * - `host_killed`: a host process that runs a MapPool is killed with SIGKILL while its worker
 *   restarts, or just after starting one, or calls Deno.exit() during a start (10 runs of each;
 *   short 2): no /dev/shm file and no worker process may be left.
 *
 * `--seconds` below 30 selects the short version; every phase also stops at its share of the
 * time budget. `host_killed` makes this process a child subreaper (prctl), so that a worker
 * whose host died is still seen as a descendant; it never looks at other processes.
 *
 *   deno run -A tests/stress/leak_loops.ts [--seconds N] [--json]
 *
 * @module
 */
import { join } from "node:path";
import { GuardmapError, MappedFile, MapPool } from "../../mod.ts";
import {
  bump,
  descendants,
  descriptorCount,
  errorKind,
  finish,
  formatCounts,
  log,
  mappingsContaining,
  scratchDir,
  shmEntriesOf,
  sleep,
  type StressResult,
} from "./_common.ts";

const RELEASE_MS = 3000;
const REFILL_MAPS = 200;
const REFILL_MS = 10_000;
const PHASES = ["open_close", "pool_cycles", "dropped", "web_workers", "host_killed"] as const;
type Phase = typeof PHASES[number];

/** One phase's outcome, printed by the phase's process as its last line. */
interface PhaseResult {
  phase: Phase;
  ok: boolean;
  load: string;
  leaks: string;
  failures: string[];
}

const phaseIndex = Deno.args.indexOf("--phase");
if (phaseIndex >= 0) {
  const phase = Deno.args[phaseIndex + 1] as Phase;
  const seconds = Number(Deno.args[Deno.args.indexOf("--seconds") + 1]);
  console.log(JSON.stringify(await runPhase(phase, seconds)));
  Deno.exit(0);
}
await main();

async function main(): Promise<never> {
  const seconds = Deno.args.includes("--seconds")
    ? Number(Deno.args[Deno.args.indexOf("--seconds") + 1])
    : 60;
  if (!(seconds > 0)) throw new TypeError("--seconds needs a positive number");
  const started = performance.now();
  const results: PhaseResult[] = [];
  for (const phase of PHASES) {
    log(`phase ${phase}`);
    results.push(await spawnPhase(phase, seconds / PHASES.length));
  }
  const failures = results.flatMap((result) => result.failures.map((f) => `${result.phase}: ${f}`));
  finish(
    {
      name: "leak_loops",
      ok: results.every((result) => result.ok),
      seconds: Math.round((performance.now() - started) / 100) / 10,
      load: results.map((result) => `${result.phase}: ${result.load}`).join("; "),
      faults: "Web Workers terminated holding maps; hosts killed by SIGKILL during a worker " +
        "restart or start, and Deno.exit() during a start",
      checked: results.map((result) => `${result.phase}: ${result.leaks}`).join("; "),
      detail: failures.length === 0 ? "no leak" : failures.slice(0, 8).join("; "),
    } satisfies StressResult,
  );
}

/** Runs one phase in a process of its own; a crash or a hang is that phase's failure. */
async function spawnPhase(phase: Phase, seconds: number): Promise<PhaseResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(import.meta.url).pathname,
      "--phase",
      phase,
      "--seconds",
      `${seconds}`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), (seconds * 3 + 60) * 1000);
  const output = await child.output();
  clearTimeout(timer);
  const line = new TextDecoder().decode(output.stdout).trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(line) as PhaseResult;
  } catch {
    const how = output.signal ? `killed by ${output.signal}` : `exit code ${output.code}`;
    return { phase, ok: false, load: "?", leaks: "?", failures: [`the phase's process ${how}`] };
  }
}

/**
 * Waits until Deno has opened the descriptors it opens by itself shortly after start (a socket
 * pair, about a second in, seen with Deno 2.9.6): at least 2 s into the process, and the count
 * unchanged for 500 ms (bounded: 10 s).
 */
async function settle(): Promise<void> {
  let count = descriptorCount();
  let stableSince = performance.now();
  const giveUp = performance.now() + 10_000;
  while (performance.now() < giveUp) {
    if (performance.now() >= 2000 && performance.now() - stableSince >= 500) return;
    await sleep(100);
    const now = descriptorCount();
    if (now !== count) [count, stableSince] = [now, performance.now()];
  }
}

async function runPhase(phase: Phase, seconds: number): Promise<PhaseResult> {
  await settle();
  const short = seconds * PHASES.length < 30;
  const deadline = performance.now() + seconds * 1000;
  switch (phase) {
    case "open_close":
      return openClose(short ? 10_000 : 100_000, deadline);
    case "pool_cycles":
      return poolCycles(short ? 5 : 50, deadline);
    case "dropped":
      return dropped(short ? 10_000 : 100_000, deadline);
    case "web_workers":
      return webWorkers(short ? 4 : 45, deadline);
    case "host_killed":
      return hostKilled(short ? 2 : 10, deadline);
  }
}

/** Descriptors, scratch mappings, descendants and their /dev/shm files, now. */
function snapshot(dir: string) {
  const children = descendants().filter((pid) => !isZombie(pid));
  return {
    fds: descriptorCount(),
    maps: mappingsContaining(dir),
    children: children.length,
    shm: shmEntriesOf([Deno.pid, ...children]).length,
  };
}

function isZombie(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true; // gone
  }
}

/** Compares two snapshots; returns the failures. */
function leaksBetween(
  before: ReturnType<typeof snapshot>,
  after: ReturnType<typeof snapshot>,
): string[] {
  const failures: string[] = [];
  if (after.fds > before.fds) failures.push(`${after.fds - before.fds} descriptors leaked`);
  if (after.maps > before.maps) failures.push(`${after.maps - before.maps} mappings leaked`);
  if (after.children > before.children) {
    failures.push(`${after.children - before.children} processes leaked`);
  }
  if (after.shm > before.shm) failures.push(`${after.shm - before.shm} /dev/shm files leaked`);
  return failures;
}

function describe(before: ReturnType<typeof snapshot>, after: ReturnType<typeof snapshot>): string {
  return `fds ${before.fds}->${after.fds}, mappings ${before.maps}->${after.maps}, processes ` +
    `${before.children}->${after.children}, /dev/shm ${before.shm}->${after.shm}`;
}

/** " (time budget reached: N planned)" when a phase stopped early, for the load column. */
function budget(done: number, planned: number): string {
  return done < planned ? ` (time budget reached; ${planned} planned)` : "";
}

function testFile(dir: string, name = "data.bin"): string {
  const path = join(dir, name);
  Deno.writeFileSync(path, new Uint8Array(65536).fill(7));
  return path;
}

async function openClose(cycles: number, deadline: number): Promise<PhaseResult> {
  using tmp = scratchDir("leak-open");
  const path = testFile(tmp.dir);
  const target = new Uint8Array(64);
  const result = await repeatAndCount(tmp.dir, cycles, deadline, (cycle) => {
    const map = MappedFile.open(path, { offset: cycle % 4096, length: 4096 });
    map.read(target, cycle % 4000);
    map.close();
  });
  return {
    phase: "open_close",
    ...result,
    load: `${result.load} open/read/close cycles${result.budget}`,
  };
}

async function poolCycles(cycles: number, deadline: number): Promise<PhaseResult> {
  using tmp = scratchDir("leak-pool");
  const path = testFile(tmp.dir);
  const result = await repeatAndCount(tmp.dir, cycles, deadline, () => poolCycle(path));
  return {
    phase: "pool_cycles",
    ...result,
    load: `${result.load} MapPool create/open/read/close cycles (2 workers each)${result.budget}`,
  };
}

/**
 * Runs `cycle` `cycles` times (fewer if the deadline comes first) and compares descriptors,
 * mappings, processes and /dev/shm files. Deno opens descriptors of its own, once, the first
 * time it does some things (a socket pair the first time it waits for a child process, and
 * sometimes another pair later; seen with Deno 2.9.6, 2 descriptors whatever the number of
 * cycles): so one cycle runs before the first count, and a leak is what still grows in the
 * second half of the cycles, counted from a snapshot taken in the middle.
 */
async function repeatAndCount(
  dir: string,
  cycles: number,
  deadline: number,
  cycle: (index: number) => unknown,
): Promise<Omit<PhaseResult, "phase"> & { budget: string }> {
  await new Deno.Command("true").output();
  await cycle(0);
  await sleep(300);
  const before = snapshot(dir);
  let middle = before;
  const failures: string[] = [];
  let done = 0;
  for (; done < cycles && performance.now() < deadline; done++) {
    if (done === Math.floor(cycles / 2)) {
      await sleep(300);
      middle = snapshot(dir);
    }
    try {
      await cycle(done);
    } catch (error) {
      if (failures.length < 3) failures.push(`cycle ${done}: ${errorKind(error)}`);
    }
  }
  await sleep(300);
  const after = snapshot(dir);
  failures.push(...leaksBetween(middle, after));
  return {
    ok: failures.length === 0,
    load: `${done}`,
    budget: budget(done, cycles),
    leaks: `${describe(before, after)} (fds in the middle: ${middle.fds})`,
    failures,
  };
}

async function poolCycle(path: string): Promise<void> {
  const pool = new MapPool({ workers: 2 });
  const file = await pool.open(path);
  await file.read(new Uint8Array(64), 100);
  await file.close();
  await pool.close();
}

async function dropped(count: number, deadline: number): Promise<PhaseResult> {
  using tmp = scratchDir("leak-dropped");
  const path = testFile(tmp.dir);
  const before = snapshot(tmp.dir);
  const failures: string[] = [];
  const loads: string[] = [];
  const results: string[] = [];
  // A program that yields to the event loop now and then (every 256 opens) must be able to go
  // on opening maps it drops: none of its opens may fail. A loop that never yields gives no
  // FinalizationRegistry a chance to run (callbacks run between tasks), so there the check is
  // that the opens past the cap fail with a typed error that names the cap (4096), and the
  // count of failures is reported.
  for (const yieldEvery of [256, 0]) {
    const outcomes: Record<string, number> = {};
    let firstError: unknown;
    let done = 0;
    for (; done < count && performance.now() < deadline; done++) {
      try {
        MappedFile.open(path).read(new Uint8Array(8), 0);
        bump(outcomes, "opened");
      } catch (error) {
        bump(outcomes, errorKind(error));
        firstError ??= error;
      }
      if (yieldEvery > 0 && done % yieldEvery === yieldEvery - 1) await sleep(0);
    }
    const how = yieldEvery > 0 ? `yielding every ${yieldEvery}` : "never yielding";
    const failed = done - (outcomes.opened ?? 0);
    results.push(`${how}: ${failed} of ${done} opens failed`);
    if (failed > 0 && yieldEvery > 0) {
      failures.push(`${how}: ${failed} of ${done} opens failed (${formatCounts(outcomes)})`);
    } else if (failed > 0 && !namesTheCap(firstError, path)) {
      failures.push(
        `${how}: an open past the cap failed with ${errorKind(firstError)}: ` +
          `${(firstError as Error)?.message} (expected a GuardmapError naming the 4096-map cap)`,
      );
    }
    loads.push(`${done} maps opened and dropped without close, ${how}${budget(done, count)}`);
    await sleep(100);
  }
  const after = snapshot(tmp.dir);
  return {
    phase: "dropped",
    ok: failures.length === 0,
    load: loads.join(", then "),
    leaks: `${results.join("; ")}; held at the end (not a failure): ${describe(before, after)}`,
    failures,
  };
}

/** Whether `error` is a GuardmapError whose message (less the path) names the 4096-map cap. */
function namesTheCap(error: unknown, path: string): boolean {
  return error instanceof GuardmapError && /4,?096/.test(error.message.replaceAll(path, ""));
}

async function webWorkers(count: number, deadline: number): Promise<PhaseResult> {
  using tmp = scratchDir("leak-workers");
  const path = testFile(tmp.dir);
  // Deno keeps an eventfd and an epoll descriptor after the first Web Worker ends (2.9.6, once
  // per process): let that happen before the first count.
  await runLeakWorker(path, 0);
  const before = snapshot(tmp.dir);
  const failures: string[] = [];
  let opened = 0;
  let done = 0;
  for (; done < count && performance.now() < deadline; done++) {
    const answer = await runLeakWorker(path, 100);
    opened += answer.opened;
    if (answer.failed > 0 && failures.length < 3) {
      failures.push(`worker ${done}: ${answer.failed} of 100 opens failed: ${answer.firstError}`);
    }
  }
  // The terminated isolates' maps must go away; wait for it (bounded), yielding.
  const waitStart = performance.now();
  let after = snapshot(tmp.dir);
  while (after.maps > before.maps && performance.now() - waitStart < RELEASE_MS) {
    await sleep(100);
    after = snapshot(tmp.dir);
  }
  failures.push(...leaksBetween(before, after).map((f) => `${f} ${RELEASE_MS} ms after terminate`));
  const refill = await refillAfterFullWorker(path);
  if (refill.failure !== undefined) failures.push(refill.failure);
  return {
    phase: "web_workers",
    ok: failures.length === 0,
    load: `${done} Web Workers opened ${opened} maps and were terminated${budget(done, count)}; ` +
      `then one opened ${refill.workerOpened} (up to the cap) and was terminated`,
    leaks: `${describe(before, after)}; after the full worker, ${refill.opened} of ` +
      `${REFILL_MAPS} opens succeeded`,
    failures,
  };
}

/**
 * The symptom itself: a Web Worker opens maps until the 4096-map cap refuses one and is
 * terminated; then this thread must be able to open REFILL_MAPS maps within REFILL_MS (retrying
 * while the worker's thread ends).
 */
async function refillAfterFullWorker(path: string) {
  const answer = await runLeakWorker(path, 4200);
  const maps: MappedFile[] = [];
  let lastError: unknown;
  const end = performance.now() + REFILL_MS;
  while (maps.length < REFILL_MAPS && performance.now() < end) {
    try {
      maps.push(MappedFile.open(path));
    } catch (error) {
      lastError = error;
      await sleep(10);
    }
  }
  const opened = maps.length;
  maps.forEach((map) => map.close());
  const failure = opened < REFILL_MAPS
    ? `after a worker that held the cap ended, only ${opened} of ${REFILL_MAPS} opens ` +
      `succeeded within ${REFILL_MS} ms (${errorKind(lastError)})`
    : undefined;
  return { workerOpened: answer.opened, opened, failure };
}

/** Runs a Web Worker that opens `count` maps of `path` and keeps them, then terminates it. */
async function runLeakWorker(path: string, count: number) {
  const worker = new Worker(new URL("./_leak_worker.ts", import.meta.url), { type: "module" });
  const answer = await new Promise<{ opened: number; failed: number; firstError: string }>(
    (resolve) => {
      worker.onmessage = (event) => resolve(event.data);
      worker.onerror = (event) => {
        event.preventDefault();
        resolve({ opened: 0, failed: count, firstError: event.message });
      };
      worker.postMessage({ path, count });
    },
  );
  worker.terminate();
  return answer;
}

/** Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER). */
function becomeSubreaper(): void {
  const libc = Deno.dlopen("libc.so.6", {
    prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  });
  if (libc.symbols.prctl(36, 1n, 0n, 0n, 0n) !== 0) throw new Error("prctl(SUBREAPER) failed");
}

async function hostKilled(runs: number, deadline: number): Promise<PhaseResult> {
  becomeSubreaper();
  using tmp = scratchDir("leak-host");
  const path = testFile(tmp.dir);
  const failures: string[] = [];
  const left: Record<string, number> = {};
  let done = 0;
  for (; done < runs && performance.now() < deadline; done++) {
    for (const variant of ["restart", "start", "exit"] as const) {
      const leaked = await killHost(path, variant, (done * 37) % 150);
      if (leaked.shm > 0) bump(left, `${variant}: /dev/shm files`, leaked.shm);
      if (leaked.processes > 0) bump(left, `${variant}: processes`, leaked.processes);
    }
  }
  if (Object.keys(left).length > 0) failures.push(`left behind: ${formatCounts(left)}`);
  return {
    phase: "host_killed",
    ok: failures.length === 0,
    load: `${done} rounds of 3 hosts (SIGKILL during a restart, SIGKILL just after a start, ` +
      `Deno.exit() during a start)${budget(done, runs)}`,
    leaks: `left behind: ${formatCounts(left)}`,
    failures,
  };
}

/** Runs one host and ends it as `variant` says; counts what it left behind (and removes it). */
async function killHost(
  path: string,
  variant: "restart" | "start" | "exit",
  delayMs: number,
): Promise<{ shm: number; processes: number }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./_leak_host.ts", import.meta.url).pathname,
      path,
      variant,
      `${delayMs}`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const host = child.pid;
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const watchdog = setTimeout(() => child.kill("SIGKILL"), 20_000);
  if (variant !== "exit") {
    const first = (await lines.read()).value ?? "";
    if (variant === "restart" && first.startsWith("ready")) {
      for (const pid of first.trim().split(" ").slice(1)) Deno.kill(Number(pid), "SIGKILL");
    }
    await sleep(delayMs % (variant === "restart" ? 60 : 150));
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }
  await child.status;
  clearTimeout(watchdog);
  lines.cancel().catch(() => {});
  // The workers die with their host (PDEATHSIG); give them a moment.
  let processes = descendants().filter((pid) => !isZombie(pid));
  for (let i = 0; i < 20 && processes.length > 0; i++) {
    await sleep(50);
    processes = descendants().filter((pid) => !isZombie(pid));
  }
  for (const pid of processes) Deno.kill(pid, "SIGKILL");
  const shm = shmEntriesOf([host]);
  for (const entry of shm) Deno.removeSync(entry); // counted; do not leave it on the machine
  return { shm: shm.length, processes: processes.length };
}
