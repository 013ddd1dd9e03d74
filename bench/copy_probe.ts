/**
 * Where the time of a guarded copy goes: the evidence behind "Where the time goes" in
 * bench/RESULTS.md. Times the same copies as bench/compare.ts, split into their parts: the
 * guarded `MappedFile.read` (a `rep movsb` behind the guard), the same `rep movsb` without the
 * guard through FFI, glibc `memcpy`, an AVX2 loop with ordinary and with non-temporal stores
 * (bench/copy_probe.c, built here with the pinned Zig), `Uint8Array.set` from the zero-copy view,
 * and pread. Random reads run once with independent operations and once as a dependency chain
 * (each offset depends on a byte the previous copy delivered), which shows whether the copies
 * of successive operations overlap in the CPU.
 *
 * ```sh
 * deno run --allow-ffi --allow-read --allow-write --allow-env --allow-run --allow-sys \
 *   bench/copy_probe.ts [--quick]
 * ```
 *
 * Prints Markdown tables (median over interleaved rounds) to stdout.
 *
 * @module
 */
import { closeSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { MappedFile } from "../mod.ts";
import { native } from "../ffi/library.ts";
import {
  CacheEvictor,
  randomOffsets,
  roundOrder,
  warmPageCache,
  writeDataFile,
} from "./compare/data.ts";
import { formatRate, formatTime, median } from "./compare/report.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const quick = Deno.args.includes("--quick");
const FILE_BYTES = quick ? 2 ** 28 : 2 ** 30;
const SEQUENTIAL_BYTES = quick ? 2 ** 26 : 2 ** 28;
const ROUNDS = quick ? 5 : 9;
const OPS = quick ? 5000 : 20000;

const copySymbols = {
  probe_rep_movsb: { parameters: ["buffer", "buffer", "f64"], result: "i32" },
  probe_memcpy: { parameters: ["buffer", "buffer", "f64"], result: "i32" },
  probe_avx2: { parameters: ["buffer", "buffer", "f64"], result: "i32" },
  probe_avx2_nt: { parameters: ["buffer", "buffer", "f64"], result: "i32" },
  probe_sse2_nt: { parameters: ["buffer", "buffer", "f64"], result: "i32" },
  probe_gather: { parameters: ["buffer", "buffer", "buffer", "f64", "f64"], result: "i32" },
  probe_gather_leased: {
    parameters: ["buffer", "buffer", "buffer", "f64", "f64"],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** Builds bench/copy_probe.c into bench/out/ with the pinned Zig and loads it. */
function loadCopies(): Deno.DynamicLibrary<typeof copySymbols>["symbols"] {
  const out = join(ROOT, "bench", "out");
  Deno.mkdirSync(out, { recursive: true });
  const library = join(out, "libcopy_probe.so");
  const zig = Deno.env.get("GUARDMAP_ZIG") ?? join(ROOT, ".tools", "zig", "ziglang", "zig");
  const built = new Deno.Command(zig, {
    args: ["cc", "-O2", "-shared", "-fPIC", "-o", library, join(ROOT, "bench", "copy_probe.c")],
    stdout: "inherit",
    stderr: "inherit",
  }).outputSync();
  if (!built.success) throw new Error(`${zig} cc failed to build bench/copy_probe.c`);
  return Deno.dlopen(library, copySymbols).symbols;
}

type Copy = (target: Uint8Array, source: Uint8Array, length: number) => number;

/** A named variant: `run(round)` times one batch and returns its milliseconds. */
interface Variant {
  name: string;
  before?(round: number): void;
  run(round: number): number;
}

function interleave(variants: Variant[], ops: number, bytes: number, title: string): void {
  const samples = variants.map((): number[] => []);
  for (const variant of variants) {
    variant.before?.(-1);
    variant.run(-1);
  }
  for (let round = 0; round < ROUNDS; round++) {
    // A new order each round (seeded), so no variant always follows the same neighbour.
    const order = roundOrder(variants.length, round);
    for (let k = 0; k < variants.length; k++) {
      const v = order[k];
      variants[v].before?.(round);
      samples[v].push(variants[v].run(round) / ops);
    }
  }
  printTable(title, variants.map((variant, v) => [variant.name, samples[v]]), bytes);
}

/** Prints one Markdown table: per row, the median of its samples (ms), throughput and range. */
function printTable(title: string, rows: [string, number[]][], bytes: number): void {
  console.log(`\n### ${title}\n`);
  console.log("| variant | median per op | throughput | range over rounds |");
  console.log("| --- | ---: | ---: | --- |");
  for (const [name, samples] of rows) {
    const middle = median(samples);
    console.log(
      `| ${name} | ${formatTime(middle)} | ${formatRate(bytes / (middle / 1000))} | ` +
        `${formatTime(Math.min(...samples))} – ${formatTime(Math.max(...samples))} |`,
    );
  }
}

const directory = Deno.makeTempDirSync({ prefix: "guardmap-probe-" });
try {
  const path = join(directory, "data.bin");
  console.error(`[probe] writing ${FILE_BYTES / 2 ** 20} MiB into ${directory}`);
  writeDataFile(path, FILE_BYTES);
  warmPageCache(path);
  using map = MappedFile.open(path);
  map.prefault();
  const view = map.unsafeView();
  const fd = openSync(path, "r");
  const copies = loadCopies();
  const lib = native();
  const evictor = new CacheEvictor();
  const viaFfi = (fn: (a: Uint8Array, b: Uint8Array, n: number) => number): Copy => fn;
  const ffiCopies: [string, Copy][] = [
    ["FFI rep movsb from the view (unguarded)", viaFfi(copies.probe_rep_movsb)],
    ["FFI glibc memcpy from the view", viaFfi(copies.probe_memcpy)],
    ["FFI AVX2 loop from the view", viaFfi(copies.probe_avx2)],
  ];

  // Eviction check: how large a sweep must be before reads of offsets read a moment ago are as
  // slow again as first reads. Every variant gets offsets of its own each round.
  {
    const sweeps: [string, CacheEvictor | undefined][] = [
      ["re-read at once", undefined],
      ["re-read after a 64 MiB sweep", new CacheEvictor(2 ** 26)],
      ["re-read after a 256 MiB sweep", new CacheEvictor(2 ** 28)],
      ["re-read after a 1 GiB sweep", evictor],
    ];
    const count = sweeps.length + 1;
    const offsets = randomOffsets((ROUNDS + 1) * count * OPS, FILE_BYTES, 64, 0x5eed);
    const target = new Uint8Array(64);
    const readSlice = (slice: number): number => {
      const t0 = performance.now();
      for (let i = slice * OPS; i < (slice + 1) * OPS; i++) {
        target.set(view.subarray(offsets[i], offsets[i] + 64));
      }
      return performance.now() - t0;
    };
    const variants: Variant[] = [
      { name: "first read of fresh offsets", run: (round) => readSlice((round + 1) * count) },
      ...sweeps.map(([name, sweep], v): Variant => ({
        name,
        before(round) {
          readSlice((round + 1) * count + v + 1);
          sweep?.evict();
        },
        run: (round) => readSlice((round + 1) * count + v + 1),
      })),
    ];
    console.error("[probe] eviction check");
    interleave(variants, OPS, 64, "eviction check: random 64 B through unsafeView() + set");
  }

  for (const bytes of [64, 4096]) {
    // One more byte of room: the dependent variants add 0 or 1 to each offset.
    const offsets = randomOffsets((ROUNDS + 1) * OPS, FILE_BYTES, bytes + 1, 0x1234567 + bytes);
    const range = (round: number): [number, number] => [(round + 1) * OPS, (round + 2) * OPS];
    const target = new Uint8Array(bytes);
    let slices: Uint8Array[] = [];
    const makeSlices = (round: number): void => {
      const [start, end] = range(round);
      slices = [];
      for (let i = start; i < end; i++) slices.push(view.subarray(offsets[i], offsets[i] + bytes));
      evictor.evict();
    };
    const evict = (): void => evictor.evict();
    const variants: Variant[] = [
      {
        name: "pread (node:fs readSync)",
        before: evict,
        run(round) {
          const [start, end] = range(round);
          const t0 = performance.now();
          for (let i = start; i < end; i++) readSync(fd, target, 0, bytes, offsets[i]);
          return performance.now() - t0;
        },
      },
      {
        name: "MappedFile.read (guarded)",
        before: evict,
        run(round) {
          const [start, end] = range(round);
          const t0 = performance.now();
          for (let i = start; i < end; i++) map.read(target, offsets[i]);
          return performance.now() - t0;
        },
      },
      {
        name: "MappedFile.read, dependent chain",
        before: evict,
        run(round) {
          const [start, end] = range(round);
          const t0 = performance.now();
          for (let i = start; i < end; i++) map.read(target, offsets[i] + (target[0] & 1));
          return performance.now() - t0;
        },
      },
      ...ffiCopies.map(([name, copy]): Variant => ({
        name,
        before: makeSlices,
        run() {
          const t0 = performance.now();
          for (let i = 0; i < slices.length; i++) copy(target, slices[i], bytes);
          return performance.now() - t0;
        },
      })),
      {
        name: "FFI glibc memcpy from the view, dependent chain",
        before: evict,
        run(round) {
          const [start, end] = range(round);
          const t0 = performance.now();
          for (let i = start; i < end; i++) {
            const at = offsets[i] + (target[0] & 1);
            copies.probe_memcpy(target, view.subarray(at, at + bytes), bytes);
          }
          return performance.now() - t0;
        },
      },
      {
        name: "FFI glibc memcpy, view.subarray made in the loop",
        before: evict,
        run(round) {
          const [start, end] = range(round);
          const t0 = performance.now();
          for (let i = start; i < end; i++) {
            copies.probe_memcpy(target, view.subarray(offsets[i], offsets[i] + bytes), bytes);
          }
          return performance.now() - t0;
        },
      },
      {
        name: "FFI gather: one call copies the batch's ranges (memcpy each)",
        before: evict,
        run(round) {
          const [start, end] = range(round);
          const batch = offsets.subarray(start, end);
          const t0 = performance.now();
          copies.probe_gather(target, view, batch, batch.length, bytes);
          return performance.now() - t0;
        },
      },
      {
        name: "FFI gather with a locked RMW pair per range (as the lease)",
        before: evict,
        run(round) {
          const [start, end] = range(round);
          const batch = offsets.subarray(start, end);
          const t0 = performance.now();
          copies.probe_gather_leased(target, view, batch, batch.length, bytes);
          return performance.now() - t0;
        },
      },
      {
        name: "unsafeView() + Uint8Array.set",
        before: makeSlices,
        run() {
          const t0 = performance.now();
          for (let i = 0; i < slices.length; i++) target.set(slices[i]);
          return performance.now() - t0;
        },
      },
      {
        name: "unsafeView() + Uint8Array.set, dependent chain",
        before: evict,
        run(round) {
          const [start, end] = range(round);
          const t0 = performance.now();
          for (let i = start; i < end; i++) {
            const at = offsets[i] + (target[0] & 1);
            target.set(view.subarray(at, at + bytes));
          }
          return performance.now() - t0;
        },
      },
      {
        name: "MappedFile.read, 4096 offsets reused (CPU caches warm)",
        run(round) {
          const [start] = range(round);
          const t0 = performance.now();
          for (let i = 0; i < OPS; i++) map.read(target, offsets[start + (i & 4095)]);
          return performance.now() - t0;
        },
      },
      {
        name: "pread, 4096 offsets reused (CPU caches warm)",
        run(round) {
          const [start] = range(round);
          const t0 = performance.now();
          for (let i = 0; i < OPS; i++) readSync(fd, target, 0, bytes, offsets[start + (i & 4095)]);
          return performance.now() - t0;
        },
      },
    ];
    console.error(`[probe] random ${bytes} B`);
    interleave(
      variants,
      OPS,
      bytes,
      `random ${bytes} B over ${FILE_BYTES / 2 ** 20} MiB, CPU caches evicted before each batch`,
    );
  }

  // Sequential: whole quarters of the file into one touched target, and anonymous to anonymous.
  const big = new Uint8Array(SEQUENTIAL_BYTES).fill(1);
  const anonymous = new Uint8Array(SEQUENTIAL_BYTES).fill(2);
  const quarters = FILE_BYTES / SEQUENTIAL_BYTES;
  const quarter = (round: number): Uint8Array => {
    const q = (round + 1) % quarters;
    return view.subarray(q * SEQUENTIAL_BYTES, (q + 1) * SEQUENTIAL_BYTES);
  };
  const timed = (body: () => void): number => {
    const t0 = performance.now();
    body();
    return performance.now() - t0;
  };
  const sequential: Variant[] = [
    {
      name: "pread (node:fs readSync)",
      run: (round) =>
        timed(() => {
          const at = ((round + 1) % quarters) * SEQUENTIAL_BYTES;
          let done = 0;
          while (done < SEQUENTIAL_BYTES) {
            done += readSync(fd, big, done, SEQUENTIAL_BYTES - done, at + done);
          }
        }),
    },
    {
      name: "MappedFile.read (guarded: streaming copy at 32 MiB and up)",
      run: (round) => timed(() => map.read(big, ((round + 1) % quarters) * SEQUENTIAL_BYTES)),
    },
    {
      name: "FFI rep movsb from the view (unguarded)",
      run: (round) => timed(() => copies.probe_rep_movsb(big, quarter(round), SEQUENTIAL_BYTES)),
    },
    {
      name: "FFI glibc memcpy from the view",
      run: (round) => timed(() => copies.probe_memcpy(big, quarter(round), SEQUENTIAL_BYTES)),
    },
    {
      name: "FFI AVX2 loop from the view",
      run: (round) => timed(() => copies.probe_avx2(big, quarter(round), SEQUENTIAL_BYTES)),
    },
    {
      name: "FFI AVX2 non-temporal stores from the view",
      run: (round) => timed(() => copies.probe_avx2_nt(big, quarter(round), SEQUENTIAL_BYTES)),
    },
    {
      name: "FFI SSE2 non-temporal stores from the view",
      run: (round) => timed(() => copies.probe_sse2_nt(big, quarter(round), SEQUENTIAL_BYTES)),
    },
    {
      name: "unsafeView() + Uint8Array.set",
      run: (round) => timed(() => big.set(quarter(round))),
    },
    {
      name: "FFI rep movsb, anonymous to anonymous",
      run: () => timed(() => copies.probe_rep_movsb(big, anonymous, SEQUENTIAL_BYTES)),
    },
    {
      name: "gm_memcpy (the library's own memcpy), anonymous to anonymous: the limit",
      run: () =>
        timed(() =>
          lib.gm_memcpy(big, big.byteLength, anonymous, anonymous.byteLength, SEQUENTIAL_BYTES)
        ),
    },
    {
      name: "FFI AVX2 non-temporal stores, anonymous to anonymous",
      run: () => timed(() => copies.probe_avx2_nt(big, anonymous, SEQUENTIAL_BYTES)),
    },
  ];
  console.error(`[probe] sequential ${SEQUENTIAL_BYTES / 2 ** 20} MiB`);
  interleave(
    sequential,
    1,
    SEQUENTIAL_BYTES,
    `sequential ${SEQUENTIAL_BYTES / 2 ** 20} MiB, page cache hot, map prefaulted`,
  );

  // The same two copies of a quarter from the map, each right after the process slept 150 ms:
  // the first copy after an idle gap, taking turns.
  const idle: Record<string, number[]> = { "rep movsb": [], "SSE2 non-temporal": [] };
  const idleRuns: [string, () => void][] = [
    ["rep movsb", () => copies.probe_rep_movsb(big, quarter(0), SEQUENTIAL_BYTES)],
    ["SSE2 non-temporal", () => copies.probe_sse2_nt(big, quarter(0), SEQUENTIAL_BYTES)],
  ];
  const idleRounds = quick ? 6 : 20;
  console.error(`[probe] sequential after 150 ms idle, ${idleRounds} rounds`);
  for (let round = 0; round < idleRounds; round++) {
    await new Promise((resolve) => setTimeout(resolve, 150));
    const [name, run] = idleRuns[round % 2];
    idle[name].push(timed(run));
  }
  printTable(
    `sequential ${SEQUENTIAL_BYTES / 2 ** 20} MiB, the first copy after 150 ms of sleep`,
    Object.entries(idle),
    SEQUENTIAL_BYTES,
  );
  closeSync(fd);
} finally {
  Deno.removeSync(directory, { recursive: true });
}
