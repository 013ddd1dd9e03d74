/**
 * Sequential reads of a quarter of the data file at a time (256 MiB in a full run) into one
 * touched buffer, page cache hot, against the single-thread memcpy limit.
 *
 * @module
 */
import { join } from "node:path";
import { native } from "../../ffi/library.ts";
import { expectedBytes, warmPageCache } from "./data.ts";
import { preadFully, sameBytes, seekReadFully, writeOffsets } from "./io.ts";
import { scaled } from "./options.ts";
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
}

/** A contender of `q` that times `loop` and checks the bytes after it. */
function copier(
  q: SequentialRun,
  spec: Omit<ContenderSpec, "after">,
  loop: (start: number, end: number) => void | Promise<void>,
): Contender {
  return timedContender({ ...spec, after: q.after }, q.slice, loop);
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
  return copier(q, { label, family: "guardmap", role: "contender" }, (start, end) => {
    for (let i = start; i < end; i++) q.s.map.read(q.s.big, (i % q.parts) * q.bytes);
  });
}

function poolCopier(q: SequentialRun): Contender {
  const label = "MapPool PoolFile.read (worker process)";
  return copier(q, { label, family: "pool", role: "contender" }, async (start, end) => {
    for (let i = start; i < end; i++) await q.s.pooled.read(q.s.big, (i % q.parts) * q.bytes);
  });
}

function viewCopier(q: SequentialRun): Contender {
  const views = Array.from(
    { length: q.parts },
    (_, part) => q.s.view.subarray(part * q.bytes, (part + 1) * q.bytes),
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
  return timedContender({ label, family: "limit", role: "limit" }, q.slice, (start, end) => {
    const big = q.s.big;
    for (let k = start; k < end; k++) {
      lib.gm_memcpy(big, big.byteLength, source, source.byteLength, q.bytes);
    }
  });
}

/** The contenders of the workload before numpy's (the memcpy limit comes last). */
const COPIERS: readonly ((q: SequentialRun) => Contender)[] = [
  preadCopier,
  fsFileCopier,
  mapCopier,
  poolCopier,
  viewCopier,
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
  const read = { name: "sequential", size: q.bytes, count: ops, slice: q.slice, evict: false };
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
  const q: SequentialRun = { s, bytes, parts, slice, after };
  const contenders = COPIERS.map((make) => make(q));
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
    ],
  };
}

/** The hot sequential reads; passes over the file per round: 1 (quick) or 2. */
export const SEQUENTIAL_HOT: WorkloadEntry = {
  id: "sequential-hot",
  seconds: [5, 25],
  build: sequentialHotWorkload,
};
