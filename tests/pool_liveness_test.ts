// MapPool and the host's event loop, the pool's circuit breaker, resizable buffers and kernels
// outside guardmap's directory, with real signals (SIGSTOP, SIGKILL) to real worker processes.
import assert from "node:assert/strict";
import { GuardmapError, MapPool, type PoolFile, WorkerCrashedError } from "../mod.ts";
import { assertBytes, poolTimeouts, runScript, scaledMs, scratch, writePattern } from "./util.ts";

const MiB = 2 ** 20;

/** Records the gaps between the ticks of a `periodMs` interval until stopped. */
function tickGaps(periodMs: number): { stop(): number[] } {
  const gaps: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    gaps.push(now - last);
    last = now;
  }, periodMs);
  return {
    stop() {
      clearInterval(timer);
      gaps.push(performance.now() - last);
      return gaps;
    },
  };
}

/** Pids of the worker processes this process started (running guardmap's worker entry). */
function ownWorkerPids(): number[] {
  const found: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (parent !== Deno.pid) continue;
      if (Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).includes("workers/worker.ts")) {
        found.push(Number(entry.name));
      }
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

for (const operation of ["read", "flush"] as const) {
  Deno.test(`pool liveness: a SIGSTOPped worker does not stop the host's timers (${operation})`, async () => {
    using tmp = scratch();
    const path = tmp.path("data.bin");
    const bytes = writePattern(path, 64 * 1024);
    const timeoutMs = scaledMs(1500);
    await using pool = new MapPool({ ...poolTimeouts(), workers: 1, callTimeoutMs: timeoutMs });
    const file = await pool.open(path, { mode: "r+" });
    const small = new Uint8Array(4096);
    await file.read(small, 0);
    const [stopped] = pool.pids;
    Deno.kill(stopped, "SIGSTOP");
    const ticks = tickGaps(20);
    const started = performance.now();
    try {
      const call = operation === "read" ? file.read(small, 4096) : file.flush();
      await assert.rejects(call, (error: unknown) => {
        assert.ok(error instanceof WorkerCrashedError, `expected WorkerCrashedError: ${error}`);
        assert.equal(error.reason, "timed_out");
        return true;
      });
    } finally {
      // The pool killed it on the timeout; a SIGCONT is harmless then.
      try {
        Deno.kill(stopped, "SIGCONT");
      } catch {
        // Already reaped.
      }
    }
    const waited = performance.now() - started;
    const gaps = ticks.stop();
    assert.ok(waited >= timeoutMs - 5, `the call gave up after ${waited} ms`);
    // Without a wait off the event loop there is one gap as long as the whole time limit. With
    // it, the 20 ms timer keeps firing; 300 ms leaves room for a loaded 2-core machine.
    const longest = Math.max(...gaps);
    assert.ok(longest < scaledMs(300), `the event loop stood still for ${longest.toFixed(0)} ms`);
    assert.ok(gaps.length >= timeoutMs / 20 / 3, `only ${gaps.length} ticks in ${waited} ms`);
    // The pool recovers: a new worker serves the same handle.
    await file.read(small, 4096);
    assertBytes(small, bytes.subarray(4096, 8192));
    assert.notEqual(pool.pids[0], stopped);
  });
}

// 4 KiB reads answered within their budget, and empty reads, which never wait for the worker:
// either way the promises settle in microtasks, and only the pool's own yield lets a timer in.
for (const length of [4096, 0]) {
  Deno.test(`pool liveness: a loop of awaited ${length}-byte reads lets a timer fire`, async () => {
    using tmp = scratch();
    const path = tmp.path("data.bin");
    writePattern(path, MiB);
    await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
    const file = await pool.open(path);
    const target = new Uint8Array(length);
    await file.read(new Uint8Array(4096), 0);
    let fired = false;
    setTimeout(() => {
      fired = true;
    }, 50);
    const started = performance.now();
    let reads = 0;
    // Bounded: 5 s at most; the timer is due after 50 ms.
    while (!fired && performance.now() - started < scaledMs(5000)) {
      await file.read(target, (reads++ % 255) * 4096);
    }
    const elapsed = performance.now() - started;
    assert.ok(
      fired,
      `a 50 ms timer did not fire during ${reads} reads in ${elapsed.toFixed(0)} ms`,
    );
    assert.ok(elapsed < scaledMs(1000), `the 50 ms timer fired after ${elapsed.toFixed(0)} ms`);
  });
}

Deno.test("pool liveness: reads and writes with resizable and growable buffers, large and small", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const bytes = writePattern(path, 4 * MiB);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
  const file = await pool.open(path, { mode: "r+" });
  for (const length of [100, 2 * MiB + 3]) {
    const resizable = new ArrayBuffer(length, { maxByteLength: 8 * MiB });
    const target = new Uint8Array(resizable);
    assert.equal(await file.read(target, 5), length);
    assertBytes(target, bytes.subarray(5, 5 + length), `resizable read of ${length} bytes`);
    const growable = new SharedArrayBuffer(length, { maxByteLength: 8 * MiB });
    const shared = new Uint8Array(growable);
    await file.read(shared, 7);
    assertBytes(shared, bytes.subarray(7, 7 + length), `growable read of ${length} bytes`);
    // Write the bytes back one further: the file then holds them shifted by two.
    await file.write(shared, 9);
    const check = new Uint8Array(length);
    await file.read(check, 9);
    assertBytes(check, bytes.subarray(7, 7 + length), `write from a growable buffer`);
    await file.write(bytes.subarray(0, 4 * MiB), 0);
  }
  // readMany of 2 MiB into a resizable buffer, with positions in a resizable buffer too.
  const count = 512;
  const positions = new Float64Array(new ArrayBuffer(count * 8, { maxByteLength: 1 * MiB }));
  for (let index = 0; index < count; index++) positions[index] = (index * 7_919) % (3 * MiB);
  const many = new Uint8Array(new ArrayBuffer(count * 4096, { maxByteLength: 4 * MiB }));
  assert.equal(await file.readMany(many, positions, 4096), count * 4096);
  for (let index = 0; index < count; index++) {
    const at = positions[index];
    assertBytes(many.subarray(index * 4096, (index + 1) * 4096), bytes.subarray(at, at + 4096));
  }
});

/** Kills every worker process of this process with SIGKILL, started or still starting. */
function killWorkers(): number {
  let killed = 0;
  for (const pid of ownWorkerPids()) {
    try {
      Deno.kill(pid, "SIGKILL");
      killed++;
    } catch {
      // Gone meanwhile.
    }
  }
  return killed;
}

async function readUntil(
  file: PoolFile,
  target: Uint8Array,
  done: (error: unknown) => boolean,
  deadlineMs: number,
): Promise<unknown> {
  // Bounded by the deadline.
  while (performance.now() < deadlineMs) {
    try {
      await file.read(target, 0);
      if (done(undefined)) return undefined;
    } catch (error) {
      if (done(error)) return error;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error("deadline passed");
}

Deno.test("pool breaker: a pool that gave up under a kill storm works again once it stops", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const bytes = writePattern(path, 64 * 1024);
  const backoffMaxMs = 400;
  await using pool = new MapPool({
    workers: 1,
    restart: { maxFailedStarts: 3, backoffMs: 10, backoffMaxMs },
  });
  const file = await pool.open(path);
  const target = new Uint8Array(4096);
  let kills = 0;
  const killer = setInterval(() => {
    kills += killWorkers();
  }, 50);
  let failure: unknown;
  try {
    failure = await readUntil(
      file,
      target,
      (error) => error instanceof GuardmapError && error.code === "POOL_FAILED",
      performance.now() + scaledMs(30_000),
    );
  } finally {
    clearInterval(killer);
  }
  assert.ok(kills >= 3, `only ${kills} kills`);
  assert.match((failure as Error).message, /tries one start again/);
  // Right after giving up, the breaker is open: calls fail at once, without starting anything.
  const before = performance.now();
  await assert.rejects(file.read(target, 0), (error: unknown) => {
    return error instanceof GuardmapError && error.code === "POOL_FAILED";
  });
  assert.ok(performance.now() - before < scaledMs(50), "an open breaker answered slowly");
  // The storm is over: within the longest back-off plus a start, a call closes the breaker.
  const recovered = performance.now();
  await readUntil(file, target, (error) => error === undefined, recovered + scaledMs(20_000));
  assertBytes(target, bytes.subarray(0, 4096));
  assert.ok(performance.now() - recovered >= backoffMaxMs / 2, "the breaker closed early");
  for (let index = 0; index < 20; index++) {
    await file.read(target, index * 1024);
    assertBytes(target, bytes.subarray(index * 1024, index * 1024 + 4096));
  }
  assert.equal(pool.pids.length, 1);
});

Deno.test("pool kernels: a kernel module outside guardmap's directory, with an import, runs", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4096);
  // A JSR user's kernels: in their own directory, importing a neighbour; no permissions.read.
  const kernels = Deno.makeTempDirSync({ prefix: "guardmap-kernels-" });
  try {
    Deno.writeTextFileSync(`${kernels}/scale.ts`, `export const factor = 3;\n`);
    Deno.writeTextFileSync(
      `${kernels}/kernel.ts`,
      `import { factor } from "./scale.ts";
       export function scaled(view: Uint8Array, index: number): number {
         return view[index] * factor;
       }
       export async function access(): Promise<Record<string, string>> {
         const ask = async (path: string) => (await Deno.permissions.query({ name: "read", path })).state;
         return {
           kernel: await ask(${JSON.stringify(`${kernels}/kernel.ts`)}),
           directory: await ask(${JSON.stringify(kernels)}),
           other: await ask(${JSON.stringify(`${kernels}/other.ts`)}),
           etc: await ask("/etc/passwd"),
         };
       }`,
    );
    await using pool = new MapPool({ ...poolTimeouts(), workers: 2 });
    const file = await pool.open(path);
    const other = await pool.open(path);
    assert.equal(await file.run(`${kernels}/kernel.ts`, "scaled", 2), ((2 * 7 + 3) & 0xff) * 3);
    // The other worker was started before the grants: it gets them too.
    assert.equal(await other.run(`${kernels}/kernel.ts`, "scaled", 3), ((3 * 7 + 3) & 0xff) * 3);
    // Only the two module files were added: the workers stay narrow.
    assert.deepEqual(await file.run(`${kernels}/kernel.ts`, "access"), {
      kernel: "granted",
      directory: "prompt",
      other: "prompt",
      etc: "prompt",
    });
    assert.equal(pool.restarts, 0);
  } finally {
    Deno.removeSync(kernels, { recursive: true });
  }
});

Deno.test("pool kernels: a kernel the host itself may not read is refused, naming the flag", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4096);
  const kernels = Deno.makeTempDirSync({ prefix: "guardmap-kernels-" });
  try {
    Deno.writeTextFileSync(`${kernels}/kernel.ts`, "export const k = () => 1;\n");
    const root = new URL("..", import.meta.url).pathname;
    const result = await runScript(
      `
      import { MapPool } from "GUARDMAP_MOD";
      await using pool = new MapPool({ ...${JSON.stringify(poolTimeouts())}, workers: 1 });
      const file = await pool.open(${JSON.stringify(path)});
      try { console.log(await file.run(${JSON.stringify(`${kernels}/kernel.ts`)}, "k")); }
      catch (error) { console.log(error.code, error.message); }
    `,
      ["--allow-ffi", "--allow-run", "--allow-env", `--allow-read=${root},${tmp.dir},/tmp`],
    );
    // A host that may read the kernel (here through its grant for all of /tmp) passes that file
    // on to its worker; a host that may not gets Deno's refusal, which names --allow-read.
    assert.match(result.stdout, /^1\n$/, result.stderr);
    const denied = await runScript(
      `
      import { MapPool } from "GUARDMAP_MOD";
      await using pool = new MapPool({ ...${JSON.stringify(poolTimeouts())}, workers: 1 });
      const file = await pool.open(${JSON.stringify(path)});
      try { console.log(await file.run(${JSON.stringify(`${kernels}/kernel.ts`)}, "k")); }
      catch (error) { console.log(error.code, error.message); }
    `,
      ["--allow-ffi", "--allow-run", "--allow-env", `--allow-read=${root},${tmp.dir}`],
    );
    assert.match(
      denied.stdout,
      /^KERNEL_NOT_FOUND .*Requires read access to .*kernel\.ts/,
      denied.stderr,
    );
  } finally {
    Deno.removeSync(kernels, { recursive: true });
  }
});

Deno.test("pool arguments: wrong option and range types are errors that name the argument", async () => {
  assert.throws(() => new MapPool(5 as never), /options must be an object/);
  assert.throws(() => new MapPool({ restart: "no" as never }), /restart must be an object/);
  assert.throws(
    () => new MapPool({ restart: { maxFailedStarts: NaN } }),
    (error: unknown) => error instanceof RangeError && /maxFailedStarts/.test(error.message),
  );
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4096);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
  const file = await pool.open(path);
  await assert.rejects(
    () => file.flush({ position: "0" as never }),
    (error: unknown) =>
      error instanceof TypeError && /flush: range\.position must be a number/.test(error.message),
  );
  // The same checks, and words, as MappedFile's (ffi/arguments.ts).
  await assert.rejects(() => file.prefault("x" as never), /prefault: options must be an object/);
  await assert.rejects(
    () => file.prefault({ write: "yes" as never }),
    /prefault: options\.write must be true or false/,
  );
  await assert.rejects(() => file.advise(3 as never), /advise: advice must be one of/);
  await file.flush({ position: 0, length: 4096 });
});

/** The live (not zombie) worker processes of this host, from /proc. */
function liveWorkers(): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const command = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
      const worker = command.some((part) => part.endsWith("workers/worker.ts")) &&
        command.includes(`${Deno.pid}`);
      if (worker && state !== "Z") pids.push(Number(entry.name));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids.sort();
}

/** Waits (bounded) until `condition` holds; returns whether it did. */
async function eventually(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

Deno.test("pool kernels: a run that restarted its worker for a grant reports and kills that worker", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const bytes = writePattern(path, 4096);
  // Outside guardmap's directory: the first run of each kernel restarts the worker with a grant.
  const kernels = Deno.makeTempDirSync({ prefix: "guardmap-kernels-" });
  try {
    Deno.writeTextFileSync(`${kernels}/spin.ts`, "export function spin() { for (;;) {} }\n");
    Deno.writeTextFileSync(
      `${kernels}/boom.ts`,
      `export function boom() { console.error("boom kernel ran"); Deno.exit(7); }\n`,
    );
    await using pool = new MapPool({
      ...poolTimeouts(),
      workers: 1,
      runTimeoutMs: scaledMs(500),
      callTimeoutMs: scaledMs(3000),
    });
    const file = await pool.open(path);
    const before = pool.pids;
    const spun = await file.run(`${kernels}/spin.ts`, "spin").catch((error) => error);
    assert.ok(spun instanceof WorkerCrashedError, String(spun));
    assert.equal(spun.reason, "timed_out");
    // The worker that spun (started for the grant) was killed, not the one it replaced.
    assert.equal(spun.signal, "SIGKILL");
    const target = new Uint8Array(64);
    await file.read(target, 100);
    assertBytes(target, bytes.subarray(100, 164));
    assert.equal(pool.pids.length, 1);
    assert.ok(!before.includes(pool.pids[0]));
    assert.ok(
      await eventually(() => liveWorkers().join() === pool.pids.join(), scaledMs(5000)),
      `worker processes ${liveWorkers()}, pool workers ${pool.pids}: one is left spinning`,
    );
    // A kernel that dies on its first run: its own exit code and stderr, not the old worker's.
    const died = await file.run(`${kernels}/boom.ts`, "boom").catch((error) => error);
    assert.ok(died instanceof WorkerCrashedError, String(died));
    assert.equal(died.reason, "crashed");
    assert.equal(died.exitCode, 7);
    assert.equal(died.signal, null);
    assert.match(died.stderr, /boom kernel ran/);
    await file.read(target, 200);
    assertBytes(target, bytes.subarray(200, 264));
  } finally {
    Deno.removeSync(kernels, { recursive: true });
  }
});

Deno.test("pool kernels: what a kernel's top-level code is refused or throws grants nothing", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4096);
  const kernels = Deno.makeTempDirSync({ prefix: "guardmap-kernels-" });
  try {
    // Refused at evaluation, not while loading: the old grant-on-refusal gave the worker "/".
    Deno.writeTextFileSync(
      `${kernels}/list_root.ts`,
      `export const names = [...Deno.readDirSync("/")].map((entry) => entry.name);
       export function k(): number { return names.length; }`,
    );
    // A message that merely looks like Deno's refusal.
    Deno.writeTextFileSync(
      `${kernels}/fake.ts`,
      `throw new Error('Requires read access to "/root", run again with the --allow-read flag');
       export function k(): number { return 1; }`,
    );
    Deno.writeTextFileSync(
      `${kernels}/probe.ts`,
      `export async function access(): Promise<Record<string, string>> {
         const ask = async (path: string) => (await Deno.permissions.query({ name: "read", path })).state;
         return { root: await ask("/"), home: await ask("/root"), etc: await ask("/etc/passwd"),
                  kernels: await ask(${JSON.stringify(kernels)}) };
       }`,
    );
    const narrow = { root: "prompt", home: "prompt", etc: "prompt", kernels: "prompt" };
    // The host may read everything (deno test --allow-all): only the worker's grants limit it.
    await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
    const file = await pool.open(path);
    for (const kernel of ["list_root.ts", "fake.ts", "list_root.ts", "fake.ts"]) {
      const failed = await file.run(`${kernels}/${kernel}`, "k").catch((error) => error);
      assert.ok(failed instanceof GuardmapError, `${kernel}: ${failed}`);
      assert.equal(failed.code, "KERNEL_NOT_FOUND", `${kernel}: ${failed.message}`);
    }
    // A directory is never a module: running it grants nothing either.
    const directory = await file.run(kernels, "k").catch((error) => error);
    assert.ok(directory instanceof GuardmapError, String(directory));
    assert.deepEqual(await file.run(`${kernels}/probe.ts`, "access"), narrow);
  } finally {
    Deno.removeSync(kernels, { recursive: true });
  }
});

Deno.test("pool kernels: a remote kernel with a remote import runs with import access to its host", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4096);
  const modules: Record<string, string> = {
    // A path no other run used: a new URL whose graph is listed (and fetched) afresh.
    [`/k${crypto.randomUUID()}/kernel.ts`]: `import { factor } from "./scale.ts";
      export function scaled(view: Uint8Array, index: number): number { return view[index] * factor; }`,
  };
  const kernelPath = Object.keys(modules)[0];
  modules[kernelPath.replace("kernel.ts", "scale.ts")] = "export const factor = 5;\n";
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => {
      const body = modules[new URL(request.url).pathname];
      return body === undefined
        ? new Response("not found", { status: 404 })
        : new Response(body, { headers: { "content-type": "application/typescript" } });
    },
  );
  // The deno.lock next to guardmap's deno.json, which a worker's Deno would find and write.
  const lock = new URL("../deno.lock", import.meta.url);
  const lockBefore = Deno.readTextFileSync(lock);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
  const file = await pool.open(path);
  const url = `http://127.0.0.1:${server.addr.port}${kernelPath}`;
  assert.equal(await file.run(url, "scaled", 4), ((4 * 7 + 3) & 0xff) * 5);
  assert.equal(Deno.readTextFileSync(lock), lockBefore, "running a kernel wrote into deno.lock");
});
