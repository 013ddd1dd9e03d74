// The default `writes` ("auto"): through the file descriptor in modes r+ and w+ on Linux without
// salvage, through the map in mode c and with salvage. What a user of the default observes on
// real faults: a full tmpfs and a full FUSE file system answer ENOSPC from `write` itself (no
// signal), a refused fsync still fails `flush`, and the map carries on. tests/pwrite_test.ts
// runs its truncation, RLIMIT_FSIZE, pool and faultfs EIO/ENOSPC tests with the default too.
import assert from "node:assert/strict";
import { MappedFile, MappedIOError } from "../mod.ts";
import { fuseTest, mountFaultFs } from "./fuse/fault_fs.ts";
import { mountSmall, mountTest } from "./small_fs.ts";
import { resolveWrites } from "../ffi/open_options.ts";
import { assertBytes, pattern, scratch, sparseFile, writePattern } from "./util.ts";

const PAGE = 4_096;
const MiB = 1024 * 1024;

/** Checks a MappedIOError of `write` at `fileOffset` that came from the descriptor, not a signal. */
function writeRefused(code: string, fileOffset: number) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof MappedIOError, `${error}`);
    assert.equal(error.code, code);
    assert.equal(error.operation, "write");
    assert.equal(error.fileOffset, fileOffset);
    assert.equal(error.bytesTransferred, 0);
    assert.equal(error.signal, undefined, "no signal: the error came from pwrite");
    return true;
  };
}

Deno.test('default writes: "c" and salvage maps write through the map; "auto" is the default', () => {
  using dir = scratch();
  const path = dir.path("data.bin");
  const bytes = writePattern(path, 4 * PAGE);
  // A salvage map opens with the default (a descriptor write would be refused) and writes
  // through the map: inside the page that holds a new end in its middle, the kernel takes the
  // write without a fault, where a write through the descriptor throws (tests/pwrite_test.ts).
  {
    using map = MappedFile.open(path, { mode: "r+", salvage: true });
    Deno.truncateSync(path, 3 * PAGE - 1_000);
    assert.equal(map.write(new Uint8Array(10).fill(7), 3 * PAGE - 900), 10);
    assert.equal(Deno.statSync(path).size, 3 * PAGE - 1_000);
  }
  writePattern(path, 4 * PAGE);
  {
    using map = MappedFile.open(path, { mode: "c" });
    map.write(new Uint8Array(PAGE).fill(1), 0);
    map.flush();
    const seen = new Uint8Array(4);
    map.read(seen, 0);
    assertBytes(seen, new Uint8Array(4).fill(1));
  }
  assertBytes(Deno.readFileSync(path), bytes, "mode c never reaches the file");
  // "auto" spelled out is the default: through the descriptor in mode r+.
  using map = MappedFile.open(path, { mode: "r+", writes: "auto" });
  Deno.truncateSync(path, 3 * PAGE - 1_000);
  assert.throws(() => map.write(new Uint8Array(10), 3 * PAGE - 900), MappedIOError);
  assert.equal(Deno.statSync(path).size, 3 * PAGE - 1_000);
});

mountTest("default writes on a full tmpfs: ENOSPC from write itself, the map carries on", [
  "mount",
], () => {
  using fs = mountSmall("tmpfs", 4 * MiB);
  const path = `${fs.dir}/sparse.bin`;
  sparseFile(path, 8 * MiB); // Larger than the file system: its holes cannot all be filled.
  const filler = `${fs.dir}/filler.bin`;
  // Take every free block, so that the first write into a hole finds none.
  try {
    Deno.writeFileSync(filler, new Uint8Array(4 * MiB));
  } catch (error) {
    assert.ok(error instanceof Error && /No space left/.test(error.message), `${error}`);
  }
  using map = MappedFile.open(path, { mode: "r+" });
  const source = pattern(0, PAGE);
  assert.throws(() => map.write(source, 5 * MiB), writeRefused("ENOSPC", 5 * MiB));
  assert.equal(map.fileSize(), 8 * MiB, "the refused write changed nothing");
  // Once there is space, the same map takes the same write, and the file holds it.
  Deno.removeSync(filler);
  assert.equal(map.write(source, 5 * MiB), PAGE);
  map.flush();
  const seen = new Uint8Array(PAGE);
  map.read(seen, 5 * MiB);
  assertBytes(seen, source, "read back through the map");
  using file = Deno.openSync(path);
  file.seekSync(5 * MiB, Deno.SeekMode.Start);
  const back = new Uint8Array(PAGE);
  assert.equal(file.readSync(back), PAGE);
  assertBytes(back, source);
});

fuseTest(
  "default writes: w+ on a file system that cannot reserve blocks, a full disk surfaces at write",
  async () => {
    await using fs = await mountFaultFs();
    // As in fuse_fault_test.ts, where a write through the map only fails at flush: no
    // reservation (EOPNOTSUPP), then every WRITE answers ENOSPC.
    await fs.fail({ operations: "fallocate", errno: "EOPNOTSUPP" });
    await fs.fail({ operations: "write", errno: "ENOSPC" });
    using map = MappedFile.open(fs.path("new.bin"), { mode: "w+", length: 16 * PAGE });
    assert.throws(() => map.write(new Uint8Array(PAGE).fill(7), 0), writeRefused("ENOSPC", 0));
    map.flush(); // Nothing was taken, so nothing is lost: flush has nothing to report.
    assertBytes(Deno.readFileSync(fs.backing("new.bin")).subarray(0, PAGE), new Uint8Array(PAGE));
    await fs.heal();
    map.write(new Uint8Array(PAGE).fill(7), 0);
    map.flush();
    assertBytes(
      Deno.readFileSync(fs.backing("new.bin")).subarray(0, PAGE),
      new Uint8Array(PAGE).fill(7),
    );
  },
);

fuseTest("default writes: a refused fsync fails flush, and a retry succeeds", async () => {
  await using fs = await mountFaultFs();
  Deno.writeFileSync(fs.backing("data.bin"), pattern(0, 4 * PAGE));
  using map = MappedFile.open(fs.path("data.bin"), { mode: "r+" });
  const data = new Uint8Array(PAGE).fill(0xd0);
  map.write(data, 2 * PAGE);
  await fs.fail({ operations: "fsync", file: "data.bin", times: 1 });
  assert.throws(
    () => map.flush(),
    (error: unknown) => error instanceof MappedIOError && error.operation === "flush",
  );
  const status = await fs.status();
  assert.equal(status.operations.fsync, 1, "the FSYNC reached the file system");
  assertBytes(Deno.readFileSync(fs.backing("data.bin")).subarray(2 * PAGE, 3 * PAGE), data);
  map.flush();
});

fuseTest(
  "default writes, write-back cache: a failed write-back fails flush until the device heals",
  async () => {
    // With FUSE's writeback cache, write(2) only dirties the page cache, as on ext4: a failing
    // device shows at write-back. The pages were dirtied through the descriptor, not the map.
    await using fs = await mountFaultFs({ writebackCache: true });
    const original = pattern(0, 16 * PAGE);
    Deno.writeFileSync(fs.backing("data.bin"), original);
    using map = MappedFile.open(fs.path("data.bin"), { mode: "r+" });
    const data = new Uint8Array(PAGE).fill(0xa5);
    await fs.fail({ operations: "write", file: "data.bin", errno: "EIO" });
    assert.equal(map.write(data, 5 * PAGE), PAGE, "the write only reaches the page cache");
    const seen = new Uint8Array(PAGE);
    map.read(seen, 5 * PAGE);
    assertBytes(seen, data, "the map sees the bytes at once");
    const flushFails = (when: string) =>
      assert.throws(
        () => map.flush(),
        (error: unknown) => {
          assert.ok(error instanceof MappedIOError, `${when}: ${error}`);
          assert.equal(error.operation, "flush", when);
          assert.equal(error.code, "EIO", when);
          return true;
        },
      );
    flushFails("the first flush");
    // The kernel marked the pages clean when their write-back failed; guardmap dirtied them
    // again, so the next flush writes them again and fails again.
    flushFails("a second flush while the device fails");
    const backing = () => Deno.readFileSync(fs.backing("data.bin")).subarray(5 * PAGE, 6 * PAGE);
    assertBytes(backing(), original.subarray(5 * PAGE, 6 * PAGE), "nothing reached the file");
    await fs.heal();
    map.flush();
    assertBytes(backing(), data, "after the device healed, flush wrote the page");
    assert.ok((await fs.status()).operations.write >= 3, "every flush sent a WRITE");
  },
);

Deno.test("default writes: the choice by mode, salvage and platform", () => {
  // Windows has no write through the descriptor: the default is the map there, and asking for
  // "pwrite" says why (checked here without Windows, through the function open uses).
  assert.equal(resolveWrites(undefined, "r+", false, "windows"), "map");
  assert.throws(
    () => resolveWrites("pwrite", "w+", false, "windows"),
    /Linux only, not on windows/,
  );
  for (const mode of ["r+", "w+"] as const) {
    assert.equal(resolveWrites(undefined, mode, false, "linux"), "pwrite");
    assert.equal(resolveWrites("auto", mode, false, "linux"), "pwrite");
    assert.equal(resolveWrites(undefined, mode, true, "linux"), "map");
    assert.equal(resolveWrites("map", mode, false, "linux"), "map");
  }
  for (const mode of ["r", "c"] as const) {
    assert.equal(resolveWrites(undefined, mode, false, "linux"), "map");
  }
  assert.throws(() => resolveWrites(null, "r+", false, "linux"), /got null/);
});
