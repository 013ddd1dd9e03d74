// The TypeScript status table must match the Zig enum, number for number.
import assert from "node:assert/strict";
import { Status } from "../mod.ts";
import { native } from "../ffi/library.ts";

Deno.test("ffi/status.ts mirrors zig/src/status.zig", () => {
  const zig = Deno.readTextFileSync(new URL("../zig/src/status.zig", import.meta.url));
  const body = zig.slice(zig.indexOf("pub const Status = enum(i32) {"));
  const enumBody = body.slice(0, body.indexOf("\n};"));
  const fromZig = Object.fromEntries(
    [...enumBody.matchAll(/^\s+(\w+) = (\d+),/gm)].map((match) => [match[1], Number(match[2])]),
  );
  assert.ok(Object.keys(fromZig).length >= 20);
  assert.deepEqual(fromZig, { ...Status });
});

Deno.test("the loaded library reports its granularity and a live fault handler", () => {
  const lib = native();
  assert.equal(lib.gm_page_size(), 4096);
  assert.equal(lib.gm_granularity(), 4096);
  assert.ok([1, 2].includes(lib.gm_guard_disposition()));
});

Deno.test("the library refuses forged handles and null buffers on its own", () => {
  const lib = native();
  const detail = new Uint8Array(32);
  const target = new Uint8Array(8);
  for (const handle of [0, 1, 0xffff, 0xffffffff, 12345 << 16]) {
    assert.equal(lib.gm_read(handle, 0, target, 8, detail), Status.bad_handle);
    assert.equal(lib.gm_close(handle), Status.bad_handle);
    assert.equal(lib.gm_address(handle), null);
  }
  assert.equal(lib.gm_read(1, 0, target, 8, null), Status.invalid_argument);
  assert.equal(lib.gm_open(null, 0n, 0, 0n, 0n, 0, detail), Status.invalid_argument);
  assert.equal(lib.gm_memcpy(target, null, 8), Status.invalid_argument);
});
