// MapPool.open's `worker` option: which worker process maps a window, checked in /proc.
import assert from "node:assert/strict";
import { MappedFile, MapPool } from "../mod.ts";
import { pattern, scratch, writePattern } from "./util.ts";

const KERNELS = new URL("./kernels/kernels.ts", import.meta.url);
const LINUX = Deno.build.os === "linux";

/** Whether process `pid` maps `path` (its /proc maps list the file). */
function maps(pid: number, path: string): boolean {
  return Deno.readTextFileSync(`/proc/${pid}/maps`).split("\n").some((line) => line.endsWith(path));
}

Deno.test({
  name: "pool placement: options.worker puts each window on the worker it names",
  ignore: !LINUX,
  fn: async () => {
    using tmp = scratch();
    const [a, b, c] = ["a.bin", "b.bin", "c.bin"].map((name) => tmp.path(name));
    for (const path of [a, b, c]) writePattern(path, 8192);
    await using pool = new MapPool({ workers: 3 });
    // Round-robin would have put these on workers 0, 1 and 2, starting all three.
    const onTwo = await pool.open(a, { worker: 2 });
    const alsoOnTwo = await pool.open(b, { worker: 2, offset: 4096 });
    const onZero = await pool.open(c, { worker: 0 });
    // pids lists the running workers in slot order: slot 1 never started.
    const pids = pool.pids;
    assert.equal(pids.length, 2, `workers 0 and 2 should run, got ${pids}`);
    const [zero, two] = pids;
    assert.ok(maps(two, a) && maps(two, b), `worker 2 (${two}) should map a.bin and b.bin`);
    assert.ok(!maps(two, c), `worker 2 (${two}) should not map c.bin`);
    assert.ok(maps(zero, c), `worker 0 (${zero}) should map c.bin`);
    assert.ok(!maps(zero, a) && !maps(zero, b), `worker 0 (${zero}) maps only c.bin`);
    // The windows are the ones asked for, and work.
    const bytes = new Uint8Array(16);
    await alsoOnTwo.read(bytes, 0);
    assert.deepEqual(bytes, pattern(4096, 16));
    assert.equal(await onTwo.run<number>(KERNELS, "sum", 0, 4), 3 + 10 + 17 + 24);
    await onZero.read(bytes, 100);
    assert.deepEqual(bytes, pattern(100, 16));
    // After a placed open, round-robin goes on where it was: the next file goes to worker 0.
    const next = await pool.open(a);
    assert.ok(maps(zero, a), `the next round-robin open should land on worker 0 (${zero})`);
    await next.close();
  },
});

Deno.test({
  name: "pool placement: windows on two workers run kernels at the same time",
  ignore: !LINUX,
  fn: async () => {
    using tmp = scratch();
    const path = tmp.path("data.bin");
    writePattern(path, 8192);
    await using pool = new MapPool({ workers: 2 });
    const halves = await Promise.all(
      [0, 1].map((worker) => pool.open(path, { offset: worker * 4096, length: 4096, worker })),
    );
    // Both workers started and answered once, so the timed calls below only run the kernels.
    await Promise.all(halves.map((half) => half.run(KERNELS, "sum", 0, 1)));
    const sleepMs = 1500;
    const started = performance.now();
    await Promise.all(halves.map((half) => half.run(KERNELS, "sleep", sleepMs)));
    const elapsedMs = performance.now() - started;
    // One after the other would take at least 2 x sleepMs; at once, sleepMs and the calls.
    assert.ok(elapsedMs >= sleepMs, `the kernels slept ${sleepMs} ms, took ${elapsedMs} ms`);
    assert.ok(
      elapsedMs < 2 * sleepMs,
      `two kernels on two workers took ${elapsedMs.toFixed(0)} ms: they ran one after the other`,
    );
  },
});

Deno.test({
  name: "pool placement: a bad options.worker is a TypeError or RangeError naming it",
  ignore: !LINUX,
  fn: async () => {
    using tmp = scratch();
    const path = tmp.path("data.bin");
    writePattern(path, 4096);
    await using pool = new MapPool({ workers: 2 });
    for (const worker of [2, -1, 0.5, NaN, Infinity, 2 ** 53]) {
      await assert.rejects(
        pool.open(path, { worker }),
        (error: Error) =>
          error instanceof RangeError && error.message.includes("options.worker") &&
          error.message.includes("from 0 to 1") && error.message.includes(`got ${worker}`),
        `worker ${worker}`,
      );
    }
    for (const worker of ["1", null, 1n, {}]) {
      await assert.rejects(
        pool.open(path, { worker: worker as unknown as number }),
        (error: Error) => error instanceof TypeError && error.message.includes("options.worker"),
        `worker ${String(worker)}`,
      );
    }
    // Refused before any worker started, and undefined means round-robin.
    assert.deepEqual(pool.pids, []);
    const file = await pool.open(path, { worker: undefined });
    assert.equal(pool.pids.length, 1);
    await file.close();
    // MappedFile.open has no workers: the key stays unknown there.
    assert.throws(
      () => MappedFile.open(path, { worker: 0 } as unknown as Record<string, never>),
      (error: Error) => error instanceof TypeError && error.message.includes('"worker"'),
    );
  },
});
