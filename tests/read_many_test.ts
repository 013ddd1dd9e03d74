// MappedFile.readMany (one native call for many ranges) and the large guarded read (the
// streaming copy for reads of 32 MiB or more, zig/src/guard.zig stream_length_bytes_min): results byte for byte against the file, every
// bad argument refused before anything is copied, and real faults (a file truncated under the
// map; faultfs answering EIO) reported with the exact range, position and byte count.
import assert from "node:assert/strict";
import { MapClosedError, MappedFile, MappedIOError, MapPool, WorkerCrashedError } from "../mod.ts";
import { fuseTest, mountFaultFs } from "./fuse/fault_fs.ts";
import { assertBytes, pageSize, pattern, poolTimeouts, scratch, writePattern } from "./util.ts";

const PAGE = pageSize();
const MIB = 1_048_576;
/** Reads of at least this many bytes take the streaming copy (guard.stream_length_bytes_min). */
const STREAM_BYTES = 32 * MIB;

/** Seeded xorshift32 positions in `[0, span - length]`. */
function positionsFor(count: number, span: number, length: number, seed: number): Float64Array {
  const positions = new Float64Array(count);
  let state = seed;
  for (let i = 0; i < count; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    positions[i] = (state >>> 0) % (span - length + 1);
  }
  return positions;
}

/** What readMany must produce: range i of the file at `i * length`. */
function expectedGather(
  file: Uint8Array,
  positions: ArrayLike<number>,
  length: number,
): Uint8Array {
  const expected = new Uint8Array(positions.length * length);
  for (let i = 0; i < positions.length; i++) {
    expected.set(file.subarray(positions[i], positions[i] + length), i * length);
  }
  return expected;
}

Deno.test("readMany gathers random ranges of 64 B and 4 KiB, at a window offset too", () => {
  using dir = scratch();
  const file = writePattern(dir.path("data.bin"), 2 * MIB);
  for (const offset of [0, 12_345]) {
    using map = MappedFile.open(dir.path("data.bin"), { offset });
    for (const length of [1, 64, 4_096]) {
      const positions = positionsFor(500, map.byteLength, length, 0x9e3779b9 ^ length);
      const target = new Uint8Array(positions.length * length);
      assert.equal(map.readMany(target, positions, length), target.length);
      assertBytes(target, expectedGather(file.subarray(offset), positions, length), `${length} B`);
    }
  }
});

Deno.test("readMany takes a plain array, an empty list, zero-length ranges and a larger target", () => {
  using dir = scratch();
  writePattern(dir.path("data.bin"), 100);
  using map = MappedFile.open(dir.path("data.bin"));
  const target = new Uint8Array(10).fill(0xee);
  assert.equal(map.readMany(target, [7, 0], 3), 6);
  assertBytes(target.subarray(0, 6), Uint8Array.of(...pattern(7, 3), ...pattern(0, 3)));
  assertBytes(target.subarray(6), new Uint8Array(4).fill(0xee), "bytes past the gathered ones");
  assert.equal(map.readMany(target, [], 64), 0);
  assert.equal(map.readMany(target, [0, 100], 0), 0);
  const words = new Uint32Array(2);
  assert.equal(map.readMany(words, new Float64Array([0, 4]), 4), 8);
  assertBytes(new Uint8Array(words.buffer), pattern(0, 8));
});

Deno.test("readMany refuses every bad argument before it copies anything", () => {
  using dir = scratch();
  writePattern(dir.path("data.bin"), 8 * PAGE);
  const map = MappedFile.open(dir.path("data.bin"));
  const target = new Uint8Array(4 * 64).fill(0xee);
  const untouched = (): void => assertBytes(target, new Uint8Array(target.length).fill(0xee));
  const cases: [number[], number, RegExp][] = [
    [
      [0, 64, 8 * PAGE - 63, 128],
      64,
      new RegExp(`range 2 \\[${8 * PAGE - 63}, ${8 * PAGE + 1}\\) is not inside the window`),
    ],
    [[0, -1], 64, /range 1 \[-1, 63\)/],
    [[0, 0.5], 64, /range 1 \[0\.5/],
    [[Number.NaN], 64, /range 0 \[NaN/],
    [[2 ** 60], 64, /range 0/],
    [[0], -1, /length must be a non-negative integer, got -1/],
    [[0], 1.5, /length must be a non-negative integer/],
    [[0, 0, 0, 0, 0], 64, /5 ranges of 64 bytes need a target of 320 bytes, got 256/],
    [[8 * PAGE + 1], 0, /range 0/],
  ];
  for (const [positions, length, message] of cases) {
    assert.throws(() => map.readMany(target, positions, length), RangeError);
    assert.throws(() => map.readMany(target, positions, length), message);
    untouched();
  }
  map.close();
  assert.throws(() => map.readMany(target, [0], 64), MapClosedError);
  untouched();
});

Deno.test("readMany with positions inside its own target: memory-safe, refused once overwritten", () => {
  using dir = scratch();
  const path = dir.path("data.bin");
  // The file's bytes read as float64s alternate 1e18 and NaN: never a valid position.
  const poison = new Float64Array(512);
  for (let i = 0; i < poison.length; i++) poison[i] = i % 2 === 0 ? 1e18 : Number.NaN;
  const file = new Uint8Array(4 * PAGE);
  file.set(new Uint8Array(poison.buffer));
  Deno.writeFileSync(path, file);
  using map = MappedFile.open(path);

  // Up to 256 ranges the library takes the positions before it copies anything: the call reads
  // what the positions said when it started, though range 0 overwrites them.
  const small = new Uint8Array(48);
  const positions = new Float64Array(small.buffer, 0, 3);
  positions.set([0, 8, 16]);
  assert.equal(map.readMany(small, positions, 16), 48);
  assertBytes(small, expectedGather(file, [0, 8, 16], 16));

  // Longer lists are taken 256 at a time: here the first 256 ranges overwrite the next
  // positions with the file's bytes, which the library refuses instead of following them.
  const big = new Uint8Array(300 * 8 * 2);
  const many = new Float64Array(big.buffer, 0, 300);
  many.fill(0);
  assert.throws(() => map.readMany(big, many, 16), /a position changed while/);
  // The process is fine and the map still works.
  const again = new Uint8Array(16);
  assert.equal(map.readMany(again, [0], 16), 16);
  assertBytes(again, file.subarray(0, 16));
});

Deno.test("readMany across a truncated end: the range, the bytes before it, then carries on", () => {
  using dir = scratch();
  const path = dir.path("data.bin");
  const file = writePattern(path, 16 * PAGE);
  using map = MappedFile.open(path);
  const kept = 3 * PAGE;
  Deno.truncateSync(path, kept);
  const length = 100;
  const positions = [0, PAGE, kept - 30, 0];
  const target = new Uint8Array(positions.length * length);
  assert.throws(
    () => map.readMany(target, positions, length),
    (error: unknown) => {
      assert.ok(error instanceof MappedIOError, `${error}`);
      assert.equal(error.rangeIndex, 2);
      assert.equal(error.reason, "truncated");
      assert.equal(error.position, kept);
      assert.equal(error.fileOffset, kept);
      assert.equal(error.bytesTransferred, 2 * length + 30);
      assert.match(
        error.message,
        new RegExp(`^readMany, range 2 of 4: read failed at file offset ${kept}`),
      );
      return true;
    },
  );
  assertBytes(
    target.subarray(0, 2 * length + 30),
    expectedGather(file, [0, PAGE, kept - 30], length).subarray(0, 2 * length + 30),
  );
  // The process carries on; ranges inside the file still gather.
  assert.equal(map.readMany(target, [kept - length, 0], length), 2 * length);
  assertBytes(target.subarray(0, length), file.subarray(kept - length, kept));
});

Deno.test("a read of 32 MiB or more (the streaming copy) is exact, also across a truncated end", () => {
  using dir = scratch();
  const path = dir.path("data.bin");
  const file = writePattern(path, STREAM_BYTES + 4 * MIB);
  using map = MappedFile.open(path);
  for (const [position, shift] of [[0, 0], [3, 1], [PAGE - 1, 63], [PAGE * 7 + 61, 17]]) {
    const length = STREAM_BYTES + 2 * MIB + 333;
    const buffer = new Uint8Array(length + 64);
    const target = buffer.subarray(shift, shift + length);
    assert.equal(map.read(target, position), length);
    assertBytes(target, file.subarray(position, position + length), `at ${position}+${shift}`);
  }
  const kept = STREAM_BYTES / 2 + 3 * PAGE;
  Deno.truncateSync(path, kept);
  for (const position of [0, 5, 1_000_003]) {
    const target = new Uint8Array(STREAM_BYTES + 4 * MIB - position);
    assert.throws(
      () => map.read(target, position),
      (error: unknown) => {
        assert.ok(error instanceof MappedIOError, `${error}`);
        assert.equal(error.fileOffset, kept);
        assert.equal(error.bytesTransferred, kept - position);
        assert.equal(error.rangeIndex, undefined);
        return true;
      },
    );
    assertBytes(target.subarray(0, kept - position), file.subarray(position, kept));
  }
});

fuseTest(
  "EIO under a streaming read (34 MiB) and under readMany: the exact page, the bytes before it, then healed",
  async () => {
    await using fs = await mountFaultFs();
    const bytes = pattern(0, STREAM_BYTES + 2 * MIB);
    Deno.writeFileSync(fs.backing("data.bin"), bytes);
    using map = MappedFile.open(fs.path("data.bin"));
    const failingPage = STREAM_BYTES - 3 * MIB + 5 * PAGE;
    await fs.fail({ operations: "read", file: "data.bin", offset: failingPage + 10, length: 1 });

    const target = new Uint8Array(bytes.length - 7);
    assert.throws(
      () => map.read(target, 7),
      (error: unknown) => {
        assert.ok(error instanceof MappedIOError, `${error}`);
        assert.equal(error.code, "EIO");
        assert.equal(error.reason, "io");
        assert.equal(error.fileOffset, failingPage);
        assert.equal(error.bytesTransferred, failingPage - 7);
        return true;
      },
    );
    assertBytes(target.subarray(0, failingPage - 7), bytes.subarray(7, failingPage));

    const positions = new Float64Array([0, failingPage - 64, failingPage + PAGE]);
    const gathered = new Uint8Array(positions.length * 128);
    assert.throws(
      () => map.readMany(gathered, positions, 128),
      (error: unknown) => {
        assert.ok(error instanceof MappedIOError, `${error}`);
        assert.equal(error.code, "EIO");
        assert.equal(error.rangeIndex, 1);
        assert.equal(error.fileOffset, failingPage);
        assert.equal(error.bytesTransferred, 128 + 64);
        return true;
      },
    );

    await fs.heal();
    assert.equal(map.read(target, 7), target.length);
    assertBytes(target, bytes.subarray(7));
    assert.equal(map.readMany(gathered, positions, 128), gathered.length);
    assertBytes(gathered, expectedGather(bytes, positions, 128));
  },
);

Deno.test("pool readMany: the same bytes as in-process, split over many requests of a small staging area", async () => {
  using dir = scratch();
  const file = writePattern(dir.path("data.bin"), 4 * MIB);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1, stagingBytes: 65_536 });
  const pooled = await pool.open(dir.path("data.bin"), { offset: 777 });
  for (const length of [1, 64, 4_096, 32_768]) {
    // 64 KiB of staging holds 15 ranges of 4 KiB with their positions: 100 ranges are 7 requests.
    const positions = positionsFor(100, pooled.byteLength, length, 0x2545f491 ^ length);
    const target = new Uint8Array(positions.length * length);
    assert.equal(await pooled.readMany(target, positions, length), target.length);
    assertBytes(target, expectedGather(file.subarray(777), positions, length), `${length} B`);
  }
  assert.equal(await pooled.readMany(new Uint8Array(0), [], 8), 0);
});

Deno.test("pool readMany: zero-length ranges into an empty target", async () => {
  using dir = scratch();
  writePattern(dir.path("data.bin"), 4 * PAGE);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
  const pooled = await pool.open(dir.path("data.bin"));
  assert.equal(await pooled.readMany(new Uint8Array(0), [0, 1, 4 * PAGE], 0), 0);
  await assert.rejects(() => pooled.readMany(new Uint8Array(0), [4 * PAGE + 1], 0), RangeError);
});

Deno.test("pool readMany refuses bad ranges before anything is copied, and over-long ranges", async () => {
  using dir = scratch();
  writePattern(dir.path("data.bin"), 64 * PAGE);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1, stagingBytes: 65_536 });
  const pooled = await pool.open(dir.path("data.bin"));
  // Range 40 is in the third request: the first two must not have been copied either.
  const positions = Array.from({ length: 50 }, (_, i) => i * 64);
  positions[40] = 64 * PAGE - 10;
  const target = new Uint8Array(50 * 4_096).fill(0xee);
  await assert.rejects(() => pooled.readMany(target, positions, 4_096), /range 40 \[262134,/);
  assertBytes(target, new Uint8Array(target.length).fill(0xee));
  await assert.rejects(() => pooled.readMany(target, [0], 32_769), /staging area/);
  await assert.rejects(() => pooled.readMany(target, [0.5], 8), RangeError);
  await pooled.close();
  await assert.rejects(() => pooled.readMany(target, [0], 8), MapClosedError);
});

Deno.test("pool readMany across a truncated end, in a later request: range, bytes, then carries on", async () => {
  using dir = scratch();
  const path = dir.path("data.bin");
  const file = writePattern(path, 64 * PAGE);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1, stagingBytes: 65_536 });
  const pooled = await pool.open(path);
  const kept = 40 * PAGE;
  Deno.truncateSync(path, kept);
  // 1 KiB ranges: 63 per request; the failing range 70 is in the second request.
  const length = 1_024;
  const positions = Array.from({ length: 80 }, (_, i) => (i * 997) % (kept - length));
  positions[70] = kept - 100;
  const target = new Uint8Array(positions.length * length);
  await assert.rejects(
    () => pooled.readMany(target, positions, length),
    (error: unknown) => {
      assert.ok(error instanceof MappedIOError, `${error}`);
      assert.equal(error.rangeIndex, 70);
      assert.equal(error.reason, "truncated");
      assert.equal(error.fileOffset, kept);
      assert.equal(error.bytesTransferred, 70 * length + 100);
      return true;
    },
  );
  assertBytes(
    target.subarray(0, 70 * length + 100),
    expectedGather(file, positions.slice(0, 71), length).subarray(0, 70 * length + 100),
  );
  assert.equal(pool.restarts, 0, "a guarded fault does not cost the worker");
  assert.equal(await pooled.readMany(target, [0, PAGE], length), 2 * length);
  assertBytes(target.subarray(0, length), file.subarray(0, length));
});

Deno.test("pool readMany: kill -9 of the worker mid-batch rejects with WorkerCrashedError, then works", async () => {
  using dir = scratch();
  const file = writePattern(dir.path("data.bin"), 64 * MIB);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
  const pooled = await pool.open(dir.path("data.bin"));
  const [pid] = pool.pids;
  // 64 MiB in 4 KiB ranges: many requests, run off the event loop, so the kill lands in flight.
  const positions = positionsFor(16_384, pooled.byteLength, 4_096, 7);
  const reading = pooled.readMany(new Uint8Array(16_384 * 4_096), positions, 4_096);
  await new Promise((resolve) => setTimeout(resolve, 5));
  Deno.kill(pid, "SIGKILL");
  try {
    await reading;
    await pooled.readMany(new Uint8Array(16), [0], 16); // A fast machine may finish first.
    assert.fail("a call on the killed worker succeeded");
  } catch (error) {
    assert.ok(error instanceof WorkerCrashedError, `${error}`);
    assert.equal(error.signal, "SIGKILL");
  }
  const again = new Uint8Array(2 * 64);
  assert.equal(await pooled.readMany(again, [10, 5 * MIB], 64), again.length);
  assertBytes(again, expectedGather(file, [10, 5 * MIB], 64));
  assert.equal(pool.restarts, 1);
});
