// Problem 1: I/O faults on mapped memory. Every test makes the kernel raise a real SIGBUS by
// truncating a mapped file; nothing is mocked.
import assert from "node:assert/strict";
import { MappedFile, MappedIOError, rearmFaultGuard } from "../mod.ts";
import { native } from "../ffi/library.ts";
import {
  assertBytes,
  pageSize,
  pattern,
  prefaultTest,
  runScript,
  scratch,
  writePattern,
} from "./util.ts";

// Sizes in pages of the library (4, 16 or 64 KiB on aarch64): a cut on a page boundary faults.
const PAGE = pageSize();
const FILE_BYTES = 16 * PAGE;
const KEPT_BYTES = 3 * PAGE;

function isFault(expected: Partial<MappedIOError>) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof MappedIOError, `expected MappedIOError, got ${error}`);
    for (const [key, value] of Object.entries(expected)) {
      assert.equal(error[key as keyof MappedIOError], value, `${key}`);
    }
    return true;
  };
}

Deno.test("read across a truncated end: MappedIOError, bytes before it delivered, process alive", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const bytes = writePattern(path, FILE_BYTES);
  using map = MappedFile.open(path);
  Deno.truncateSync(path, KEPT_BYTES);

  const target = new Uint8Array(FILE_BYTES);
  assert.throws(
    () => map.read(target, 0),
    isFault({
      code: "EIO",
      operation: "read",
      position: KEPT_BYTES,
      fileOffset: KEPT_BYTES,
      bytesTransferred: KEPT_BYTES,
      reason: "truncated",
      fileSize: KEPT_BYTES,
      signal: "SIGBUS",
    }),
  );
  assertBytes(target.subarray(0, KEPT_BYTES), bytes.subarray(0, KEPT_BYTES));
  assert.equal(target.subarray(KEPT_BYTES).every((byte) => byte === 0), true);

  // Still working: the healthy part reads again, another map opens and reads.
  const healthy = new Uint8Array(PAGE);
  map.read(healthy, 2 * PAGE);
  assertBytes(healthy, bytes.subarray(2 * PAGE, 3 * PAGE));
  const other = tmp.path("other.bin");
  writePattern(other, 100);
  using second = MappedFile.open(other);
  const small = new Uint8Array(100);
  second.read(small, 0);
  assertBytes(small, pattern(0, 100));
});

Deno.test("read that starts inside the lost part transfers nothing and says where", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, FILE_BYTES);
  using map = MappedFile.open(path, { offset: 1_000, length: 60_000 });
  Deno.truncateSync(path, KEPT_BYTES);
  // Window position 20_000 is file offset 21_000, past the new end.
  assert.throws(
    () => map.read(new Uint8Array(10), 20_000),
    isFault({ position: 20_000, fileOffset: 21_000, bytesTransferred: 0, reason: "truncated" }),
  );
  // A read ending exactly at the new end still succeeds.
  map.read(new Uint8Array(100), KEPT_BYTES - 1_000 - 100);
});

Deno.test("a truncation inside a page counts only the bytes still in the file", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const bytes = writePattern(path, FILE_BYTES);
  using map = MappedFile.open(path, { offset: 100, length: FILE_BYTES - 100 });
  const cut = 2 * PAGE + 1_808; // Inside the third page.
  Deno.truncateSync(path, cut);
  const target = new Uint8Array(FILE_BYTES - 100);
  assert.throws(
    () => map.read(target, 0),
    isFault({ position: cut - 100, fileOffset: cut, bytesTransferred: cut - 100, fileSize: cut }),
  );
  assertBytes(target.subarray(0, cut - 100), bytes.subarray(100, cut));
  // The rest of the page holding the new end reads as zeros, as the kernel serves it.
  assert.equal(target.subarray(cut - 100, 3 * PAGE - 100).every((byte) => byte === 0), true);
});

Deno.test("write across a truncated end: MappedIOError, the bytes before it written", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, FILE_BYTES);
  using map = MappedFile.open(path, { mode: "r+", writes: "map" });
  Deno.truncateSync(path, KEPT_BYTES);
  const source = new Uint8Array(8_192).fill(0xab);
  assert.throws(
    () => map.write(source, KEPT_BYTES - 100),
    isFault({ operation: "write", position: KEPT_BYTES, bytesTransferred: 100 }),
  );
  map.flush();
  const file = Deno.readFileSync(path);
  assert.equal(file.length, KEPT_BYTES);
  assert.deepEqual(file.subarray(KEPT_BYTES - 100), source.subarray(0, 100));
});

prefaultTest("prefault reports the first failing offset without a signal", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, FILE_BYTES);
  using map = MappedFile.open(path, { offset: 100, length: FILE_BYTES - 100 });
  Deno.truncateSync(path, KEPT_BYTES);
  assert.throws(
    () => map.prefault(),
    isFault({ operation: "prefault", fileOffset: KEPT_BYTES, position: KEPT_BYTES - 100 }),
  );
  map.prefault({ length: KEPT_BYTES - 100 });
  return Promise.resolve();
});

Deno.test("a Deno SIGBUS listener installed after the library loaded does not break the guard", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, FILE_BYTES);
  using map = MappedFile.open(path); // The library is loaded by now.
  let heard = 0;
  const listener = () => heard++;
  Deno.addSignalListener("SIGBUS", listener);
  try {
    // guardmap put its handler back in front, so guarded faults never reach Deno's.
    assert.equal(native().gm_guard_disposition(), 1);
    Deno.truncateSync(path, KEPT_BYTES);
    for (let round = 0; round < 20; round++) {
      assert.throws(
        () => map.read(new Uint8Array(FILE_BYTES), 0),
        isFault({ reason: "truncated" }),
      );
    }
    // Give Deno's signal thread time to deliver anything that was queued.
    await new Promise((resolve) => setTimeout(resolve, 50));
  } finally {
    Deno.removeSignalListener("SIGBUS", listener);
  }
  assert.equal(heard, 0);
  // If anything had been queued for Deno's signal thread, it would now kill the process.
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.throws(() => map.read(new Uint8Array(10), 30_000), isFault({ bytesTransferred: 0 }));
  assert.equal(rearmFaultGuard(), "ours");
});

Deno.test("a SIGBUS listener added before guardmap loaded, then removed, breaks nothing", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, FILE_BYTES);
  const result = await runScript(`
    const listener = () => console.log("listener called");
    Deno.addSignalListener("SIGBUS", listener);
    const { MappedFile, MappedIOError } = await import("GUARDMAP_MOD");
    const map = MappedFile.open(${JSON.stringify(path)});
    Deno.truncateSync(${JSON.stringify(path)}, ${KEPT_BYTES});
    const attempt = () => {
      try { map.read(new Uint8Array(${FILE_BYTES}), 0); return "no error"; }
      catch (error) { return error instanceof MappedIOError ? "MappedIOError" : String(error); }
    };
    console.log(attempt());
    await new Promise((resolve) => setTimeout(resolve, 100));
    Deno.removeSignalListener("SIGBUS", listener);
    await new Promise((resolve) => setTimeout(resolve, 100));
    console.log(attempt());
    await new Promise((resolve) => setTimeout(resolve, 100));
    console.log("alive");
  `);
  assert.equal(result.stdout.trim(), "MappedIOError\nMappedIOError\nalive", result.stderr);
  assert.equal(result.code, 0, `signal ${result.signal}: ${result.stderr}`);
});

Deno.test("the guard swallows nothing else: an unguarded touch of a lost page kills a child with SIGBUS", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, FILE_BYTES);
  const result = await runScript(`
    import { MappedFile, MappedIOError } from "GUARDMAP_MOD";
    const map = MappedFile.open(${JSON.stringify(path)});
    const view = map.unsafeView();
    Deno.truncateSync(${JSON.stringify(path)}, ${KEPT_BYTES});
    try { map.read(new Uint8Array(${FILE_BYTES}), 0); } catch (error) {
      console.log("guarded:", error instanceof MappedIOError);
    }
    console.log("unguarded:", view[${KEPT_BYTES + 1}]);
  `);
  assert.equal(result.stdout.trim(), "guarded: true", result.stderr);
  assert.equal(result.signal, "SIGBUS", `code ${result.code}, stderr: ${result.stderr}`);
});
