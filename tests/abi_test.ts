// ffi/abi.ts mirrors the native ABI: every record offset and size, every enum number, the open
// flags and the constants must match what the loaded library says about itself (gm_abi_layout,
// built at compile time from the Zig declarations), entry for entry and in both directions.
import assert from "node:assert/strict";
import { Status } from "../mod.ts";
import { native } from "../ffi/library.ts";
import {
  ABI_VERSION,
  ADVICE,
  CHANNEL_HEADER,
  CHANNEL_OP,
  CONSTANTS,
  decodeDetail,
  DETAIL,
  FILE_KIND,
  MODE,
  OPEN_FLAGS,
  OPEN_RESULT,
} from "../ffi/abi.ts";
import { openNative } from "../ffi/window.ts";

/** What gm_abi_layout describes (zig/src/abi_layout.zig); keys are the Zig names. */
interface Layout {
  abi_version: number;
  records: Record<string, { size_bytes: number; fields: Record<string, number> }>;
  enums: Record<string, Record<string, number>>;
  constants: Record<string, number>;
}

function layout(): Layout {
  const text = Deno.UnsafePointerView.getCString(native().gm_abi_layout()!);
  return JSON.parse(text);
}

/** `bytes_done` -> `bytesDone`: the mirror's keys are the Zig names in camelCase. */
function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());
}

function camelKeys(entries: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(entries).map(([name, value]) => [camel(name), value]));
}

// deepEqual on plain objects fails on a key missing from either side and on any other number.
function assertMirror(what: string, mirror: object, zig: Record<string, number>): void {
  assert.deepEqual({ ...mirror }, zig, `ffi/abi.ts ${what} differs from the library's layout`);
}

Deno.test("ffi/status.ts mirrors zig/src/status.zig", () => {
  const fromZig = layout().enums.status;
  assert.ok(Object.keys(fromZig).length >= 20);
  assert.deepEqual({ ...Status }, fromZig);
});

Deno.test("ffi/abi.ts mirrors every record layout of the library", () => {
  const { records } = layout();
  assert.deepEqual(Object.keys(records).sort(), ["channel_header", "detail", "open_result"]);
  const mirrors = { detail: DETAIL, open_result: OPEN_RESULT, channel_header: CHANNEL_HEADER };
  for (const [name, mirror] of Object.entries(mirrors)) {
    const record = records[name];
    const zig = { sizeBytes: record.size_bytes, ...camelKeys(record.fields) };
    assertMirror(name, mirror, zig);
  }
});

Deno.test("ffi/abi.ts mirrors the library's enums, open flags and constants", () => {
  const { abi_version, enums, constants } = layout();
  assert.equal(abi_version, ABI_VERSION);
  assert.equal(native().gm_abi_version(), ABI_VERSION);
  assert.deepEqual(
    Object.keys(enums).sort(),
    ["advice", "channel_op", "file_kind", "mode", "open_flags", "status"],
  );
  assertMirror("MODE", MODE, camelKeys(enums.mode));
  assertMirror("ADVICE", ADVICE, camelKeys(enums.advice));
  assertMirror("FILE_KIND", FILE_KIND, camelKeys(enums.file_kind));
  assertMirror("CHANNEL_OP", CHANNEL_OP, camelKeys(enums.channel_op));
  assertMirror("OPEN_FLAGS", OPEN_FLAGS, camelKeys(enums.open_flags));
  assertMirror("CONSTANTS", CONSTANTS, camelKeys(constants));
});

Deno.test("the loaded library reports its granularity and a live fault handler", () => {
  const lib = native();
  // 4 KiB on x86_64; 4, 16 or 64 KiB on aarch64 kernels. Linux maps at any page boundary; Windows
  // at its 64 KiB allocation granularity.
  const page = lib.gm_page_size();
  assert.ok([4096, 16384, 65536].includes(page), `page size ${page}`);
  assert.equal(lib.gm_granularity(), Deno.build.os === "windows" ? 65536 : page);
  assert.ok([1, 2].includes(lib.gm_guard_disposition()));
});

Deno.test("the library refuses forged handles and null buffers on its own", () => {
  const lib = native();
  const detail = new Uint8Array(DETAIL.sizeBytes);
  const target = new Uint8Array(8);
  for (const handle of [0, 1, 0xffff, 0xffffffff, 12345 << 16]) {
    assert.equal(lib.gm_read(handle, 0, target, 8), Status.bad_handle);
    assert.equal(lib.gm_close(handle), Status.bad_handle);
    assert.equal(lib.gm_address(handle), null);
  }
  assert.equal(lib.gm_last_detail(null), Status.invalid_argument);
  assert.equal(lib.gm_open(null, 0n, 0, 0n, 0n, 0, detail), Status.invalid_argument);
  assert.equal(lib.gm_memcpy(target, 8, null, 8, 8), Status.invalid_argument);
  // gm_memcpy copies only inside what it is told the buffers hold, and never between overlapping
  // ones (Zig's @memcpy of overlapping memory panics a safe build: the process would die).
  const source = new Uint8Array(16).fill(7);
  assert.equal(lib.gm_memcpy(target, 8, source, 16, 8), Status.ok);
  assert.deepEqual([...target], new Array(8).fill(7));
  assert.equal(lib.gm_memcpy(target, 8, source, 16, 9), Status.invalid_argument);
  assert.equal(lib.gm_memcpy(source, 16, target, 8, 9), Status.invalid_argument);
  assert.equal(
    lib.gm_memcpy(source.subarray(0, 8), 8, source.subarray(4), 12, 8),
    Status.invalid_argument,
  );
  assert.equal(lib.gm_memcpy(source.subarray(0, 8), 8, source.subarray(8), 8, 8), Status.ok);
});

Deno.test("a failed gm_read keeps its detail record for gm_last_detail, on its own thread", async () => {
  const lib = native();
  const path = await Deno.makeTempFile();
  await Deno.writeFile(path, new Uint8Array(3 * 4096).fill(5));
  const request = { path, mode: MODE.read, offset: 0n, length: undefined };
  const { status, result } = openNative(request);
  assert.equal(status, Status.ok);
  const detail = new Uint8Array(DETAIL.sizeBytes);
  try {
    // A real fault: the file is cut to one page under the map, the read crosses the new end.
    await Deno.truncate(path, 4096);
    const target = new Uint8Array(2 * 4096);
    assert.equal(lib.gm_read(result.handle, 1000, target, target.byteLength), Status.io);
    assert.equal(lib.gm_last_detail(detail), Status.ok);
    const record = decodeDetail(new DataView(detail.buffer));
    assert.equal(record.bytesDone, 4096 - 1000);
    assert.equal(record.faultWindowOffset, 4096);
    assert.equal(record.signal, 7); // SIGBUS
    assert.equal(target[0], 5);
    // Another thread has a record of its own: a Web Worker sees none of this failure.
    const worker = new Worker(new URL("./abi_detail_worker.ts", import.meta.url), {
      type: "module",
    });
    const seen = await new Promise<number[]>((resolve, reject) => {
      worker.onmessage = (event: MessageEvent<number[]>) => resolve(event.data);
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault();
        reject(new Error(`the Web Worker failed: ${event.message}`));
      };
    });
    worker.terminate();
    assert.deepEqual(seen, new Array(DETAIL.sizeBytes).fill(0));
    // A later failure replaces the record, even one without details (a closed handle).
    assert.equal(lib.gm_close(result.handle), Status.ok);
    assert.equal(lib.gm_read(result.handle, 0, target, 8), Status.bad_handle);
    assert.equal(lib.gm_last_detail(detail), Status.ok);
    assert.deepEqual([...detail], new Array(DETAIL.sizeBytes).fill(0));
  } finally {
    lib.gm_close(result.handle);
    await Deno.remove(path);
  }
});
