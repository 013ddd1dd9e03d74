/**
 * MapPool benchmarks: reads through a worker process (shared-memory staging, futex wake-ups)
 * against the in-process guarded `MappedFile.read` and `pread` through `node:fs` (the baseline),
 * and the time from a worker crash to the next successful call.
 *
 * Run from the project root (the pool spawns Deno, hence --allow-run):
 *
 * ```sh
 * deno bench --allow-ffi --allow-read --allow-write --allow-env --allow-run bench/pool_bench.ts
 * ```
 *
 * At load the module writes a 1 GiB file of non-zero bytes into a fresh temporary directory,
 * reads it once so the page cache is hot, and removes it on `unload` (a worker opens it by
 * path, so it cannot be unlinked early).
 *
 * @module
 */
import { closeSync, openSync, readSync } from "node:fs";
import { MappedFile, MapPool, type PoolFile } from "../mod.ts";

const FILE_BYTES = 2 ** 30;
const CHUNK_BYTES = 2 ** 20;
const POSITION_COUNT = 4096;
const POSITION_MASK = POSITION_COUNT - 1;
const SEQUENTIAL_BYTES = 2 ** 26;
const KERNELS = new URL("../tests/kernels/kernels.ts", import.meta.url);

const directory: string = Deno.makeTempDirSync({ prefix: "guardmap-pool-bench-" });
const path: string = `${directory}/data-1GiB.bin`;

function writeDataFile(): void {
  const chunk = new Uint8Array(CHUNK_BYTES);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i % 251) + 1;
  using file: Deno.FsFile = Deno.openSync(path, { write: true, create: true, truncate: true });
  for (let written = 0; written < FILE_BYTES; written += CHUNK_BYTES) {
    let rest: Uint8Array = chunk;
    while (rest.byteLength > 0) rest = rest.subarray(file.writeSync(rest));
  }
  file.syncDataSync();
}

/** A fixed-seed xorshift32, so every run reads the same positions. */
function randomPositions(readBytes: number, seed: number): Float64Array {
  const positions = new Float64Array(POSITION_COUNT);
  let state = seed >>> 0;
  for (let i = 0; i < POSITION_COUNT; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    positions[i] = Math.floor((state / 2 ** 32) * (FILE_BYTES - readBytes + 1));
  }
  return positions;
}

try {
  writeDataFile();
  using warm: Deno.FsFile = Deno.openSync(path);
  const chunk = new Uint8Array(CHUNK_BYTES);
  while (warm.readSync(chunk) !== null) {
    // Reading every page once makes the page cache hot.
  }
} catch (error) {
  Deno.removeSync(directory, { recursive: true });
  throw error;
}

const pool: MapPool = new MapPool({ workers: 1 });
const pooled: PoolFile = await pool.open(path);
const crashing: PoolFile = await new MapPool({ workers: 1 }).open(path, { length: 4096 });
const map: MappedFile = MappedFile.open(path);
const fd: number = openSync(path, "r");
map.prefault();
await pooled.prefault();

globalThis.addEventListener("unload", (): void => {
  map.close();
  closeSync(fd);
  Deno.removeSync(directory, { recursive: true });
});

function pread(target: Uint8Array, position: number): void {
  let done = 0;
  while (done < target.byteLength) {
    done += readSync(fd, target, done, target.byteLength - done, position + done);
  }
}

for (
  const [label, bytes, seed] of [["64 B", 64, 0x2545f491], ["4 KiB", 4096, 0x9e3779b9]] as const
) {
  const positions = randomPositions(bytes, seed);
  const target = new Uint8Array(bytes);
  const group = `pool random ${label}`;
  let cursor = 0;
  Deno.bench({
    name: "pread (node:fs readSync)",
    group,
    baseline: true,
    fn: () => pread(target, positions[cursor++ & POSITION_MASK]),
  });
  Deno.bench({
    name: "MappedFile.read (in-process)",
    group,
    fn: () => {
      map.read(target, positions[cursor++ & POSITION_MASK]);
    },
  });
  Deno.bench({
    name: "MapPool read (worker process)",
    group,
    fn: async () => {
      await pooled.read(target, positions[cursor++ & POSITION_MASK]);
    },
  });
}

const sequential = new Uint8Array(SEQUENTIAL_BYTES).fill(1);
let quarter = 0;
const nextSequential = () => (quarter++ & 3) * 4 * SEQUENTIAL_BYTES;
Deno.bench({
  name: "pread (node:fs readSync)",
  group: "pool sequential 64 MiB",
  baseline: true,
  fn: () => pread(sequential, nextSequential()),
});
Deno.bench({
  name: "MappedFile.read (in-process)",
  group: "pool sequential 64 MiB",
  fn: () => {
    map.read(sequential, nextSequential());
  },
});
Deno.bench({
  name: "MapPool read (worker process)",
  group: "pool sequential 64 MiB",
  fn: async () => {
    await pooled.read(sequential, nextSequential());
  },
});

const small = new Uint8Array(16);
Deno.bench({
  name: "worker crash (SIGSEGV) to the next successful read",
  group: "pool restart",
  n: 20,
  warmup: 2,
  fn: async () => {
    await crashing.run(KERNELS, "segfault").catch(() => {});
    await crashing.read(small, 0);
  },
});
