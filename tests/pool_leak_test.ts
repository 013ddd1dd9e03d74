// MapPool's shared memory cannot outlive the processes that use it: the host is killed with
// SIGKILL at random moments while its workers start and restart, or calls Deno.exit() while a
// worker starts; afterwards no worker, no /dev/shm file and no memory file of that host is left.
import assert from "node:assert/strict";
import { MapPool } from "../mod.ts";
import { scratch, writePattern } from "./util.ts";

const MODULE = new URL("../mod.ts", import.meta.url).href;

/** A host that restarts its workers for ever: SIGKILL to every worker, then a read on each. */
const RESTARTING_HOST = `
import { MapPool } from ${JSON.stringify(MODULE)};
const pool = new MapPool({ workers: 2, restart: { maxFailedStarts: 1000, backoffMs: 1, backoffMaxMs: 1 } });
const files = [await pool.open(Deno.args[0]), await pool.open(Deno.args[0])];
const target = new Uint8Array(16);
console.log("ready");
// Until the test kills this process.
while (true) {
  for (const pid of pool.pids) {
    try { Deno.kill(pid, "SIGKILL"); } catch { /* gone */ }
  }
  for (const file of files) await file.read(target, 0).catch(() => {});
}
`;

/** A host that leaves with Deno.exit() while its two workers start. */
const EXITING_HOST = `
import { MapPool } from ${JSON.stringify(MODULE)};
const pool = new MapPool({ workers: 2 });
pool.open(Deno.args[0]).catch(() => {});
pool.open(Deno.args[0]).catch(() => {});
setTimeout(() => Deno.exit(0), Number(Deno.args[1]));
`;

/** /dev/shm entries that name the process `pid` as guardmap names them. */
function shmFilesOf(pid: number): string[] {
  return [...Deno.readDirSync("/dev/shm")].map((entry) => entry.name)
    .filter((name) => name.startsWith(`guardmap-${pid}-`));
}

/**
 * The processes that run guardmap's worker entry for host `hostPid`, and the pool memory files
 * (memfds) that the host, its children or those workers still hold. Only they can hold one: the
 * file has no name, so once none of them is left the kernel has freed it. (Other pools on the
 * machine, a benchmark say, are not counted.)
 */
function leftovers(hostPid: number): { workers: number[]; memoryFiles: string[] } {
  const workers: number[] = [];
  const memoryFiles: string[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const command = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const worker = command.some((part) => part.endsWith("workers/worker.ts")) &&
        command.includes(`${hostPid}`);
      if (worker) workers.push(Number(entry.name));
      if (!worker && parent !== hostPid && Number(entry.name) !== hostPid) continue;
      for (const fd of Deno.readDirSync(`/proc/${entry.name}/fd`)) {
        const target = Deno.readLinkSync(`/proc/${entry.name}/fd/${fd.name}`);
        if (target.includes("memfd:guardmap-channel")) memoryFiles.push(`${entry.name}: ${target}`);
      }
    } catch {
      // Gone meanwhile.
    }
  }
  return { workers, memoryFiles };
}

/** Waits (bounded) until host `pid` left no worker behind; then checks every kind of leftover. */
async function assertNothingLeft(hostPid: number, what: string): Promise<void> {
  // A worker still starting up when its host died notices at its first look at its parent;
  // on a loaded machine Deno's own start-up can take seconds.
  const deadline = performance.now() + 15_000;
  while (leftovers(hostPid).workers.length > 0 && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const left = leftovers(hostPid);
  for (const pid of left.workers) {
    try {
      console.error(`worker ${pid} of ${hostPid}: ${Deno.readTextFileSync(`/proc/${pid}/stat`)}`);
    } catch {
      // Gone just now.
    }
  }
  assert.deepEqual(left.workers, [], `${what}: workers of ${hostPid} still running`);
  assert.deepEqual(shmFilesOf(hostPid), [], `${what}: /dev/shm files of ${hostPid} left`);
  assert.deepEqual(left.memoryFiles, [], `${what}: memory files still open`);
}

/** A fixed-seed xorshift32 in [0, 1). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 2 ** 32;
  };
}

function spawnHost(script: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "-A", script, ...args],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

Deno.test("pool leaks: the leftover check sees a live pool's worker and memory file", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4096);
  const pool = new MapPool({ workers: 1 });
  await pool.open(path);
  const live = leftovers(Deno.pid);
  assert.equal(live.workers.length, 1);
  assert.ok(live.memoryFiles.length >= 1, "the host's memory file is not seen");
  await pool.close();
  await assertNothingLeft(Deno.pid, "after close()");
});

Deno.test("pool leaks: a host killed with SIGKILL at random moments of starts and restarts", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4096);
  const script = tmp.path("host.ts");
  Deno.writeTextFileSync(script, RESTARTING_HOST);
  const next = random(0x5eed_0004);
  const runs = 16;
  for (let run = 0; run < runs; run++) {
    // From the host's own start-up through its first worker starts into the restart loop.
    const delayMs = Math.floor(next() * 1500);
    const host = spawnHost(script, [path]);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    host.kill("SIGKILL");
    await host.status;
    await assertNothingLeft(host.pid, `run ${run}, SIGKILL after ${delayMs} ms`);
  }
});

Deno.test("pool leaks: a host that calls Deno.exit() while its workers start", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4096);
  const script = tmp.path("host.ts");
  Deno.writeTextFileSync(script, EXITING_HOST);
  for (const delayMs of [0, 5, 20, 50, 100, 200]) {
    const host = spawnHost(script, [path, `${delayMs}`]);
    const status = await host.status;
    assert.equal(status.code, 0);
    await assertNothingLeft(host.pid, `Deno.exit() ${delayMs} ms into the start`);
  }
});
