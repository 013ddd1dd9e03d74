// MapPool: a map handle of 2^32 or more (a slot reused 2^20 times) is closed in its worker.
import assert from "node:assert/strict";
import { MapPool } from "../mod.ts";
import { scratch, writePattern } from "./util.ts";

const KERNELS = new URL("./kernels/handle_kernels.ts", import.meta.url);
/** Closes of one slot after which its next handle is at least 2^32 (12 index bits). */
const CYCLES = 2 ** 20;

/** Whether process `pid` maps `path` (its /proc maps list the file). */
function maps(pid: number, path: string): boolean {
  return Deno.readTextFileSync(`/proc/${pid}/maps`).split("\n").some((line) => line.endsWith(path));
}

Deno.test({
  name: "pool: closing a map whose handle is 2^32 or more unmaps it in the worker",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    using tmp = scratch();
    const first = tmp.path("first.bin");
    const second = tmp.path("second.bin");
    writePattern(first, 4096);
    writePattern(second, 4096);
    await using pool = new MapPool({ workers: 1 });
    const anchor = await pool.open(first);
    // The anchor holds slot 0; the kernel cycles slot 1, which the next open reuses.
    const last = await anchor.run<number>(KERNELS, "cycleSlot", second, CYCLES);
    assert.ok(last + 4096 >= 2 ** 32, `handle ${last} should be near 2^32 after ${CYCLES} cycles`);
    const file = await pool.open(second);
    const [pid] = pool.pids;
    assert.ok(maps(pid, second), `worker ${pid} should map ${second} while it is open`);
    await file.close();
    assert.ok(!maps(pid, second), `worker ${pid} still maps ${second} after close`);
    await anchor.close();
  },
});
