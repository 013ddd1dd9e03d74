// Problems 2 and 3: only the window is mapped, and offsets past 4 GiB work end to end.
import assert from "node:assert/strict";
import { MappedFile } from "../mod.ts";
import { assertBytes, mappingsOf, scratch, sparseFile, virtualSize } from "./util.ts";

const GiB = 2 ** 30;
const MiB = 2 ** 20;

Deno.test("a window at 8 GiB + 12345 of a 9 GiB sparse file: map writes, FsFile reads", () => {
  using tmp = scratch();
  const path = tmp.path("sparse.bin");
  sparseFile(path, 9 * GiB);
  const offset = 8 * GiB + 12_345;
  const message = new TextEncoder().encode("written through the map past 4 GiB");
  {
    using map = MappedFile.open(path, { mode: "r+", writes: "map", offset, length: MiB });
    assert.equal(map.offset, offset);
    map.write(message, 1_000);
    map.flush();
  }
  using file = Deno.openSync(path);
  file.seekSync(offset + 1_000, Deno.SeekMode.Start);
  const seen = new Uint8Array(message.length);
  assert.equal(file.readSync(seen), message.length);
  assertBytes(seen, message);
});

Deno.test("a window at 8 GiB + 12345 of a 9 GiB sparse file: FsFile writes, map reads", () => {
  using tmp = scratch();
  const path = tmp.path("sparse.bin");
  sparseFile(path, 9 * GiB);
  const offset = 8 * GiB + 12_345;
  const message = new TextEncoder().encode("written through Deno.FsFile past 4 GiB");
  {
    using file = Deno.openSync(path, { write: true });
    file.seekSync(offset + 77, Deno.SeekMode.Start);
    file.writeSync(message);
  }
  using map = MappedFile.open(path, { offset: BigInt(offset), length: 4_096 });
  const seen = new Uint8Array(message.length);
  map.read(seen, 77);
  assertBytes(seen, message);
  // The byte before the window's first byte is not part of the window.
  assert.throws(() => map.read(new Uint8Array(1), -1), RangeError);
});

Deno.test("mapping 1 MiB at 6 GiB grows the address space by about 1 MiB, not 6 GiB", () => {
  using tmp = scratch();
  const path = tmp.path("sparse.bin");
  sparseFile(path, 7 * GiB);
  const before = virtualSize();
  using map = MappedFile.open(path, { offset: 6 * GiB + 100, length: MiB });
  const grown = virtualSize() - before;
  assert.ok(grown >= MiB && grown < 8 * MiB, `VmSize grew by ${grown} bytes`);
  // The kernel mapping itself: one page-aligned range starting at 6 GiB, 1 MiB + 1 page long.
  const lines = mappingsOf(path);
  assert.equal(lines.length, 1, lines.join("\n"));
  const [range, , fileOffset] = lines[0].split(/\s+/);
  const [start, end] = range.split("-").map((hex) => parseInt(hex, 16));
  assert.equal(end - start, MiB + 4_096);
  assert.equal(parseInt(fileOffset, 16), 6 * GiB);
  map.read(new Uint8Array(MiB), 0);
});

Deno.test("w+ at a high offset leaves the file sparse before the window", () => {
  using tmp = scratch();
  const path = tmp.path("created.bin");
  using map = MappedFile.open(path, {
    mode: "w+",
    writes: "map",
    offset: 5 * GiB + 1,
    length: 4_096,
  });
  const info = Deno.statSync(path);
  assert.equal(info.size, 5 * GiB + 1 + 4_096);
  // Only the window's blocks are reserved (blocks are 512-byte units).
  assert.ok((info.blocks ?? 0) * 512 < 64 * 1024, `blocks: ${info.blocks}`);
  map.write(new Uint8Array([42]), 4_095);
  map.flush();
  using file = Deno.openSync(path);
  file.seekSync(5 * GiB + 4_096, Deno.SeekMode.Start);
  const last = new Uint8Array(1);
  file.readSync(last);
  assert.equal(last[0], 42);
});
