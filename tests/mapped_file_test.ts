import assert from "node:assert/strict";
import { GuardmapError, MapClosedError, MappedFile } from "../mod.ts";
import {
  assertBytes,
  mappingsOf,
  openDescriptors,
  pattern,
  scratch,
  writePattern,
} from "./util.ts";

Deno.test("mode r: reads any window, refuses writes", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const bytes = writePattern(path, 100_000);
  using map = MappedFile.open(path, { offset: 12_345, length: 50_000 });
  assert.equal(map.offset, 12_345);
  assert.equal(map.byteLength, 50_000);
  assert.equal(map.mode, "r");
  const target = new Uint8Array(1000);
  assert.equal(map.read(target, 49_000), 1000);
  assertBytes(target, bytes.subarray(12_345 + 49_000, 12_345 + 50_000));
  assert.throws(
    () => map.write(new Uint8Array(1), 0),
    (error: unknown) => error instanceof GuardmapError && error.code === "READ_ONLY_MAP",
  );
  assert.deepEqual(Deno.readFileSync(path), bytes);
});

Deno.test("mode r: the window defaults to the rest of the file", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 10_000);
  using map = MappedFile.open(path, { offset: 4_000n });
  assert.equal(map.byteLength, 6_000);
});

Deno.test("mode r+: writes reach the file, at any offset", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const bytes = writePattern(path, 70_000);
  using map = MappedFile.open(path, { mode: "r+", writes: "map", offset: 65_537, length: 4_000 });
  const source = new Uint8Array([1, 2, 3, 4, 5]);
  assert.equal(map.write(source, 3_995), 5);
  map.flush();
  bytes.set(source, 65_537 + 3_995);
  assert.deepEqual(Deno.readFileSync(path), bytes);
});

Deno.test("mode w+: creates, truncates and sizes the file to offset + length", () => {
  using tmp = scratch();
  const path = tmp.path("created.bin");
  Deno.writeFileSync(path, new Uint8Array(1_000_000).fill(9)); // Truncated by w+.
  using map = MappedFile.open(path, { mode: "w+", writes: "map", offset: 8_192, length: 100 });
  assert.equal(Deno.statSync(path).size, 8_292);
  const before = new Uint8Array(100);
  map.read(before, 0);
  assert.deepEqual(before, new Uint8Array(100));
  map.write(new Uint8Array([7, 7]), 98);
  map.flush();
  const file = Deno.readFileSync(path);
  assert.equal(file.length, 8_292);
  assert.deepEqual(file.subarray(8_290), new Uint8Array([7, 7]));
  assert.equal(file.subarray(0, 8_290).every((byte) => byte === 0), true);
});

Deno.test("mode c: writes are private and never reach the file", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const bytes = writePattern(path, 20_000);
  {
    using map = MappedFile.open(path, { mode: "c" });
    map.write(new Uint8Array(20_000).fill(1), 0);
    map.flush();
    const seen = new Uint8Array(3);
    map.read(seen, 100);
    assertBytes(seen, new Uint8Array([1, 1, 1]));
    assert.throws(() => map.advise("dontneed"), GuardmapError);
  }
  assert.deepEqual(Deno.readFileSync(path), bytes);
});

Deno.test("typed helpers read and write elements at an element index", () => {
  using tmp = scratch();
  const path = tmp.path("floats.bin");
  using map = MappedFile.open(path, { mode: "w+", writes: "map", length: 8 * 16 });
  map.writeArray(new Float64Array([1.25, -2.5, 1e300]), 5);
  assert.deepEqual(map.readArray(Float64Array, 5, 3), new Float64Array([1.25, -2.5, 1e300]));
  assert.deepEqual(map.readArray(Float64Array, 4, 1), new Float64Array([0]));
  map.writeArray(new BigInt64Array([-5n]), 0);
  assert.deepEqual(map.readArray(BigInt64Array, 0, 1), new BigInt64Array([-5n]));
  // Little-endian on x86_64 and aarch64, as documented.
  const raw = new Uint8Array(8);
  map.read(raw, 5 * 8);
  assert.equal(new DataView(raw.buffer).getFloat64(0, true), 1.25);
  assert.throws(() => map.readArray(Float64Array, 14, 3), RangeError);
  assert.throws(() => map.readArray(Float64Array, -1, 1), RangeError);
});

Deno.test("read and write accept any ArrayBufferView, honouring its byteOffset", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const bytes = writePattern(path, 4_096);
  using map = MappedFile.open(path, { mode: "r+", writes: "map" });
  const backing = new Uint8Array(64);
  const window = new DataView(backing.buffer, 8, 16);
  map.read(window, 100);
  assert.deepEqual(backing.subarray(8, 24), bytes.subarray(100, 116));
  assert.equal(backing[7], 0);
  assert.equal(backing[24], 0);
  const words = new Uint16Array([0xbeef]);
  map.write(words, 10);
  const check = new Uint8Array(2);
  map.read(check, 10);
  assertBytes(check, new Uint8Array([0xef, 0xbe]));
});

Deno.test("ranges outside the window are RangeErrors and copy nothing", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 1_000);
  using map = MappedFile.open(path, { mode: "r+" });
  const target = new Uint8Array(10).fill(0xee);
  for (const position of [991, 1_000, 1_001, -1, 0.5, NaN, Infinity, 2 ** 60]) {
    assert.throws(() => map.read(target, position), RangeError, `position ${position}`);
  }
  assert.equal(target.every((byte) => byte === 0xee), true);
  assert.throws(() => map.write(new Uint8Array(2), 999), RangeError);
  assert.throws(() => map.flush({ position: 900, length: 200 }), RangeError);
  assert.equal(map.read(new Uint8Array(0), 1_000), 0);
});

Deno.test("flush, advise and prefault succeed on a healthy file", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 1 << 20);
  using map = MappedFile.open(path, { mode: "r+", offset: 3, length: (1 << 20) - 3 });
  for (const advice of ["normal", "sequential", "random", "willneed", "dontneed"] as const) {
    map.advise(advice);
  }
  map.advise("willneed", { position: 5_000, length: 10 });
  map.prefault();
  map.prefault({ write: true, position: 4_097, length: 1 });
  map.write(new Uint8Array([1]), 0);
  map.flush({ position: 0, length: 1 });
  map.flush();
  assert.throws(() => map.advise("bogus" as "normal"), TypeError);
});

Deno.test("close is idempotent, detaches views, and frees the mapping and descriptor", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 10_000);
  const descriptors = openDescriptors();
  const map = MappedFile.open(path);
  assert.equal(mappingsOf(path).length, 1);
  assert.equal(openDescriptors(), descriptors + 1);
  const view = map.unsafeView();
  const words = new Uint32Array(view.buffer, 4, 2);
  assert.equal(view[1], pattern(1, 1)[0]);
  map.close();
  map.close();
  assert.equal(map.closed, true);
  assert.equal(view.length, 0);
  assert.equal(view[1], undefined);
  assert.equal(words.length, 0);
  assert.equal(mappingsOf(path).length, 0);
  assert.equal(openDescriptors(), descriptors);
  assert.throws(() => map.read(new Uint8Array(1)), MapClosedError);
  assert.throws(() => map.write(new Uint8Array(1)), MapClosedError);
  assert.throws(() => map.flush(), MapClosedError);
  assert.throws(() => map.unsafeView(), MapClosedError);
  assert.throws(() => map.fileSize(), MapClosedError);
});

Deno.test("using disposes the map at the end of the scope", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 100);
  {
    using _map = MappedFile.open(path);
    assert.equal(mappingsOf(path).length, 1);
  }
  assert.equal(mappingsOf(path).length, 0);
});

Deno.test("open accepts a file: URL", () => {
  using tmp = scratch();
  const path = tmp.path("url.bin");
  writePattern(path, 100);
  using map = MappedFile.open(new URL(`file://${path}`));
  assert.equal(map.byteLength, 100);
});

Deno.test("a map whose file is deleted keeps working on the old inode", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const bytes = writePattern(path, 8_192);
  using map = MappedFile.open(path, { mode: "r+", writes: "map" });
  Deno.removeSync(path);
  const target = new Uint8Array(8_192);
  map.read(target, 0);
  assertBytes(target, bytes);
  map.write(new Uint8Array([1]), 0);
  map.flush();
});

Deno.test("a map whose file is renamed over keeps working on the old inode", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const bytes = writePattern(path, 8_192);
  using map = MappedFile.open(path, { mode: "r+", writes: "map" });
  const replacement = tmp.path("new.bin");
  Deno.writeFileSync(replacement, new Uint8Array(100).fill(1));
  Deno.renameSync(replacement, path);
  const target = new Uint8Array(8_192);
  map.read(target, 0);
  assertBytes(target, bytes);
  map.write(new Uint8Array([42]), 0);
  map.flush();
  // The name now belongs to the new file, which the map never touches.
  assert.deepEqual(Deno.readFileSync(path), new Uint8Array(100).fill(1));
  assert.equal(map.fileSize(), 8_192);
});
