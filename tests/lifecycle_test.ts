// How maps end: close after a view's buffer was transferred, maps of terminated Web Workers,
// maps dropped without close, and the process-wide cap.
import assert from "node:assert/strict";
import { GuardmapError, MappedFile } from "../mod.ts";
import { native } from "../ffi/library.ts";
import { mappingsOf, runScript, scratch, writePattern } from "./util.ts";

/** The descriptors of this process that name `path`. */
function descriptorsOf(path: string): number {
  let count = 0;
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${entry.name}`) === path) count++;
    } catch {
      // The descriptor readDir itself used, closed by now.
    }
  }
  return count;
}

function assertReleased(path: string): void {
  assert.equal(descriptorsOf(path), 0, `a descriptor of ${path} is still open`);
  assert.deepEqual(mappingsOf(path), [], `${path} is still mapped`);
}

Deno.test("close() releases the map after its view's buffer was transferred", async (t) => {
  using dir = scratch();
  const path = dir.path("data");
  writePattern(path, 8192);
  const transfers: [string, (buffer: ArrayBuffer) => Promise<ArrayBuffer>][] = [
    [
      "structuredClone",
      (buffer) => Promise.resolve(structuredClone(buffer, { transfer: [buffer] })),
    ],
    ["postMessage", (buffer) => {
      const channel = new MessageChannel();
      const received = new Promise<ArrayBuffer>((resolve) => {
        channel.port2.onmessage = (event) => resolve(event.data);
      });
      channel.port1.postMessage(buffer, [buffer]);
      return received.finally(() => {
        channel.port1.close();
        channel.port2.close();
      });
    }],
  ];
  for (const [name, transfer] of transfers) {
    await t.step(name, async () => {
      const map = MappedFile.open(path);
      const moved = await transfer(map.unsafeView().buffer as ArrayBuffer);
      assert.equal(new Uint8Array(moved)[1], 10); // The pattern: (1 * 7 + 3) & 0xff.
      map.close();
      assert.equal(map.closed, true);
      assertReleased(path);
      // The range the moved buffer points at now holds zeros: reading it cannot crash.
      const bytes = new Uint8Array(moved);
      assert.equal(bytes.length, 8192);
      assert.equal(bytes.reduce((sum, byte) => sum + byte, 0), 0);
    });
  }
});

/** Starts a Web Worker running `source` (GUARDMAP_MOD stands for mod.ts) and waits for its first message. */
async function workerSays<T>(source: string, data: unknown): Promise<[Worker, T]> {
  const code = source.replaceAll("GUARDMAP_MOD", new URL("../mod.ts", import.meta.url).href);
  const url = URL.createObjectURL(new Blob([code], { type: "application/javascript" }));
  const worker = new Worker(url, { type: "module" });
  const message = await new Promise<T>((resolve, reject) => {
    worker.onmessage = (event) => resolve(event.data);
    worker.onerror = (event) => reject(new Error(event.message));
    worker.postMessage(data);
  });
  URL.revokeObjectURL(url);
  return [worker, message];
}

/** Calls gm_reap until it has released `count` maps: the worker's thread ends shortly after terminate(). */
async function reapAfterTerminate(count: number): Promise<void> {
  let released = 0;
  const deadline = Date.now() + 10_000;
  while (released < count && Date.now() < deadline) {
    released += native().gm_reap();
    if (released < count) await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.equal(released, count);
}

const OPEN_IN_WORKER = `import { MappedFile } from "GUARDMAP_MOD";
self.onmessage = (event) => {
  const { path, count } = event.data;
  globalThis.maps = Array.from({ length: count }, () => MappedFile.open(path));
  self.postMessage(count);
};`;

Deno.test("the maps of a terminated Web Worker are released", async () => {
  using dir = scratch();
  const path = dir.path("data");
  writePattern(path, 4096);
  const [worker] = await workerSays(OPEN_IN_WORKER, { path, count: 100 });
  assert.equal(descriptorsOf(path), 100);
  worker.terminate();
  await reapAfterTerminate(100);
  assertReleased(path);
});

Deno.test("a terminated Web Worker's maps go away by themselves, with no later open", async () => {
  using dir = scratch();
  const path = dir.path("data");
  writePattern(path, 4096);
  const [worker] = await workerSays(OPEN_IN_WORKER, { path, count: 100 });
  assert.equal(descriptorsOf(path), 100);
  worker.terminate();
  // Nothing here calls gm_reap or opens a map: the library's reaper thread (zig/src/reaper.zig,
  // every 500 ms) must release them. The bound leaves room for a loaded machine.
  const deadline = Date.now() + 10_000;
  while (descriptorsOf(path) > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assertReleased(path);
});

Deno.test("an open that finds every slot taken by ended workers' maps succeeds", async () => {
  using dir = scratch();
  const path = dir.path("data");
  writePattern(path, 4096);
  // One worker takes all but 10 slots (a cheaper stand-in for 41 workers of 100 maps each).
  const [worker] = await workerSays(OPEN_IN_WORKER, { path, count: 4086 });
  worker.terminate();
  const deadline = Date.now() + 10_000;
  // Until its thread has ended the worker's maps are kept: the open fails with the cap.
  const maps: MappedFile[] = [];
  try {
    while (maps.length < 200 && Date.now() < deadline) {
      try {
        maps.push(MappedFile.open(path));
      } catch (error) {
        assert.ok(error instanceof GuardmapError && error.code === "MAP_LIMIT", String(error));
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
    assert.equal(maps.length, 200);
  } finally {
    for (const map of maps) map.close();
  }
  assertReleased(path);
});

Deno.test("a view a terminated worker transferred out reads zeros after its map is reaped", async () => {
  using dir = scratch();
  const path = dir.path("data");
  writePattern(path, 4096);
  const source = `import { MappedFile } from "GUARDMAP_MOD";
self.onmessage = (event) => {
  globalThis.map = MappedFile.open(event.data);
  const buffer = globalThis.map.unsafeView().buffer;
  self.postMessage(buffer, [buffer]);
};`;
  const [worker, buffer] = await workerSays<ArrayBuffer>(source, path);
  assert.equal(new Uint8Array(buffer)[1], 10);
  worker.terminate();
  await reapAfterTerminate(1);
  assertReleased(path);
  const bytes = new Uint8Array(buffer);
  assert.equal(bytes.reduce((sum, byte) => sum + byte, 0), 0);
});

Deno.test("the map cap is an error of its own that names the cap", () => {
  using dir = scratch();
  const path = dir.path("data");
  writePattern(path, 4096);
  const maps: MappedFile[] = [];
  try {
    let error: unknown;
    while (maps.length <= 4096) {
      try {
        maps.push(MappedFile.open(path));
      } catch (caught) {
        error = caught;
        break;
      }
    }
    assert.ok(error instanceof GuardmapError, String(error));
    assert.equal(error.code, "MAP_LIMIT");
    assert.equal(error.status, 30);
    assert.match(error.message, /4096 maps open/);
    assert.match(error.message, /close maps you no longer need/);
    assert.ok(maps.length <= 4096);
  } finally {
    for (const map of maps) map.close();
  }
  assertReleased(path);
});

Deno.test("maps dropped without close() are released when collected, never under a live view", async () => {
  using dir = scratch();
  const path = dir.path("data");
  writePattern(path, 8192);
  // A child with gc(): collection is what this test is about, and only --expose-gc forces it.
  const result = await runScript(
    `import { MappedFile } from "GUARDMAP_MOD";
const path = ${JSON.stringify(path)};
const descriptors = () => [...Deno.readDirSync("/proc/self/fd")]
  .filter((entry) => { try { return Deno.readLinkSync("/proc/self/fd/" + entry.name) === path; } catch { return false; } }).length;
const mapped = () => Deno.readTextFileSync("/proc/self/maps").split("\\n").filter((line) => line.endsWith(" " + path)).length;
async function collect() {
  for (let round = 0; round < 3; round++) { gc(); await new Promise((resolve) => setTimeout(resolve, 20)); }
}
const report = {};
(() => { for (let i = 0; i < 10; i++) MappedFile.open(path); })();
await collect();
report.plain = [descriptors(), mapped()];
let view = (() => MappedFile.open(path).unsafeView())();
await collect();
report.liveView = [descriptors(), mapped(), view[1]];
view = undefined;
await collect();
report.viewDropped = [descriptors(), mapped()];
let moved = (() => { const buffer = MappedFile.open(path).unsafeView().buffer; return structuredClone(buffer, { transfer: [buffer] }); })();
await collect();
report.transferred = [descriptors(), mapped(), new Uint8Array(moved).reduce((a, b) => a + b, 0)];
console.log(JSON.stringify(report));`,
    ["--allow-all", "--v8-flags=--expose-gc"],
  );
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(JSON.parse(result.stdout.trim().split("\n").at(-1)!), {
    plain: [0, 0],
    // The map is unreachable but its view is not: it stays mapped and reads the file.
    liveView: [1, 1, 10],
    viewDropped: [0, 0],
    // The transferred buffer outlived the map: the file is released and the buffer reads zeros.
    transferred: [0, 0, 0],
  });
});

Deno.test("100,000 maps dropped by a loop that yields every 1,000 opens never meet the cap", async () => {
  using dir = scratch();
  const path = dir.path("data");
  writePattern(path, 4096);
  // A child of its own: a fresh heap, as in a program that does this from its start.
  const result = await runScript(
    `import { MappedFile } from "GUARDMAP_MOD";
let failed = 0;
let first = "";
for (let i = 0; i < 100_000; i++) {
  try { MappedFile.open(${
      JSON.stringify(path)
    }); } catch (error) { failed++; first ||= String(error); }
  if (i % 1000 === 999) await new Promise((resolve) => setTimeout(resolve, 0));
}
console.log(JSON.stringify({ failed, first }));`,
    ["--allow-all"],
  );
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(JSON.parse(result.stdout.trim().split("\n").at(-1)!), { failed: 0, first: "" });
});
