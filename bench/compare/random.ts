/**
 * Random reads (64 B, 4 KiB, 64 KiB) at seeded byte offsets of the data file, each into a reused
 * buffer, with the CPU caches emptied before every batch.
 *
 * @module
 */
import { readSync } from "node:fs";
import { join } from "node:path";
import { expectedBytes, randomOffsets, warmPageCache } from "./data.ts";
import { byteSum, preadFully, sameBytes, seekReadFully, writeOffsets } from "./io.ts";
import { commandText, processorsOf } from "./machine.ts";
import { KIB, scaled } from "./options.ts";
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
import { touchPositions, touchThroughPool, touchThroughView } from "./page_touch.ts";

/** Ranges per `readMany` call in the random workloads' batched contenders. */
export const READ_MANY_RANGES = 256;

/** What the contenders of one random workload share. */
interface RandomRun {
  s: Session;
  readBytes: number;
  /** Every round's offsets: slice 0 is the warm-up's, round r reads slice r + 1. */
  offsets: Float64Array;
  /** The round's operations, the same for every contender of that round. */
  slice: (round: number) => [number, number];
  /** The target of both `readMany` contenders, `READ_MANY_RANGES` reads long. */
  many: Uint8Array;
  /** Timed batches of the pool contender, and how many ended with both processes on one CPU. */
  cpus: { batches: number; same: number };
}

/** The map a contender reads through: the session's (in-process), the pool worker's, or none. */
type MapUse = "session" | "pool" | "none";

/**
 * Untimed, before a batch of round `round`: touches the round's pages through the map `uses`
 * names (page_touch.ts says why), then empties the CPU caches.
 */
async function prepareBatch(r: RandomRun, round: number, uses: MapUse): Promise<void> {
  if (uses !== "none") {
    const [start, end] = r.slice(round);
    const positions = touchPositions(r.offsets, r.readBytes, start, end);
    if (uses === "session") touchThroughView(r.s.view, positions);
    else await touchThroughPool(r.s.pooled, r.many, positions);
  }
  r.s.evictor.evict();
}

/** A contender of `r` that prepares each batch (`prepareBatch`) and times `loop`. */
function reader(
  r: RandomRun,
  spec: Omit<ContenderSpec, "before">,
  uses: MapUse,
  loop: (start: number, end: number) => void | Promise<void>,
  after?: ContenderSpec["after"],
): Contender {
  const before = (round: number) => prepareBatch(r, round, uses);
  return timedContender({ ...spec, before, ...(after ? { after } : {}) }, r.slice, loop);
}

function preadReader(r: RandomRun): Contender {
  const target = new Uint8Array(r.readBytes);
  const spec = { label: "node:fs readSync (pread)", family: "node", role: "baseline" } as const;
  return reader(r, spec, "none", (start, end) => {
    const { offsets, readBytes } = r;
    const fd = r.s.fd;
    for (let i = start; i < end; i++) {
      if (readSync(fd, target, 0, readBytes, offsets[i]) !== readBytes) {
        preadFully(fd, target, offsets[i]);
      }
    }
  });
}

function fsFileReader(r: RandomRun): Contender {
  const target = new Uint8Array(r.readBytes);
  const label = "Deno.FsFile seekSync + readSync";
  return reader(r, { label, family: "deno", role: "contender" }, "none", (start, end) => {
    const { offsets } = r;
    const file = r.s.denoFile;
    for (let i = start; i < end; i++) seekReadFully(file, target, offsets[i]);
  });
}

function mapReader(r: RandomRun): Contender {
  const target = new Uint8Array(r.readBytes);
  const label = "MappedFile.read (guarded, in-process)";
  return reader(r, { label, family: "guardmap", role: "contender" }, "session", (start, end) => {
    const { offsets } = r;
    const map = r.s.map;
    for (let i = start; i < end; i++) map.read(target, offsets[i]);
  });
}

function mapManyReader(r: RandomRun): Contender {
  const label = `MappedFile.readMany (guarded, ${READ_MANY_RANGES} ranges per call)`;
  return reader(r, { label, family: "batch", role: "contender" }, "session", (start, end) => {
    const { offsets, many, readBytes } = r;
    const map = r.s.map;
    for (let i = start; i < end; i += READ_MANY_RANGES) {
      map.readMany(many, offsets.subarray(i, Math.min(i + READ_MANY_RANGES, end)), readBytes);
    }
  });
}

/** `PoolFile.read` one range per call; `label` and `before` tell a pinned variant apart. */
async function poolReads(r: RandomRun, target: Uint8Array, start: number, end: number) {
  const { offsets } = r;
  const pooled = r.s.pooled;
  for (let i = start; i < end; i++) await pooled.read(target, offsets[i]);
}

function poolReader(r: RandomRun): Contender {
  const target = new Uint8Array(r.readBytes);
  const label = "MapPool PoolFile.read (worker process)";
  // Untimed, after each batch: did the host and the worker end it on the same CPU?
  const after = async (round: number): Promise<void> => {
    if (round < 0) return;
    const cpus = await processorsOf([Deno.pid, ...r.s.pool.pids]);
    if (cpus !== undefined && cpus.length === 2) {
      r.cpus.batches++;
      if (cpus[0] === cpus[1]) r.cpus.same++;
    }
  };
  const spec = { label, family: "pool", role: "contender" } as const;
  return reader(r, spec, "pool", (start, end) => poolReads(r, target, start, end), after);
}

function poolManyReader(r: RandomRun): Contender {
  const label = `MapPool PoolFile.readMany (${READ_MANY_RANGES} ranges per call)`;
  return reader(r, { label, family: "pool", role: "contender" }, "pool", async (start, end) => {
    const { offsets, many, readBytes } = r;
    const pooled = r.s.pooled;
    for (let i = start; i < end; i += READ_MANY_RANGES) {
      const positions = offsets.subarray(i, Math.min(i + READ_MANY_RANGES, end));
      await pooled.readMany(many, positions, readBytes);
    }
  });
}

function viewReader(r: RandomRun): Contender {
  const target = new Uint8Array(r.readBytes);
  let slices: Uint8Array[] = [];
  const before = (round: number): Promise<void> => {
    // The subarrays are made here, so the timed loop allocates nothing.
    const [start, end] = r.slice(round);
    slices = [];
    for (let i = start; i < end; i++) {
      slices.push(r.s.view.subarray(r.offsets[i], r.offsets[i] + r.readBytes));
    }
    return prepareBatch(r, round, "session");
  };
  const label = "unsafeView() + Uint8Array.set";
  const spec: ContenderSpec = { label, family: "view", role: "ceiling", before };
  return timedContender(spec, r.slice, () => {
    for (let i = 0; i < slices.length; i++) target.set(slices[i]);
  });
}

/**
 * The unguarded copy as a program writes it: the subarray of each read is made in the loop. The
 * pre-sliced contender above is the ceiling; this is the alternative a user has (see "The cost of
 * one call" in bench/where_the_time_goes.md: the extra work per read stops the CPU from
 * overlapping successive reads' cache misses, as a guarded call does).
 */
function viewInLoopReader(r: RandomRun): Contender {
  const target = new Uint8Array(r.readBytes);
  const label = "unsafeView() + set(view.subarray(...)) in the loop (unguarded)";
  return reader(r, { label, family: "view", role: "contender" }, "session", (start, end) => {
    const { offsets, readBytes } = r;
    const view = r.s.view;
    for (let i = start; i < end; i++) target.set(view.subarray(offsets[i], offsets[i] + readBytes));
  });
}

/**
 * Diagnostic: the pool's reads with the host's JavaScript thread and the worker pinned to CPUs
 * `host` and `worker`: two different CPUs, so that neither waits for the other's CPU, or the
 * same one, as on a machine whose other CPUs are busy (the channel then sleeps at once instead
 * of spinning, and each call waits for a context switch).
 */
function pinnedPoolReader(r: RandomRun, host: number, worker: number): Contender {
  const target = new Uint8Array(r.readBytes);
  const all = `0-${navigator.hardwareConcurrency - 1}`;
  const pin = async (hostCpus: string, workerCpus: string): Promise<void> => {
    await commandText("taskset", ["-p", "-c", hostCpus, String(Deno.pid)]);
    for (const pid of r.s.pool.pids) {
      await commandText("taskset", ["-a", "-p", "-c", workerCpus, String(pid)]);
    }
  };
  const spec: ContenderSpec = {
    label: host === worker
      ? `MapPool PoolFile.read, host and worker pinned to the same CPU ${host}`
      : `MapPool PoolFile.read, host and worker pinned to CPUs ${host} and ${worker}`,
    family: "pool",
    role: "contender",
    async before(round) {
      await pin(String(host), String(worker));
      await prepareBatch(r, round, "pool");
    },
    after: () => pin(all, all),
  };
  return timedContender(spec, r.slice, (start, end) => poolReads(r, target, start, end));
}

/** The contenders every random workload runs, in the order they are listed. */
const READERS: readonly ((r: RandomRun) => Contender)[] = [
  preadReader,
  fsFileReader,
  mapReader,
  mapManyReader,
  poolReader,
  poolManyReader,
  viewReader,
  viewInLoopReader,
];

/** Every path must return the file's bytes: checked once, untimed, at `positions`. */
async function checkReads(r: RandomRun, positions: number[]): Promise<void> {
  const { s, readBytes } = r;
  const scratch = new Uint8Array(readBytes);
  for (const position of positions) {
    const expected = expectedBytes(position, readBytes);
    preadFully(s.fd, scratch, position);
    sameBytes(scratch, expected, `pread at ${position}`);
    seekReadFully(s.denoFile, scratch, position);
    sameBytes(scratch, expected, `Deno.FsFile at ${position}`);
    s.map.read(scratch, position);
    sameBytes(scratch, expected, `MappedFile.read at ${position}`);
    await s.pooled.read(scratch, position);
    sameBytes(scratch, expected, `MapPool read at ${position}`);
    sameBytes(s.view.subarray(position, position + readBytes), expected, `view at ${position}`);
  }
}

/** Hands numpy_memmap.py the offsets (as `id`) and checks its bytes at `positions`. */
async function checkNumpy(r: RandomRun, id: string, positions: number[]): Promise<void> {
  const { s, readBytes } = r;
  if (s.numpy === undefined) return;
  writeOffsets(join(s.dir, `offsets-${id}.bin`), r.offsets);
  await s.numpy.request({ op: "offsets", name: id, path: join(s.dir, `offsets-${id}.bin`) });
  const { sums } = await s.numpy.request<{ sums: number[] }>({
    op: "check",
    size: readBytes,
    offsets: positions,
  });
  positions.forEach((position, i) => {
    if (sums[i] !== byteSum(expectedBytes(position, readBytes))) {
      throw new Error(`numpy.memmap returned wrong bytes at ${position}`);
    }
  });
}

/** Checks both `readMany` paths at `positions`, through the buffer their contenders use. */
async function checkReadMany(r: RandomRun, positions: number[]): Promise<void> {
  const { s, many, readBytes } = r;
  for (const how of ["MappedFile", "PoolFile"]) {
    many.fill(0);
    if (how === "MappedFile") s.map.readMany(many, Float64Array.from(positions), readBytes);
    else await s.pooled.readMany(many, Float64Array.from(positions), readBytes);
    positions.forEach((position, i) => {
      sameBytes(
        many.subarray(i * readBytes, (i + 1) * readBytes),
        expectedBytes(position, readBytes),
        `${how}.readMany at ${position}`,
      );
    });
  }
}

/** All contenders of `r`: the table, the pinned diagnostics for 4 KiB, numpy's two. */
function contenders(r: RandomRun, id: string, ops: number): Contender[] {
  const list = READERS.map((make) => make(r));
  if (r.readBytes === 4096 && navigator.hardwareConcurrency >= 2) {
    list.push(pinnedPoolReader(r, 0, 1), pinnedPoolReader(r, 0, 0));
  }
  if (r.s.numpy !== undefined) {
    const numpy = r.s.numpy;
    // numpy's map is touched first, then the caches are emptied (here, and by numpy_memmap.py on
    // its own core before the batch).
    const before = async (round: number): Promise<void> => {
      const start = r.slice(round)[0];
      await numpy.request({ op: "touch", name: id, size: r.readBytes, start, count: ops });
      r.s.evictor.evict();
    };
    const read = { name: id, size: r.readBytes, count: ops, slice: r.slice, evict: true };
    list.push(...numpyReads(numpy, read, { before }));
  }
  return list;
}

async function randomWorkload(
  s: Session,
  id: string,
  readBytes: number,
  ops: number,
): Promise<Workload> {
  warmPageCache(s.dataPath);
  const { options } = s;
  const seed = (0x9e3779b9 ^ Math.imul(readBytes, 0x85ebca6b)) >>> 0;
  const offsets = randomOffsets((options.rounds + 1) * ops, options.fileBytes, readBytes, seed);
  const many = new Uint8Array(READ_MANY_RANGES * readBytes);
  const cpus = { batches: 0, same: 0 };
  const r: RandomRun = { s, readBytes, offsets, slice: roundSlice(ops), many, cpus };
  const checks = [offsets[0], offsets[offsets.length - 1], options.fileBytes - readBytes];
  await checkReads(r, checks);
  await checkNumpy(r, id, checks);
  await checkReadMany(r, checks);
  return {
    id,
    title: `random ${formatBytes(readBytes)} reads`,
    operation: `copy ${formatBytes(readBytes)} from a random byte offset of the ` +
      `${formatBytes(options.fileBytes)} file into a reused buffer`,
    cache: "page cache hot; CPU caches and TLB emptied before each batch (1 GiB written through)",
    opsPerRound: ops,
    bytesPerOp: readBytes,
    throughput: false,
    rounds: options.rounds,
    contenders: contenders(r, id, ops),
    notes: [
      `${ops} seeded offsets per round (xorshift32, seed 0x${seed.toString(16)}), a new slice ` +
      "of the sequence each round, the same slice for every contender of that round",
    ],
    finish: () =>
      cpus.batches === 0 ? [] : [
        `MapPool: the host and the worker process were on the same CPU at the end of ` +
        `${cpus.same} of ${cpus.batches} timed batches (\`ps -o psr\`); on one CPU a ` +
        "pool call costs two spin windows (about 110 µs), see Where the time goes",
      ],
  };
}

/** The table entry of a random workload of `readBytes` reads, `ops` per round (quick, full). */
function randomEntry(
  id: string,
  readBytes: number,
  ops: readonly [number, number],
  seconds: readonly [number, number],
): WorkloadEntry {
  return {
    id,
    seconds,
    build: (s) => randomWorkload(s, id, readBytes, scaled(s.options, ops[0], ops[1])),
  };
}

/** Random 64 B reads. */
export const RANDOM_64: WorkloadEntry = randomEntry("random-64", 64, [10000, 50000], [4, 12]);
/** Random 4 KiB reads (most span two pages). */
export const RANDOM_4K: WorkloadEntry = randomEntry("random-4k", 4 * KIB, [5000, 30000], [3, 10]);
/** Random 64 KiB reads. */
export const RANDOM_64K: WorkloadEntry = randomEntry("random-64k", 64 * KIB, [1000, 5000], [3, 8]);
