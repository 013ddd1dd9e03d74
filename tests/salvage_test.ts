// Zero-copy views that survive I/O errors (salvage: true). Real faults: a file truncated under
// a view read by plain JavaScript, and (tests/fuse_fault_test.ts's file system) EIO.
import assert from "node:assert/strict";
import { MappedFile, MappedIOError } from "../mod.ts";
import { assertBytes, pageSize, pattern, runScript, scratch, writePattern } from "./util.ts";
import { fuseTest, mountFaultFs } from "./fuse/fault_fs.ts";

const PAGE = pageSize();

Deno.test("salvage: a view over a truncated file reads zeros instead of killing the process", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 8 * PAGE);
  using map = MappedFile.open(path, { mode: "r+", salvage: true });
  const view = map.unsafeView();
  assert.equal(view[5 * PAGE + 7], pattern(5 * PAGE + 7, 1)[0]);
  Deno.truncateSync(path, 3 * PAGE);
  // Plain JavaScript touches lost pages: no SIGBUS, zeros.
  let sum = 0;
  for (let i = 3 * PAGE; i < 8 * PAGE; i++) sum += view[i];
  assert.equal(sum, 0);
  assert.equal(view[100], pattern(100, 1)[0]);
  const faults = map.faults;
  assert.equal(faults.count, 5);
  assert.equal(faults.fileOffset, 3 * PAGE);
  // The next call reports it, once; the one after works.
  assert.throws(() => map.read(new Uint8Array(10), 0), (error: unknown) => {
    assert.ok(error instanceof MappedIOError);
    assert.equal(error.fileOffset, 3 * PAGE);
    assert.equal(error.reason, "truncated");
    return true;
  });
  const head = new Uint8Array(10);
  map.read(head, 0);
  assertBytes(head, pattern(0, 10));
  map.check();
  // Writes to a salvaged page never reach the file: flush fails for good.
  view[6 * PAGE] = 1;
  assert.throws(() => map.flush(), MappedIOError);
  assert.throws(() => map.flush(), MappedIOError);
  // A new fault is reported again.
  Deno.truncateSync(path, 2 * PAGE);
  assert.equal(view[2 * PAGE + 1], 0);
  assert.throws(() => map.check(), MappedIOError);
  map.check();
});

Deno.test("salvage is opt-in: the same touch without it kills a child with SIGBUS", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 8 * PAGE);
  const script = (salvage: boolean) => `
    import { MappedFile } from "GUARDMAP_MOD";
    const map = MappedFile.open(${JSON.stringify(path)}, { salvage: ${salvage} });
    const view = map.unsafeView();
    Deno.truncateSync(${JSON.stringify(path)}, ${PAGE});
    console.log("value", view[5 * ${PAGE}], "faults", map.faults.count);
  `;
  const without = await runScript(script(false));
  assert.equal(without.signal, "SIGBUS", without.stderr);
  writePattern(path, 8 * PAGE);
  const withSalvage = await runScript(script(true));
  assert.equal(withSalvage.code, 0, withSalvage.stderr);
  assert.equal(withSalvage.stdout.trim(), "value 0 faults 1");
});

fuseTest(
  "salvage: a view over a file whose device answers EIO reads zeros and reports it",
  async () => {
    await using fs = await mountFaultFs();
    Deno.writeFileSync(fs.backing("data.bin"), pattern(0, 16 * PAGE));
    using map = MappedFile.open(fs.path("data.bin"), { salvage: true });
    await fs.fail({ operations: "read", file: "data.bin", errno: "EIO" });
    await fs.invalidate("data.bin");
    const view = map.unsafeView();
    assert.equal(view[9 * PAGE + 3], 0);
    assert.equal(map.faults.count, 1);
    assert.equal(map.faults.fileOffset, 9 * PAGE + 3);
    assert.throws(() => map.check(), (error: unknown) => {
      return error instanceof MappedIOError && error.reason === "io" &&
        error.fileOffset === 9 * PAGE + 3;
    });
  },
);
