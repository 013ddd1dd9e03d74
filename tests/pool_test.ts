// MapPool: crash isolation with real signals and faults, restarts, data integrity, cleanup.
import assert from "node:assert/strict";
import { GuardmapError, MappedIOError, MapPool, WorkerCrashedError } from "../mod.ts";
import {
  assertBytes,
  openDescriptors,
  pageSize,
  pattern,
  poolTimeouts,
  prefaultTest,
  runScript,
  scaledMs,
  scratch,
  testUnlessQemu,
  writePattern,
} from "./util.ts";

const KERNELS = new URL("./kernels/kernels.ts", import.meta.url);
const MiB = 2 ** 20;
const PAGE = pageSize();

function isCrash(expected: Partial<WorkerCrashedError>) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof WorkerCrashedError, `expected WorkerCrashedError, got ${error}`);
    for (const [key, value] of Object.entries(expected)) {
      assert.equal(error[key as keyof WorkerCrashedError], value, `${key}: ${error.message}`);
    }
    return true;
  };
}

/**
 * Processes whose command line runs guardmap's worker entry for this process (pid and
 * arguments); other pools on the machine, other test runs say, do not count.
 */
function workerProcesses(): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const command = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      const args = command.split("\0").filter((part) => part !== "");
      if (command.includes("workers/worker.ts") && args.at(-1) === `${Deno.pid}`) {
        found.push(`${entry.name}: ${command.split("\0").slice(-3).join(" ")}`);
      }
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

function channelFiles(): string[] {
  return [...Deno.readDirSync("/dev/shm")].map((entry) => entry.name)
    .filter((name) => name.startsWith(`guardmap-${Deno.pid}-`));
}

Deno.test("pool: read, write, flush, prefault, advise and run through a worker", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const bytes = writePattern(path, 3 * MiB);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 2 });
  const file = await pool.open(path, {
    mode: "r+",
    writes: "map",
    offset: 12_345,
    length: 2 * MiB,
  });
  assert.equal(file.byteLength, 2 * MiB);
  assert.equal(file.offset, 12_345);

  const target = new Uint8Array(100_000);
  assert.equal(await file.read(target, 777), 100_000);
  assertBytes(target, bytes.subarray(12_345 + 777, 12_345 + 777 + 100_000));
  // A transfer larger than the staging area and the 1 MiB async threshold, at an odd place.
  const large = new Uint8Array(2 * MiB - 1);
  await file.read(large, 1);
  assertBytes(large, bytes.subarray(12_346, 12_345 + 2 * MiB));

  const source = new Uint8Array(5 * PAGE).fill(0x5a);
  await file.write(source, 4_095);
  await file.flush();
  const check = Deno.readFileSync(path);
  assertBytes(check.subarray(12_345 + 4_095, 12_345 + 4_095 + source.length), source);
  await file.prefault();
  await file.advise("sequential");
  assert.equal(await file.run(KERNELS, "sum", 4_095, 3), 3 * 0x5a);
  const slice = await file.run<Uint8Array>(KERNELS, "slice", 0, 4);
  assert.deepEqual(slice, bytes.subarray(12_345, 12_349));
  await assert.rejects(() => file.read(new Uint8Array(10), 2 * MiB - 5), RangeError);
  await file.close();
  await assert.rejects(() => file.read(new Uint8Array(1)), GuardmapError);
});

Deno.test("pool: an I/O fault in a worker's guarded copy is a MappedIOError, the worker lives", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 16 * PAGE);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
  const file = await pool.open(path);
  const kept = 3 * PAGE;
  Deno.truncateSync(path, kept);
  await assert.rejects(() => file.read(new Uint8Array(16 * PAGE), 0), (error: unknown) => {
    assert.ok(error instanceof MappedIOError, String(error));
    assert.equal(error.position, kept);
    assert.equal(error.bytesTransferred, kept);
    assert.equal(error.reason, "truncated");
    return true;
  });
  assert.equal(pool.restarts, 0);
  const healthy = new Uint8Array(100);
  await file.read(healthy, 0);
  assertBytes(healthy, pattern(0, 100));
});

prefaultTest(
  "pool: prefault over a truncated end is a MappedIOError, the worker lives",
  async () => {
    using tmp = scratch();
    const path = tmp.path("data.bin");
    writePattern(path, 16 * PAGE);
    await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
    const file = await pool.open(path);
    Deno.truncateSync(path, 3 * PAGE);
    await assert.rejects(() => file.prefault(), (error: unknown) => {
      assert.ok(error instanceof MappedIOError, String(error));
      assert.equal(error.fileOffset, 3 * PAGE);
      return true;
    });
    assert.equal(pool.restarts, 0);
  },
);

Deno.test("pool: kill -9 of a worker in the middle of a 256 MiB read", async () => {
  using tmp = scratch();
  const path = tmp.path("big.bin");
  writePattern(path, 256 * MiB);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 2 });
  const file = await pool.open(path);
  const [pid] = pool.pids;
  const target = new Uint8Array(256 * MiB);
  // The read runs off the event loop, so the kill lands while it is in flight.
  const reading = file.read(target, 0);
  await new Promise((resolve) => setTimeout(resolve, 5));
  Deno.kill(pid, "SIGKILL");
  try {
    await reading;
    // A fast machine may finish first; then the next call meets the dead worker.
    await file.read(new Uint8Array(16), 0);
    assert.fail("a call on the killed worker succeeded");
  } catch (error) {
    isCrash({ signal: "SIGKILL", reason: "crashed" })(error);
  }
  const again = new Uint8Array(PAGE);
  await file.read(again, 100 * MiB);
  assertBytes(again, pattern(100 * MiB, PAGE));
  assert.equal(pool.restarts, 1);
  assert.ok(!pool.pids.includes(pid));
});

Deno.test('pool: a worker restart keeps what was written to a "w+" file', async () => {
  using tmp = scratch();
  const path = tmp.path("created.bin");
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
  const file = await pool.open(path, { mode: "w+", writes: "map", length: 4 * PAGE });
  const source = pattern(0, 4 * PAGE);
  await file.write(source, 0);
  await file.flush();
  Deno.kill(pool.pids[0], "SIGKILL");
  await assert.rejects(() => file.read(new Uint8Array(16), 0), WorkerCrashedError);
  // The re-opened window must not have truncated the file the old worker wrote.
  const back = new Uint8Array(4 * PAGE);
  await file.read(back, 0);
  assertBytes(back, source);
  assertBytes(Deno.readFileSync(path), source);
  assert.equal(pool.restarts, 1);
});

Deno.test("pool: kernels that crash their worker, each a real fault or exit", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 16 * PAGE);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
  const file = await pool.open(path);
  const cases: [string, unknown[], Partial<WorkerCrashedError>][] = [
    ["segfault", [], { signal: "SIGSEGV" }],
    ["fail", ["kernel gave up"], { exitCode: 1 }],
    ["exit", [3], { exitCode: 3, signal: null }],
  ];
  for (const [name, args, expected] of cases) {
    await assert.rejects(() => file.run(KERNELS, name, ...args), isCrash(expected), name);
    assert.equal(await file.run(KERNELS, "sum", 0, 2), pattern(0, 1)[0] + pattern(1, 1)[0]);
  }
  await assert.rejects(() => file.run(KERNELS, "fail", "kernel gave up"), (error: unknown) => {
    return error instanceof WorkerCrashedError && error.stderr.includes("kernel gave up");
  });
  // The unguarded case: a kernel reading a page lost to truncation dies of SIGBUS.
  assert.equal(await file.run(KERNELS, "touch", 2 * PAGE), pattern(2 * PAGE, 1)[0]);
  Deno.truncateSync(path, PAGE);
  await assert.rejects(() => file.run(KERNELS, "touch", 2 * PAGE), isCrash({ signal: "SIGBUS" }));
  const head = new Uint8Array(16);
  await file.read(head, 0);
  assertBytes(head, pattern(0, 16));
  assert.equal(pool.restarts, 5);
  // The restarted worker mapped the same window as before, past the new end: the guard
  // reports the lost part instead of the window shrinking silently.
  await assert.rejects(() => file.read(new Uint8Array(2 * PAGE), 0), (error: unknown) => {
    return error instanceof MappedIOError && error.reason === "truncated" &&
      error.bytesTransferred === PAGE;
  });
});

Deno.test("pool: a kernel that runs too long is killed and reported as timed out", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4_096);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1, runTimeoutMs: scaledMs(200) });
  const file = await pool.open(path);
  await assert.rejects(
    () => file.run(KERNELS, "sleep", 10_000),
    isCrash({ reason: "timed_out", signal: "SIGKILL" }),
  );
  assert.equal(await file.run(KERNELS, "sleep", 1), 1);
});

Deno.test("pool: a kernel that cannot be loaded is a clear error, not a crash", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4_096);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
  const file = await pool.open(path);
  await assert.rejects(
    () => file.run(KERNELS, "no_such_export"),
    (error: unknown) => error instanceof GuardmapError && error.code === "KERNEL_NOT_FOUND",
  );
  await assert.rejects(
    () => file.run(tmp.path("missing.ts"), "k"),
    (error: unknown) =>
      error instanceof GuardmapError && error.code === "KERNEL_NOT_FOUND" &&
      /cannot load .*missing\.ts/.test(error.message),
  );
  assert.equal(pool.restarts, 0);
});

testUnlessQemu(
  "pool: 100 crashes in a row across 2 workers with calls in flight",
  "its 100 restarts each start a whole Deno, over 5 minutes under emulation; restarting does " +
    "not depend on the CPU, and this test runs natively",
  async () => {
    using tmp = scratch();
    const path = tmp.path("data.bin");
    writePattern(path, 65_536);
    const descriptors = openDescriptors();
    const pool = new MapPool({ ...poolTimeouts(), workers: 2 });
    const files = [await pool.open(path), await pool.open(path)];
    let crashes = 0;
    await using _closeOnFailure = { [Symbol.asyncDispose]: () => pool.close() };
    for (let round = 0; round < 50; round++) {
      // Two calls queued behind each crash: they run on the restarted worker.
      const calls = files.flatMap((file) => [
        file.run(KERNELS, "segfault").then(() => "ok", (error) => error),
        file.read(new Uint8Array(64), 128).then(() => "read"),
        file.run(KERNELS, "sum", 0, 1).then(() => "sum"),
      ]);
      const results = await Promise.all(calls);
      for (const result of results) {
        if (result instanceof WorkerCrashedError) crashes++;
        else assert.ok(result === "read" || result === "sum", `unexpected ${result}`);
      }
    }
    assert.equal(crashes, 100);
    assert.equal(pool.restarts, 100);
    await pool.close();
    assert.deepEqual(workerProcesses(), []);
    assert.deepEqual(channelFiles(), []);
    assert.equal(openDescriptors(), descriptors);
  },
);

Deno.test("pool: random reads and writes on two workers match Deno.FsFile byte for byte", async () => {
  using tmp = scratch();
  const paths = [tmp.path("a.bin"), tmp.path("b.bin")];
  for (const path of paths) writePattern(path, 4 * MiB);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 2, stagingBytes: 256 * 1024 });
  const files = await Promise.all(
    paths.map((path) => pool.open(path, { mode: "r+", writes: "map" })),
  );
  let seed = 12345;
  const random = (limit: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % limit;
  };
  for (let round = 0; round < 40; round++) {
    const calls = files.map(async (file, index) => {
      const length = 1 + random(700_000);
      const position = random(4 * MiB - length);
      if (random(2) === 0) {
        const data = new Uint8Array(length).map(() => random(256));
        await file.write(data, position);
        await file.flush({ position, length });
        using fs = Deno.openSync(paths[index]);
        fs.seekSync(position, Deno.SeekMode.Start);
        const seen = new Uint8Array(length);
        let got = 0;
        while (got < length) got += fs.readSync(seen.subarray(got)) ?? 0;
        assertBytes(seen, data);
      } else {
        const seen = new Uint8Array(length);
        await file.read(seen, position);
        using fs = Deno.openSync(paths[index]);
        fs.seekSync(position, Deno.SeekMode.Start);
        const expected = new Uint8Array(length);
        let got = 0;
        while (got < length) got += fs.readSync(expected.subarray(got)) ?? 0;
        assertBytes(seen, expected);
      }
    });
    await Promise.all(calls);
  }
});

Deno.test("pool: close leaves no process, descriptor or shared-memory file", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4_096);
  const descriptors = openDescriptors();
  const pool = new MapPool({ ...poolTimeouts(), workers: 3 });
  await using _closeOnFailure = { [Symbol.asyncDispose]: () => pool.close() };
  await pool.open(path);
  await pool.open(path);
  await pool.open(path);
  assert.equal(pool.pids.length, 3);
  await pool.close();
  await pool.close();
  assert.deepEqual(workerProcesses(), []);
  assert.deepEqual(channelFiles(), []);
  assert.equal(openDescriptors(), descriptors);
  await assert.rejects(() => pool.open(path), GuardmapError);
});

Deno.test("pool: workers die with a host killed by SIGKILL", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4_096);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { MapPool } from ${JSON.stringify(new URL("../mod.ts", import.meta.url).href)};
       const pool = new MapPool({ ...${JSON.stringify(poolTimeouts())}, workers: 2 });
       await pool.open(${JSON.stringify(path)});
       await pool.open(${JSON.stringify(path)});
       console.log(pool.pids.join(" "));
       await new Promise(() => {});`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  const pids = new TextDecoder().decode(value).trim().split(" ").map(Number);
  assert.equal(pids.length, 2);
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  await child.stdout.cancel();
  const deadline = Date.now() + scaledMs(2000);
  const alive = () =>
    pids.filter((pid) => {
      try {
        return !Deno.readTextFileSync(`/proc/${pid}/stat`).includes(") Z ");
      } catch {
        return false;
      }
    });
  while (alive().length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.deepEqual(alive(), []);
});

Deno.test("pool: a worker that cannot start makes the pool give up, with back-off, not spin", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4_096);
  // Nothing starts within 1 ms: every start fails.
  await using pool = new MapPool({
    workers: 1,
    startTimeoutMs: 1,
    restart: { maxFailedStarts: 4, backoffMs: 20 },
  });
  const started = Date.now();
  await assert.rejects(
    () => pool.open(path),
    (error: unknown) => error instanceof GuardmapError && error.code === "POOL_FAILED",
  );
  // Three back-off pauses: 20 + 40 + 80 ms.
  assert.ok(Date.now() - started >= 140, `gave up after ${Date.now() - started} ms`);
  await assert.rejects(() => pool.open(path), GuardmapError);
  assert.deepEqual(workerProcesses().length, 0);
});

Deno.test("pool: workers get narrow permissions", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 4_096);
  const probe = tmp.path("probe.ts");
  Deno.writeTextFileSync(
    probe,
    `export async function probe() {
       const ask = async (descriptor) => (await Deno.permissions.query(descriptor)).state;
       return {
         net: await ask({ name: "net" }),
         run: await ask({ name: "run" }),
         writeTmp: await ask({ name: "write", path: "/tmp" }),
         readEtc: await ask({ name: "read", path: "/etc/passwd" }),
         readOwn: await ask({ name: "read", path: ${JSON.stringify(tmp.dir)} }),
       };
     }`,
  );
  await using pool = new MapPool({
    ...poolTimeouts(),
    workers: 1,
    permissions: { read: [tmp.dir] },
  });
  const file = await pool.open(path);
  const seen = await file.run(probe, "probe");
  assert.deepEqual(seen, {
    net: "prompt",
    run: "prompt",
    writeTmp: "prompt",
    readEtc: "prompt",
    readOwn: "granted",
  });
});

Deno.test("pool: the host's own permissions are checked before a worker maps anything", async () => {
  using tmp = scratch();
  const path = tmp.path("secret.bin");
  writePattern(path, 100);
  const lib = new URL("../zig/", import.meta.url).pathname;
  const result = await runScript(
    `
    import { MapPool } from "GUARDMAP_MOD";
    await using pool = new MapPool({ ...${JSON.stringify(poolTimeouts())}, workers: 1 });
    try { await pool.open(${JSON.stringify(path)}); console.log("opened"); }
    catch (error) { console.log(error.name); }
  `,
    ["--allow-ffi", "--allow-run", `--allow-read=${lib}`, "--allow-env"],
  );
  assert.equal(result.stdout.trim(), "NotCapable", result.stderr);
});

Deno.test("pool: close after a kernel gave its view's buffer away releases the map, the worker lives", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 65_536);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
  const file = await pool.open(path);
  assert.equal(await file.run(KERNELS, "giveAway"), 65_536);
  await file.close();
  assert.equal(pool.restarts, 0, "the worker did not crash on close");
  const again = await pool.open(path);
  const bytes = new Uint8Array(100);
  await again.read(bytes, 0);
  assertBytes(bytes, pattern(0, 100));
  assert.equal(pool.restarts, 0);
});
