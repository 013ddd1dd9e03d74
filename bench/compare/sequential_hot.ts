/**
 * Sequential reads of a quarter of the data file at a time (256 MiB in a full run) into one
 * touched buffer, page cache hot, against the single-thread memcpy limit.
 *
 * @module
 */
import { join } from "node:path";
import { native } from "../../ffi/library.ts";
import { MappedFile } from "../../mod.ts";
import { expectedBytes, warmPageCache } from "./data.ts";
import { preadFully, sameBytes, seekReadFully, writeOffsets } from "./io.ts";
import { scaled } from "./options.ts";
import { commandText } from "./machine.ts";
import { formatBytes } from "./report.ts";
import {
  type Contender,
  type ContenderSpec,
  numpyReads,
  roundSlice,
  timedContender,
  type Workload,
  type WorkloadEntry,
} from "./runner.ts";
import type { Session } from "./session.ts";
import { touchPositions, touchThroughView } from "./page_touch.ts";

/** What the contenders of the workload share. */
interface SequentialRun {
  s: Session;
  /** Bytes per read. */
  bytes: number;
  /** Reads in the file (the file is read in `parts` quarters, in turn). */
  parts: number;
  /** Operation `i` reads part `i % parts`. */
  slice: (round: number) => [number, number];
  /** Checks the first and last 64 bytes the round's last read left in `s.big`. */
  after: (round: number) => void;
  /** The maps of the contenders that map the file themselves, closed after the rounds. */
  maps: MappedFile[];
  /** What the workload found out about the maps' page tables (its notes). */
  facts: string[];
}

/**
 * The data file mapped anew for one contender, prefaulted. Each in-process contender has a map
 * of its own, as each program has: every map's page-table entries have their own accessed bits,
 * and re-setting those the kernel cleared costs the copy that touches the page next (see "Sequential
 * reads" in where_the_time_goes.md). With one shared map, whichever contender came first after the
 * kernel's pass paid for all of them.
 */
function ownMap(q: SequentialRun, path = q.s.dataPath): MappedFile {
  const map = MappedFile.open(path);
  q.maps.push(map);
  map.prefault();
  return map;
}

/**
 * The `kB` fields of this process's `/proc/<pid>/smaps` entry for `path` (empty when it cannot
 * be read; read by `cat`, since Deno grants reads under /proc only with --allow-all).
 */
async function smapsOf(path: string): Promise<Record<string, number>> {
  const fields: Record<string, number> = {};
  const text = await commandText("cat", [`/proc/${Deno.pid}/smaps`]) ?? "";
  const at = text.indexOf(` ${path}\n`);
  if (at < 0) return fields;
  const block = text.slice(at, text.indexOf("VmFlags", at));
  for (const match of block.matchAll(/^(\w+):\s+(\d+) kB/gm)) fields[match[1]] = +match[2];
  return fields;
}

/**
 * Untimed, before each batch: reads a byte of every page of the shared target `s.big`. Every
 * contender but numpy's writes into it, so the first to run after this VM's DAMON monitor cleared
 * the accessed bits of its page-table entries paid for setting them again for all of them
 * (page_touch.ts). Each contender's source is its own and stays as it is.
 */
function touchTarget(q: SequentialRun): number {
  const big = q.s.big;
  return touchThroughView(big, touchPositions(Float64Array.of(0), big.byteLength, 0, 1));
}

/** A contender of `q` that times `loop` and checks the bytes after it. */
function copier(
  q: SequentialRun,
  spec: Omit<ContenderSpec, "after" | "before">,
  loop: (start: number, end: number) => void | Promise<void>,
): Contender {
  const before = (): void => void touchTarget(q);
  return timedContender({ ...spec, before, after: q.after }, q.slice, loop);
}

function preadCopier(q: SequentialRun): Contender {
  const spec = { label: "node:fs readSync (pread)", family: "node", role: "baseline" } as const;
  return copier(q, spec, (start, end) => {
    for (let i = start; i < end; i++) preadFully(q.s.fd, q.s.big, (i % q.parts) * q.bytes);
  });
}

function fsFileCopier(q: SequentialRun): Contender {
  const label = "Deno.FsFile seekSync + readSync";
  return copier(q, { label, family: "deno", role: "contender" }, (start, end) => {
    for (let i = start; i < end; i++) {
      seekReadFully(q.s.denoFile, q.s.big, (i % q.parts) * q.bytes);
    }
  });
}

function mapCopier(q: SequentialRun): Contender {
  const label = "MappedFile.read (guarded, in-process)";
  const map = ownMap(q);
  return copier(q, { label, family: "guardmap", role: "contender" }, (start, end) => {
    for (let i = start; i < end; i++) map.read(q.s.big, (i % q.parts) * q.bytes);
  });
}

/**
 * Writes a copy of the data file in 64 MiB writes, which the page cache keeps in 2 MiB folios
 * that a map then covers with one page-middle-directory entry (2 MiB) each instead of 512
 * page-table entries; returns its path. Synced, like the data file.
 */
function hugeFolioCopy(q: SequentialRun): string {
  const path = join(q.s.dir, "data-2mib-folios.bin");
  const chunk = new Uint8Array(64 * 2 ** 20);
  using target: Deno.FsFile = Deno.openSync(path, { write: true, create: true, truncate: true });
  for (let at = 0; at < q.s.options.fileBytes; at += chunk.byteLength) {
    preadFully(q.s.fd, chunk, at);
    let rest: Uint8Array = chunk;
    while (rest.byteLength > 0) rest = rest.subarray(target.writeSync(rest));
  }
  target.syncSync();
  return path;
}

/**
 * Diagnostic: the same guarded read from a copy of the file whose page cache is mapped with
 * 2 MiB entries: 128 instead of 65,536 entries per 256 MiB whose accessed bits the kernel clears
 * and the copy sets again.
 */
async function hugeMapCopier(q: SequentialRun): Promise<Contender> {
  const path = hugeFolioCopy(q);
  warmPageCache(path);
  const map = ownMap(q, path);
  const smaps = await smapsOf(path);
  q.facts.push(
    `the copy written in 64 MiB writes: ${smaps.FilePmdMapped ?? "?"} of ${
      smaps.Rss ?? "?"
    } kB mapped with 2 MiB entries (\`FilePmdMapped\` in /proc/self/smaps); the data file: ` +
      `${(await smapsOf(q.s.dataPath)).FilePmdMapped ?? "?"} kB`,
  );
  const label = "MappedFile.read (guarded) from a copy cached in 2 MiB folios";
  return copier(q, { label, family: "guardmap", role: "contender" }, (start, end) => {
    for (let i = start; i < end; i++) map.read(q.s.big, (i % q.parts) * q.bytes);
  });
}

function poolCopier(q: SequentialRun): Contender {
  const label = "MapPool PoolFile.read (worker process)";
  return copier(q, { label, family: "pool", role: "contender" }, async (start, end) => {
    for (let i = start; i < end; i++) await q.s.pooled.read(q.s.big, (i % q.parts) * q.bytes);
  });
}

function viewCopier(q: SequentialRun): Contender {
  const view = ownMap(q).unsafeView();
  const views = Array.from(
    { length: q.parts },
    (_, part) => view.subarray(part * q.bytes, (part + 1) * q.bytes),
  );
  const label = "unsafeView() + Uint8Array.set";
  return copier(q, { label, family: "view", role: "ceiling" }, (start, end) => {
    for (let i = start; i < end; i++) q.s.big.set(views[i % q.parts]);
  });
}

/** The single-thread bandwidth limit: the library's `gm_memcpy` between anonymous buffers. */
function memcpyLimit(q: SequentialRun): Contender {
  const source = new Uint8Array(q.bytes).fill(7);
  const label = "memcpy limit: gm_memcpy, anonymous to anonymous";
  const lib = native();
  const before = (): void => void touchTarget(q);
  const spec = { label, family: "limit", role: "limit", before } as const;
  return timedContender(spec, q.slice, (start, end) => {
    const big = q.s.big;
    for (let k = start; k < end; k++) {
      lib.gm_memcpy(big, big.byteLength, source, source.byteLength, q.bytes);
    }
  });
}

/** The contenders of the workload before numpy's (the memcpy limit comes last). */
const COPIERS: readonly ((q: SequentialRun) => Contender | Promise<Contender>)[] = [
  preadCopier,
  fsFileCopier,
  mapCopier,
  poolCopier,
  viewCopier,
  hugeMapCopier,
];

/** numpy's two read contenders, once it has the positions of every operation. */
async function numpyCopiers(q: SequentialRun, ops: number): Promise<Contender[]> {
  const numpy = q.s.numpy;
  if (numpy === undefined) return [];
  const positions = Array.from(
    { length: (q.s.options.rounds + 1) * ops },
    (_, i) => (i % q.parts) * q.bytes,
  );
  const path = join(q.s.dir, "offsets-sequential.bin");
  writeOffsets(path, new Float64Array(positions));
  await numpy.request({ op: "offsets", name: "sequential", path });
  const read = {
    ...{ name: "sequential", size: q.bytes, count: ops, slice: q.slice },
    ...{ evict: false, touchTarget: true },
  };
  return numpyReads(numpy, read);
}

async function sequentialHotWorkload(s: Session): Promise<Workload> {
  warmPageCache(s.dataPath);
  const { options, big } = s;
  const bytes = options.sequentialBytes;
  const parts = options.fileBytes / bytes;
  const ops = parts * scaled(options, 1, 2);
  const slice = roundSlice(ops);
  const after = (round: number): void => {
    const last = ((slice(round)[1] - 1) % parts) * bytes;
    for (const at of [0, bytes - 64]) {
      sameBytes(big.subarray(at, at + 64), expectedBytes(last + at, 64), `sequential at ${last}`);
    }
  };
  const q: SequentialRun = { s, bytes, parts, slice, after, maps: [], facts: [await damonFact()] };
  const contenders: Contender[] = [];
  for (const make of COPIERS) contenders.push(await make(q));
  contenders.push(...await numpyCopiers(q, ops), memcpyLimit(q));
  return {
    id: "sequential-hot",
    title: `sequential ${formatBytes(bytes)} reads, hot`,
    operation: `copy ${formatBytes(bytes)} (one quarter of the file, in turn) into one ` +
      "preallocated, already touched buffer",
    cache: "page cache hot; the maps' page tables filled beforehand (prefault / a full pass)",
    opsPerRound: ops,
    bytesPerOp: bytes,
    throughput: true,
    rounds: options.rounds,
    contenders,
    notes: [
      "the memcpy limit copies between two anonymous buffers of the same size, single-threaded: " +
      "the library's `gm_memcpy`, a Zig `@memcpy` (compiled in, not glibc's), one FFI call",
      "each in-process contender reads through a map of its own (one per program, as in use)",
    ],
    finish: () => q.facts,
    close: () => q.maps.forEach((map) => map.close()),
  };
}

/**
 * Whether the kernel's DAMON monitor runs, and how often it samples: it clears the accessed
 * bits of the page-table entries of every folio it samples, all 256 entries of a 1 MiB folio at
 * once, and the next copy through those entries pays to set them again.
 */
async function damonFact(): Promise<string> {
  // `sh` reads sysfs: Deno grants reads there only with --allow-all.
  const text = await commandText("sh", [
    "-c",
    "for k in /sys/kernel/mm/damon/admin/kdamonds/[0-9]*; do [ -d $k ] && echo $k " +
    "$(cat $k/state $k/contexts/0/operations $k/contexts/0/monitoring_attrs/intervals/sample_us)" +
    "; done",
  ]);
  if (text === undefined) return "DAMON: not found (/sys/kernel/mm/damon)";
  const running = text.split("\n").map((line) => line.split(" ")).filter((f) => f[1] === "on")
    .map(([dir, , operations, sampleUs]) =>
      `kdamond ${dir.split("/").at(-1)} (${operations}, sampling every ${+sampleUs / 1000} ms)`
    );
  return running.length === 0
    ? "no DAMON monitor runs on this machine"
    : `DAMON runs: ${running.join(", ")}; it clears the accessed bits of the page-table ` +
      "entries of the folios it samples, see Where the time goes, Sequential reads";
}

/** The hot sequential reads; passes over the file per round: 1 (quick) or 2. */
export const SEQUENTIAL_HOT: WorkloadEntry = {
  id: "sequential-hot",
  seconds: [5, 25],
  build: sequentialHotWorkload,
};
