/**
 * Read benchmarks: guarded `MappedFile.read` against `pread` through `node:fs` (the baseline of
 * every group), `Deno.FsFile` seek + read, and copies out of the unguarded zero-copy view (the
 * ceiling: what the same copy costs without the guard, the FFI call and the handle lease).
 *
 * Run from the project root:
 *
 * ```sh
 * deno bench --allow-ffi --allow-read --allow-write --allow-env bench/
 * ```
 *
 * At load the module writes a 1 GiB file of non-zero bytes into a fresh temporary directory,
 * flushes it to the device (so no write-back runs during the measurements), reads it once so
 * the page cache is hot and faults the map's pages in. On Linux and macOS the file is unlinked
 * as soon as it is open, so a killed run leaves nothing behind; elsewhere it is removed on
 * `unload`.
 *
 * @module
 */
import { closeSync, openSync, readSync } from "node:fs";
import { MappedFile } from "../mod.ts";

const FILE_BYTES = 2 ** 30;
const CHUNK_BYTES = 2 ** 20;
/** A prime period, so the pattern does not line up with pages. Bytes run 1..251, never 0. */
const PATTERN_PERIOD = 251;
/** Random positions per size; a power of two so that the cursor wraps with a mask. */
const POSITION_COUNT = 4096;
const POSITION_MASK = POSITION_COUNT - 1;
const SEQUENTIAL_BYTES = 2 ** 28;
const SEED = 0x9e3779b9;

const directory: string = Deno.makeTempDirSync({ prefix: "guardmap-read-bench-" });
const path: string = `${directory}/data-1GiB.bin`;
let removed = false;

function removeDirectory(): void {
  if (removed) return;
  try {
    Deno.removeSync(directory, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  removed = true;
}

/** Writes `FILE_BYTES` of a non-zero pattern that shifts from one chunk to the next. */
function writeDataFile(): void {
  const pattern = new Uint8Array(CHUNK_BYTES + PATTERN_PERIOD);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i % PATTERN_PERIOD) + 1;
  using file: Deno.FsFile = Deno.openSync(path, { write: true, create: true, truncate: true });
  for (let chunk = 0; chunk < FILE_BYTES / CHUNK_BYTES; chunk++) {
    const shift = chunk % PATTERN_PERIOD;
    let rest: Uint8Array = pattern.subarray(shift, shift + CHUNK_BYTES);
    while (rest.byteLength > 0) rest = rest.subarray(file.writeSync(rest));
  }
  // Written back now, not while the benchmarks run; the pages stay in the page cache.
  file.syncDataSync();
}

/** Reads the whole file once so that every page is in the page cache. */
function warmPageCache(): void {
  using file: Deno.FsFile = Deno.openSync(path, { read: true });
  const chunk = new Uint8Array(CHUNK_BYTES);
  let total = 0;
  for (;;) {
    const count: number | null = file.readSync(chunk);
    if (count === null) break;
    total += count;
  }
  if (total !== FILE_BYTES) throw new Error(`read ${total} bytes of ${path}, not ${FILE_BYTES}`);
}

/** A small deterministic generator (xorshift32), so every run reads the same positions. */
function randomPositions(count: number, readBytes: number, seed: number): Float64Array {
  const positions = new Float64Array(count);
  const span = FILE_BYTES - readBytes + 1;
  let state = seed >>> 0;
  for (let i = 0; i < count; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    positions[i] = Math.floor((state / 2 ** 32) * span);
  }
  return positions;
}

try {
  writeDataFile();
  warmPageCache();
} catch (error) {
  removeDirectory(); // A full disk or a failed read leaves no 1 GiB file behind.
  throw error;
}

const map: MappedFile = MappedFile.open(path);
const fd: number = openSync(path, "r");
const denoFile: Deno.FsFile = Deno.openSync(path, { read: true });
if (Deno.build.os !== "windows") removeDirectory(); // The open handles keep the data alive.
// Steady state of a long-lived map: page tables filled, so no minor fault is timed.
map.prefault();
const view: Uint8Array = map.unsafeView();

globalThis.addEventListener("unload", (): void => {
  map.close();
  closeSync(fd);
  denoFile.close();
  removeDirectory();
});

/** pread through `node:fs`: one syscall per call, the baseline. */
function preadFully(target: Uint8Array, position: number): void {
  let done = 0;
  while (done < target.byteLength) {
    const count: number = readSync(fd, target, done, target.byteLength - done, position + done);
    if (count === 0) throw new Error(`pread hit the end of the file at ${position + done}`);
    done += count;
  }
}

/** `Deno.FsFile` seek + read: two calls into Deno's runtime. */
function seekReadFully(target: Uint8Array, position: number): void {
  denoFile.seekSync(position, Deno.SeekMode.Start);
  let done = 0;
  while (done < target.byteLength) {
    const count: number | null = denoFile.readSync(
      done === 0 ? target : target.subarray(done),
    );
    if (count === null) throw new Error(`read hit the end of the file at ${position + done}`);
    done += count;
  }
}

/** Checks once, before timing, that the three paths return the bytes of the view. */
function checkSameBytes(readBytes: number, positions: Float64Array): void {
  const byMap = new Uint8Array(readBytes);
  const byPread = new Uint8Array(readBytes);
  const bySeek = new Uint8Array(readBytes);
  for (const position of [positions[0], positions[POSITION_MASK], FILE_BYTES - readBytes]) {
    map.read(byMap, position);
    preadFully(byPread, position);
    seekReadFully(bySeek, position);
    const expected = view.subarray(position, position + readBytes);
    for (let i = 0; i < readBytes; i++) {
      if (expected[i] === 0 || byMap[i] !== expected[i] || byPread[i] !== expected[i]) {
        throw new Error(`the read paths disagree at file offset ${position + i}`);
      }
      if (bySeek[i] !== expected[i]) {
        throw new Error(`Deno.FsFile disagrees at file offset ${position + i}`);
      }
    }
  }
}

/** One group of random reads of `readBytes`; each bench cycles through the same positions. */
function benchRandomReads(group: string, readBytes: number, seed: number): void {
  const positions = randomPositions(POSITION_COUNT, readBytes, seed);
  checkSameBytes(readBytes, positions);

  const preadTarget = new Uint8Array(readBytes);
  let preadNext = 0;
  Deno.bench({
    name: `node:fs readSync (pread) ${group}`,
    group,
    baseline: true,
    fn(): void {
      preadFully(preadTarget, positions[preadNext++ & POSITION_MASK]);
    },
  });

  const mapTarget = new Uint8Array(readBytes);
  let mapNext = 0;
  Deno.bench({
    name: `MappedFile.read (guarded) ${group}`,
    group,
    fn(): void {
      map.read(mapTarget, positions[mapNext++ & POSITION_MASK]);
    },
  });

  const seekTarget = new Uint8Array(readBytes);
  let seekNext = 0;
  Deno.bench({
    name: `Deno.FsFile seekSync+readSync ${group}`,
    group,
    fn(): void {
      seekReadFully(seekTarget, positions[seekNext++ & POSITION_MASK]);
    },
  });

  // The unguarded ceiling: the same bytes copied out of the zero-copy view. The subarrays are
  // made here, so the timed body allocates nothing.
  const slices: Uint8Array[] = Array.from(
    positions,
    (position: number): Uint8Array => view.subarray(position, position + readBytes),
  );
  const viewTarget = new Uint8Array(readBytes);
  let viewNext = 0;
  Deno.bench({
    name: `unsafeView() + Uint8Array.set (unguarded) ${group}`,
    group,
    fn(): void {
      viewTarget.set(slices[viewNext++ & POSITION_MASK]);
    },
  });
}

benchRandomReads("random 64 B", 64, SEED);
benchRandomReads("random 4 KiB", 4096, SEED ^ 0x5bd1e995);

// Sequential: 256 MiB per iteration into one preallocated (and already touched) target, cycling
// over the four quarters of the file.
const SEQUENTIAL_GROUP = "sequential 256 MiB";
const QUARTERS = FILE_BYTES / SEQUENTIAL_BYTES;
const bigTarget = new Uint8Array(SEQUENTIAL_BYTES).fill(1);
const quarterViews: Uint8Array[] = [];
for (let q = 0; q < QUARTERS; q++) {
  quarterViews.push(view.subarray(q * SEQUENTIAL_BYTES, (q + 1) * SEQUENTIAL_BYTES));
}
let preadQuarter = 0;
let mapQuarter = 0;
let viewQuarter = 0;

Deno.bench({
  name: "node:fs readSync (pread) 256 MiB",
  group: SEQUENTIAL_GROUP,
  baseline: true,
  fn(): void {
    preadFully(bigTarget, (preadQuarter++ % QUARTERS) * SEQUENTIAL_BYTES);
  },
});

Deno.bench({
  name: "MappedFile.read (guarded) 256 MiB",
  group: SEQUENTIAL_GROUP,
  fn(): void {
    map.read(bigTarget, (mapQuarter++ % QUARTERS) * SEQUENTIAL_BYTES);
  },
});

Deno.bench({
  name: "unsafeView() + Uint8Array.set (unguarded) 256 MiB",
  group: SEQUENTIAL_GROUP,
  fn(): void {
    bigTarget.set(quarterViews[viewQuarter++ % QUARTERS]);
  },
});
