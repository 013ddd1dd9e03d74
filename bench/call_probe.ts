/**
 * The cost of one call: random reads of 64 B and 4 KiB out of a 1 GiB map, `MappedFile.read`
 * against the unguarded `unsafeView()` + `Uint8Array.set`, with the subarrays made before the
 * clock starts (as bench/compare/random.ts does) and made in the loop (as a program must), and
 * the same `set` followed by an FFI call that does nothing, of each argument shape
 * (bench/call_probe.c). By default the CPU caches are emptied before each batch (1 GiB written,
 * as the harness does); `--hot` skips that (a plain loop). Prints a Markdown table per size:
 * medians per read over interleaved rounds and the ratio to the first row.
 *
 * ```sh
 * deno run --allow-all bench/call_probe.ts [--hot] [--rounds N]
 * ```
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { MappedFile } from "../mod.ts";
import { native } from "../ffi/library.ts";
import { DETAIL } from "../ffi/abi.ts";
import { openInProcess } from "../ffi/window.ts";
import { resolveOpen } from "../ffi/open_options.ts";
import {
  CacheEvictor,
  randomOffsets,
  roundOrder,
  warmPageCache,
  writeDataFile,
} from "./compare/data.ts";
import { formatTime, median } from "./compare/report.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const HOT = Deno.args.includes("--hot");
const at = Deno.args.indexOf("--rounds");
const ROUNDS = at >= 0 ? Number(Deno.args[at + 1]) : 15;
const FILE_BYTES = 2 ** 30;
const OPS = 20000;

const callSymbols = {
  call_none: { parameters: [], result: "i32" },
  call_numbers: { parameters: ["f64", "f64", "f64"], result: "i32" },
  call_one_buffer: { parameters: ["f64", "f64", "buffer", "f64"], result: "i32" },
  call_two_buffers: { parameters: ["f64", "f64", "buffer", "f64", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** Builds bench/call_probe.c into bench/out/ with the pinned Zig and loads it. */
function loadCalls(): Deno.DynamicLibrary<typeof callSymbols>["symbols"] {
  const out = join(ROOT, "bench", "out");
  Deno.mkdirSync(out, { recursive: true });
  const library = join(out, "libcall_probe.so");
  const zig = Deno.env.get("GUARDMAP_ZIG") ?? join(ROOT, ".tools", "zig", "ziglang", "zig");
  const source = join(ROOT, "bench", "call_probe.c");
  const args = ["cc", "-O2", "-shared", "-fPIC", "-o", library, source];
  if (!new Deno.Command(zig, { args }).outputSync().success) throw new Error(`${zig} cc failed`);
  return Deno.dlopen(library, callSymbols).symbols;
}

/** A variant: `run(start, end)` reads operations `[start, end)`; `slices` are made for it. */
type Run = (start: number, end: number, slices: Uint8Array[]) => void;

function probe(map: MappedFile, bytes: number, evictor: CacheEvictor | undefined): void {
  const calls = loadCalls();
  const view = map.unsafeView();
  const offsets = randomOffsets((ROUNDS + 1) * OPS, FILE_BYTES, bytes, 0xca11 + bytes);
  const target = new Uint8Array(bytes);
  const detail = new Uint8Array(DETAIL.sizeBytes);
  const read = (h: number, position: number, to: Uint8Array, length: number) =>
    native().gm_read(h, position, to, length);
  // A closed handle: gm_read checks its arguments and refuses it before any lease or copy.
  const closed = openInProcess(resolveOpen(map.path, {}), false).handle;
  native().gm_close(closed);
  const setEach = (extra: () => void): Run => (_start, _end, slices) => {
    for (let i = 0; i < slices.length; i++) {
      target.set(slices[i]);
      extra();
    }
  };
  const variants: [string, Run][] = [
    ["unsafeView() + set, subarrays made before (the harness)", setEach(() => {})],
    ["unsafeView() + set(view.subarray(...)) made in the loop", (start, end) => {
      for (let i = start; i < end; i++) target.set(view.subarray(offsets[i], offsets[i] + bytes));
    }],
    ["MappedFile.read", (start, end) => {
      for (let i = start; i < end; i++) map.read(target, offsets[i]);
    }],
    [
      "set, then gm_read of a closed handle (refused before the lease)",
      setEach(() => {
        read(closed, 0, target, bytes);
      }),
    ],
    [
      "set, then gm_abi_version() (libguardmap's call doing nothing)",
      setEach(() => {
        native().gm_abi_version();
      }),
    ],
    ["set, then an FFI call () doing nothing", setEach(() => calls.call_none())],
    ["set, then (f64, f64, f64)", setEach(() => calls.call_numbers(1, 2, bytes))],
    ["set, then (f64, f64, buffer, f64)", setEach(() => calls.call_one_buffer(1, 2, target, 3))],
    [
      "set, then (f64, f64, buffer, f64, buffer)",
      setEach(() => {
        calls.call_two_buffers(1, 2, target, 3, detail);
      }),
    ],
  ];
  const samples = variants.map((): number[] => []);
  for (let round = -1; round < ROUNDS; round++) {
    const order = roundOrder(variants.length, round + 1);
    for (const v of order) {
      const start = (round + 1) * OPS, end = start + OPS;
      const slices: Uint8Array[] = [];
      for (let i = start; i < end; i++) slices.push(view.subarray(offsets[i], offsets[i] + bytes));
      evictor?.evict();
      const t0 = performance.now();
      variants[v][1](start, end, slices);
      const elapsed = performance.now() - t0;
      if (round >= 0) samples[v].push(elapsed / OPS);
    }
  }
  const floor = median(samples[0]);
  console.log(`\n### ${bytes} B, ${HOT ? "hot plain loop" : "caches emptied before each batch"}\n`);
  console.log("| variant | median per read | ratio to the first | range over rounds |");
  console.log("| --- | ---: | ---: | --- |");
  variants.forEach(([name], v) => {
    const m = median(samples[v]);
    const range = `${formatTime(Math.min(...samples[v]))} – ${formatTime(Math.max(...samples[v]))}`;
    console.log(`| ${name} | ${formatTime(m)} | ${(m / floor).toFixed(2)}x | ${range} |`);
  });
}

const directory = Deno.makeTempDirSync({ prefix: "guardmap-call-probe-" });
try {
  const path = join(directory, "data.bin");
  writeDataFile(path, FILE_BYTES);
  warmPageCache(path);
  using map = MappedFile.open(path);
  map.prefault();
  const evictor = HOT ? undefined : new CacheEvictor();
  console.log(`load average before: ${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  for (const bytes of [64, 4096]) probe(map, bytes, evictor);
  console.log(`\nload average after: ${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
} finally {
  Deno.removeSync(directory, { recursive: true });
}
