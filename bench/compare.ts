/**
 * The comparison harness: guardmap against the alternatives (pread through `node:fs`,
 * `Deno.FsFile`, numpy.memmap) and against the memory-bandwidth limit, on the same files and
 * the same seeded offsets. Writes `bench/RESULTS.md` and the chart `bench/results.svg`.
 *
 * ```sh
 * tools/dev compare            # installs numpy (pinned) and builds the library first
 * deno task compare [--quick]  # the same, once numpy is in .tools/python
 * ```
 *
 * Options: `--quick` (a 256 MiB file, fewer operations: about 15 s), `--rounds N`,
 * `--only ID,ID` (workload ids: random-64, random-4k, random-64k, sequential-hot, reduction,
 * writes, sequential-cold), `--out DIR` (default: bench/), `--no-numpy`, `--no-cold`.
 *
 * Each workload runs its contenders interleaved in one process (A B C ... C A B ...), several
 * rounds of many operations each, and reports per contender the median over the rounds of the
 * per-operation time and the ratio to the baseline. numpy runs in a Python subprocess
 * (bench/numpy_memmap.py) that the harness drives one batch at a time, so its batches take
 * their turn in the same rounds. Progress goes to stderr.
 *
 * @module
 */
import { closeSync, fdatasyncSync, fsyncSync, openSync, readSync, writeSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { MappedFile, MapPool, type PoolFile } from "../mod.ts";
import { libraryPath, native } from "../ffi/library.ts";
import { sumArray, sumFloat64 } from "./kernels.ts";
import {
  CacheEvictor,
  CHUNK_BYTES,
  dropPageCache,
  expectedBytes,
  randomOffsets,
  residentBytes,
  roundOrder,
  warmPageCache,
  writeDataFile,
} from "./compare/data.ts";
import {
  type Family,
  formatBytes,
  formatRate,
  formatRatio,
  formatTime,
  renderMarkdown,
  renderSvg,
  type Role,
  type RunInfo,
  summarize,
  type TargetResult,
  type WorkloadResult,
} from "./compare/report.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const KERNELS = new URL("./kernels.ts", import.meta.url);
const NUMPY_SCRIPT = fileURLToPath(new URL("./numpy_memmap.py", import.meta.url));
const KIB = 2 ** 10;
const MIB = 2 ** 20;
const GIB = 2 ** 30;
/** Ranges per `MappedFile.readMany` call in the random workloads' batched contender. */
const READ_MANY_RANGES = 256;

// ---------------------------------------------------------------------------------------------
// Options

/** The harness's settings, from the command line. */
export interface Options {
  /** Scaled-down sizes and counts. */
  quick: boolean;
  /** Timed rounds per workload. */
  rounds: number;
  /** Rounds of the cold workload (each operation there reads the whole cold file from disk). */
  coldRounds: number;
  /** Where RESULTS.md and results.svg go. */
  out: string;
  /** Workload ids to run; all when undefined. */
  only: Set<string> | undefined;
  /** Whether to run the numpy contenders. */
  numpy: boolean;
  /** Whether to run the cold-cache workload. */
  cold: boolean;
  /** Size of the data file. */
  fileBytes: number;
  /** Size of one sequential read (and of the cold file). */
  sequentialBytes: number;
  /** Size of the file the write workload writes to. */
  writeFileBytes: number;
  /** Operations per contender per round, per workload. */
  ops: {
    random64: number;
    random4k: number;
    random64k: number;
    writes: number;
    /** Passes over the data file per round of the sequential workload. */
    sequentialPasses: number;
    /** Sums of the whole file per round of the reduction. */
    sums: number;
  };
}

/** The workload ids `--only` accepts, in the order they run. */
export const WORKLOAD_IDS = [
  "random-64",
  "random-4k",
  "random-64k",
  "sequential-hot",
  "reduction",
  "writes",
  "sequential-cold",
] as const;

/** Parses the command line (see the module documentation). */
export function parseOptions(args: readonly string[]): Options {
  const quick = args.includes("--quick");
  const value = (name: string): string | undefined => {
    const index = args.findIndex((arg) => arg === name || arg.startsWith(`${name}=`));
    if (index < 0) return undefined;
    const arg = args[index];
    return arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : args[index + 1];
  };
  const known = new Set(["--quick", "--rounds", "--only", "--out", "--no-numpy", "--no-cold"]);
  for (let i = 0; i < args.length; i++) {
    const name = args[i].split("=")[0];
    if (!known.has(name)) throw new TypeError(`unknown option ${args[i]} (see bench/compare.ts)`);
    if (!args[i].includes("=") && ["--rounds", "--only", "--out"].includes(name)) i++;
  }
  const rounds = Number(value("--rounds") ?? (quick ? 5 : 7));
  if (!Number.isSafeInteger(rounds) || rounds < 1 || rounds > 100) {
    throw new RangeError(`--rounds must be a whole number from 1 to 100`);
  }
  const only = value("--only");
  const onlySet = only === undefined ? undefined : new Set(only.split(","));
  for (const id of onlySet ?? []) {
    if (!(WORKLOAD_IDS as readonly string[]).includes(id)) {
      throw new TypeError(`unknown workload ${id}; one of ${WORKLOAD_IDS.join(", ")}`);
    }
  }
  return {
    quick,
    rounds,
    coldRounds: Math.min(rounds, 5),
    out: resolve(value("--out") ?? join(ROOT, "bench")),
    only: onlySet,
    numpy: !args.includes("--no-numpy"),
    cold: !args.includes("--no-cold"),
    fileBytes: quick ? 256 * MIB : GIB,
    sequentialBytes: quick ? 64 * MIB : 256 * MIB,
    writeFileBytes: quick ? 16 * MIB : 64 * MIB,
    ops: quick
      ? {
        random64: 10000,
        random4k: 5000,
        random64k: 1000,
        writes: 60,
        sequentialPasses: 1,
        sums: 1,
      }
      : {
        random64: 50000,
        random4k: 30000,
        random64k: 5000,
        writes: 300,
        sequentialPasses: 2,
        sums: 2,
      },
  };
}

// ---------------------------------------------------------------------------------------------
// Progress on stderr

const encoder = new TextEncoder();

function say(text: string): void {
  Deno.stderr.writeSync(encoder.encode(`[compare] ${text}\n`));
}

function clock(seconds: number): string {
  const whole = Math.max(0, Math.round(seconds));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

/** Estimates the time left from nominal workload durations, corrected by what was measured. */
class Progress {
  #start = performance.now();
  #nominal: Map<string, number>;
  #done = new Map<string, number>();
  #current: { id: string; started: number; rounds: number } | undefined;

  constructor(nominal: Map<string, number>) {
    this.#nominal = nominal;
  }

  begin(id: string, title: string, rounds: number): void {
    this.#current = { id, started: performance.now(), rounds };
    say(`${title}: warm-up, then ${rounds} rounds (${this.#status(0)})`);
  }

  round(title: string, round: number): void {
    say(`${title}: round ${round + 1}/${this.#current?.rounds} (${this.#status(round)})`);
  }

  end(id: string): void {
    if (this.#current?.id === id) {
      this.#done.set(id, (performance.now() - this.#current.started) / 1000);
    }
    this.#current = undefined;
  }

  #status(roundsDone: number): string {
    const elapsed = (performance.now() - this.#start) / 1000;
    let nominalDone = 0;
    let actualDone = 0;
    for (const [id, seconds] of this.#done) {
      nominalDone += this.#nominal.get(id) ?? 0;
      actualDone += seconds;
    }
    const scale = nominalDone > 0 ? actualDone / nominalDone : 1;
    let left = 0;
    for (const [id, seconds] of this.#nominal) {
      if (this.#done.has(id) || this.#current?.id === id) continue;
      left += seconds * scale;
    }
    const current = this.#current;
    if (current !== undefined) {
      const spent = (performance.now() - current.started) / 1000;
      const nominal = (this.#nominal.get(current.id) ?? 0) * scale;
      left += roundsDone > 0
        ? (spent / roundsDone) * (current.rounds - roundsDone)
        : Math.max(0, nominal - spent);
    }
    return `elapsed ${clock(elapsed)}, about ${clock(left)} left`;
  }
}

// ---------------------------------------------------------------------------------------------
// The numpy subprocess

/** The Python side (bench/numpy_memmap.py), one JSON request and answer per line. */
class NumpyPeer {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";

  constructor(python: string, pythonPath: string) {
    // The OpenBLAS variables are set on some machines here for old OpenBLAS builds; they slow a
    // current numpy down, so they are removed for this subprocess only.
    const env = Deno.env.toObject();
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    env.PYTHONPATH = env.PYTHONPATH ? `${pythonPath}:${env.PYTHONPATH}` : pythonPath;
    env.PYTHONUNBUFFERED = "1";
    this.#child = new Deno.Command(python, {
      args: [NUMPY_SCRIPT],
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#reader = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  async request<T>(body: Record<string, unknown>): Promise<T> {
    await this.#writer.write(encoder.encode(JSON.stringify(body) + "\n"));
    while (!this.#buffer.includes("\n")) {
      const { value, done } = await this.#reader.read();
      if (done) throw new Error(`numpy_memmap.py exited during ${JSON.stringify(body.op)}`);
      this.#buffer += value;
    }
    const end = this.#buffer.indexOf("\n");
    const line = this.#buffer.slice(0, end);
    this.#buffer = this.#buffer.slice(end + 1);
    const answer = JSON.parse(line);
    if (answer.error !== undefined) {
      throw new Error(`numpy_memmap.py, ${body.op}: ${answer.error}`);
    }
    return answer as T;
  }

  async close(): Promise<void> {
    try {
      await this.#writer.write(encoder.encode(`{"op":"exit"}\n`));
      await this.#writer.close();
    } catch {
      // Already gone.
    }
    await this.#child.status;
    this.#reader.releaseLock();
  }
}

// ---------------------------------------------------------------------------------------------
// Contenders and the interleaved runner

/** One way of doing a workload's operation. */
interface Contender {
  label: string;
  family: Family;
  role: Role;
  /** Untimed, before each batch (round -1 is the warm-up). */
  before?(round: number): void | Promise<void>;
  /** One timed batch of the round's operations; returns the elapsed milliseconds. */
  batch(round: number): number | Promise<number>;
  /** Untimed, after each batch: checks and clean-up. */
  after?(round: number): void | Promise<void>;
}

/** A workload: its contenders and how to run and describe them (as its result will). */
interface Workload extends Omit<WorkloadResult, "contenders" | "skipped"> {
  contenders: Contender[];
  /** Notes known only after the rounds (residency checks, say). */
  finish?(): string[];
}

async function runWorkload(workload: Workload, progress: Progress): Promise<WorkloadResult> {
  progress.begin(workload.id, workload.title, workload.rounds);
  const samples: number[][] = workload.contenders.map(() => []);
  const faults: number[] = workload.contenders.map(() => 0);
  for (const contender of workload.contenders) {
    await contender.before?.(-1);
    await contender.batch(-1);
    await contender.after?.(-1);
  }
  const count = workload.contenders.length;
  for (let round = 0; round < workload.rounds; round++) {
    progress.round(workload.title, round);
    // Interleaved, in a new order each round, so that no contender always runs right after the
    // same neighbour: what ran just before can slow a copy down (a large copy right after a
    // kernel copy into the same buffer measured up to 20 % slower, whoever made it). Rotating
    // A B C, B C A, C A B kept every contender behind the same one in all rounds but one.
    const order = roundOrder(count, round);
    for (let k = 0; k < count; k++) {
      const c = order[k];
      const contender = workload.contenders[c];
      await contender.before?.(round);
      const faultsBefore = minorFaults();
      const elapsed = await contender.batch(round);
      faults[c] += minorFaults() - faultsBefore;
      await contender.after?.(round);
      samples[c].push(elapsed / workload.opsPerRound);
    }
  }
  progress.end(workload.id);
  const contenders = summarize(
    workload.contenders.map((contender, c) => ({
      label: contender.label,
      family: contender.family,
      role: contender.role,
      samples: samples[c],
    })),
    workload.bytesPerOp,
  );
  for (const entry of contenders) {
    say(
      `  ${entry.label}: ${formatTime(entry.median)}/op ${formatRate(entry.bytesPerSecond)} ` +
        `${entry.role === "baseline" ? "(baseline)" : formatRatio(entry.ratio)}`,
    );
  }
  return {
    id: workload.id,
    title: workload.title,
    operation: workload.operation,
    cache: workload.cache,
    opsPerRound: workload.opsPerRound,
    bytesPerOp: workload.bytesPerOp,
    throughput: workload.throughput,
    rounds: workload.rounds,
    contenders,
    notes: [
      ...workload.notes,
      ...(workload.finish?.() ?? []),
      `page faults in the harness process during the timed batches: ${
        workload.contenders.map((contender, c) => `${contender.label} ${faults[c]}`).join("; ")
      } (a page dropped from a map and touched again adds one fault per page; the runtime's own heap growth adds some)`,
    ],
  };
}

/** Minor page faults of this process so far (getrusage). */
function minorFaults(): number {
  return process.resourceUsage().minorPageFault;
}

function skipped(
  id: string,
  title: string,
  operation: string,
  cache: string,
  reason: string,
): WorkloadResult {
  return {
    id,
    title,
    operation,
    cache,
    opsPerRound: 0,
    bytesPerOp: 0,
    throughput: false,
    rounds: 0,
    contenders: [],
    notes: [],
    skipped: reason,
  };
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the contenders

/** pread through node:fs until `target` is full. */
function preadFully(fd: number, target: Uint8Array, position: number): void {
  let done = readSync(fd, target, 0, target.byteLength, position);
  while (done < target.byteLength) {
    const count = readSync(fd, target, done, target.byteLength - done, position + done);
    if (count === 0) throw new Error(`pread hit the end of the file at ${position + done}`);
    done += count;
  }
}

/** `Deno.FsFile` seek + read until `target` is full. */
function seekReadFully(file: Deno.FsFile, target: Uint8Array, position: number): void {
  file.seekSync(position, Deno.SeekMode.Start);
  let done = 0;
  while (done < target.byteLength) {
    const count = file.readSync(done === 0 ? target : target.subarray(done));
    if (count === null) throw new Error(`read hit the end of the file at ${position + done}`);
    done += count;
  }
}

function sameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (actual.byteLength !== expected.byteLength) {
    throw new Error(`${what}: ${actual.byteLength} bytes instead of ${expected.byteLength}`);
  }
  for (let i = 0; i < expected.byteLength; i++) {
    if (actual[i] !== expected[i]) throw new Error(`${what}: wrong byte at ${i}`);
  }
}

function byteSum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.byteLength; i++) sum += bytes[i];
  return sum;
}

/** Writes `offsets` where numpy_memmap.py reads them (little-endian float64). */
function writeOffsets(path: string, offsets: Float64Array): void {
  Deno.writeFileSync(path, new Uint8Array(offsets.buffer, offsets.byteOffset, offsets.byteLength));
}

// ---------------------------------------------------------------------------------------------
// The session: files, handles, and the workloads built on them

interface Session {
  options: Options;
  dir: string;
  dataPath: string;
  expectedSum: number;
  map: MappedFile;
  view: Uint8Array;
  fd: number;
  denoFile: Deno.FsFile;
  pool: MapPool;
  pooled: PoolFile;
  numpy: NumpyPeer | undefined;
  evictor: CacheEvictor;
  /** A touched buffer of `sequentialBytes`: the target of every large read. */
  big: Uint8Array;
}

async function randomWorkload(
  s: Session,
  id: string,
  readBytes: number,
  ops: number,
  seed: number,
): Promise<Workload> {
  const { options, evictor } = s;
  const rounds = options.rounds;
  // Slice 0 is the warm-up's; round r reads slice r + 1. Every contender reads the same slice.
  const offsets = randomOffsets((rounds + 1) * ops, options.fileBytes, readBytes, seed);
  const range = (round: number): [number, number] => [(round + 1) * ops, (round + 2) * ops];

  // Every path must return the file's bytes: checked once, untimed, at three offsets.
  const checks = [offsets[0], offsets[offsets.length - 1], options.fileBytes - readBytes];
  const scratch = new Uint8Array(readBytes);
  for (const position of checks) {
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
  if (s.numpy !== undefined) {
    writeOffsets(join(s.dir, `offsets-${id}.bin`), offsets);
    await s.numpy.request({ op: "offsets", name: id, path: join(s.dir, `offsets-${id}.bin`) });
    const { sums } = await s.numpy.request<{ sums: number[] }>({
      op: "check",
      size: readBytes,
      offsets: checks,
    });
    checks.forEach((position, i) => {
      if (sums[i] !== byteSum(expectedBytes(position, readBytes))) {
        throw new Error(`numpy.memmap returned wrong bytes at ${position}`);
      }
    });
  }

  const preadTarget = new Uint8Array(readBytes);
  const seekTarget = new Uint8Array(readBytes);
  const mapTarget = new Uint8Array(readBytes);
  const manyTarget = new Uint8Array(READ_MANY_RANGES * readBytes);
  for (const how of ["MappedFile", "PoolFile"]) {
    manyTarget.fill(0);
    if (how === "MappedFile") s.map.readMany(manyTarget, Float64Array.from(checks), readBytes);
    else await s.pooled.readMany(manyTarget, Float64Array.from(checks), readBytes);
    checks.forEach((position, i) => {
      sameBytes(
        manyTarget.subarray(i * readBytes, (i + 1) * readBytes),
        expectedBytes(position, readBytes),
        `${how}.readMany at ${position}`,
      );
    });
  }
  const poolTarget = new Uint8Array(readBytes);
  const viewTarget = new Uint8Array(readBytes);
  let slices: Uint8Array[] = [];
  let pooledBatches = 0;
  let sameCpuBatches = 0;
  const evict = (): void => evictor.evict();
  const contenders: Contender[] = [
    {
      label: "node:fs readSync (pread)",
      family: "node",
      role: "baseline",
      before: evict,
      batch(round) {
        const [start, end] = range(round);
        const fd = s.fd;
        const t0 = performance.now();
        for (let i = start; i < end; i++) {
          if (readSync(fd, preadTarget, 0, readBytes, offsets[i]) !== readBytes) {
            preadFully(fd, preadTarget, offsets[i]);
          }
        }
        return performance.now() - t0;
      },
    },
    {
      label: "Deno.FsFile seekSync + readSync",
      family: "deno",
      role: "contender",
      before: evict,
      batch(round) {
        const [start, end] = range(round);
        const file = s.denoFile;
        const t0 = performance.now();
        for (let i = start; i < end; i++) seekReadFully(file, seekTarget, offsets[i]);
        return performance.now() - t0;
      },
    },
    {
      label: "MappedFile.read (guarded, in-process)",
      family: "guardmap",
      role: "contender",
      before: evict,
      batch(round) {
        const [start, end] = range(round);
        const map = s.map;
        const t0 = performance.now();
        for (let i = start; i < end; i++) map.read(mapTarget, offsets[i]);
        return performance.now() - t0;
      },
    },
    {
      label: `MappedFile.readMany (guarded, ${READ_MANY_RANGES} ranges per call)`,
      family: "batch",
      role: "contender",
      before: evict,
      batch(round) {
        const [start, end] = range(round);
        const map = s.map;
        const t0 = performance.now();
        for (let i = start; i < end; i += READ_MANY_RANGES) {
          map.readMany(
            manyTarget,
            offsets.subarray(i, Math.min(i + READ_MANY_RANGES, end)),
            readBytes,
          );
        }
        return performance.now() - t0;
      },
    },
    {
      label: "MapPool PoolFile.read (worker process)",
      family: "pool",
      role: "contender",
      before: evict,
      async batch(round) {
        const [start, end] = range(round);
        const pooled = s.pooled;
        const t0 = performance.now();
        for (let i = start; i < end; i++) await pooled.read(poolTarget, offsets[i]);
        return performance.now() - t0;
      },
      async after(round) {
        if (round < 0) return;
        const cpus = await processorsOf([Deno.pid, ...s.pool.pids]);
        if (cpus !== undefined && cpus.length === 2) {
          pooledBatches++;
          if (cpus[0] === cpus[1]) sameCpuBatches++;
        }
      },
    },
    {
      label: `MapPool PoolFile.readMany (${READ_MANY_RANGES} ranges per call)`,
      family: "pool",
      role: "contender",
      before: evict,
      async batch(round) {
        const [start, end] = range(round);
        const pooled = s.pooled;
        const t0 = performance.now();
        for (let i = start; i < end; i += READ_MANY_RANGES) {
          const positions = offsets.subarray(i, Math.min(i + READ_MANY_RANGES, end));
          await pooled.readMany(manyTarget, positions, readBytes);
        }
        return performance.now() - t0;
      },
    },
    {
      label: "unsafeView() + Uint8Array.set",
      family: "view",
      role: "ceiling",
      before(round) {
        // The subarrays are made here, so the timed loop allocates nothing.
        const [start, end] = range(round);
        slices = [];
        for (let i = start; i < end; i++) {
          slices.push(s.view.subarray(offsets[i], offsets[i] + readBytes));
        }
        evictor.evict();
      },
      batch() {
        const t0 = performance.now();
        for (let i = 0; i < slices.length; i++) viewTarget.set(slices[i]);
        return performance.now() - t0;
      },
    },
  ];
  if (readBytes === 4096 && navigator.hardwareConcurrency >= 2) {
    // Diagnostic: the same calls with the host's JavaScript thread and the worker pinned to two
    // different CPUs, so that neither spins while the other waits for the same CPU.
    const all = `0-${navigator.hardwareConcurrency - 1}`;
    const pin = async (host: string, worker: string): Promise<void> => {
      await commandText("taskset", ["-p", "-c", host, String(Deno.pid)]);
      for (const pid of s.pool.pids) {
        await commandText("taskset", ["-a", "-p", "-c", worker, String(pid)]);
      }
    };
    contenders.push({
      label: "MapPool PoolFile.read, host and worker pinned to CPUs 0 and 1",
      family: "pool",
      role: "contender",
      async before() {
        await pin("0", "1");
        evict();
      },
      async batch(round) {
        const [start, end] = range(round);
        const pooled = s.pooled;
        const t0 = performance.now();
        for (let i = start; i < end; i++) await pooled.read(poolTarget, offsets[i]);
        return performance.now() - t0;
      },
      after: () => pin(all, all),
    });
  }
  if (s.numpy !== undefined) {
    const numpy = s.numpy;
    for (const variant of ["array", "copyto"] as const) {
      contenders.push({
        label: variant === "array"
          ? "numpy.memmap np.array(mm[a:b])"
          : "numpy.memmap np.copyto(out, mm[a:b])",
        family: "numpy",
        role: "contender",
        before: evict,
        async batch(round) {
          const [start] = range(round);
          const { ns } = await numpy.request<{ ns: number }>({
            op: "read",
            name: id,
            size: readBytes,
            start,
            count: ops,
            variant,
            evict: true,
          });
          return ns / 1e6;
        },
      });
    }
  }
  return {
    id,
    title: `random ${formatBytes(readBytes)} reads`,
    operation: `copy ${formatBytes(readBytes)} from a random byte offset of the ` +
      `${formatBytes(options.fileBytes)} file into a reused buffer`,
    cache: "page cache hot; CPU caches and TLB emptied before each batch (1 GiB written through)",
    opsPerRound: ops,
    bytesPerOp: readBytes,
    throughput: false,
    rounds,
    contenders,
    notes: [
      `${ops} seeded offsets per round (xorshift32, seed 0x${seed.toString(16)}), a new slice ` +
      "of the sequence each round, the same slice for every contender of that round",
    ],
    finish: () =>
      pooledBatches === 0 ? [] : [
        `MapPool: the host and the worker process were on the same CPU at the end of ` +
        `${sameCpuBatches} of ${pooledBatches} timed batches (\`ps -o psr\`); on one CPU a ` +
        "pool call costs two spin windows (about 110 µs), see Where the time goes",
      ],
  };
}

/** `/sys/class/block/NAME/stat` of the device holding `dir`, when it is a plain block device. */
async function blockStatPath(dir: string): Promise<string | undefined> {
  const source = (await commandText("findmnt", ["-no", "SOURCE", "-T", dir]))?.trim();
  if (source === undefined || !source.startsWith("/dev/")) return undefined;
  return `/sys/class/block/${source.slice("/dev/".length)}/stat`;
}

/** Sectors (512 B) the device has written since boot, or undefined. */
async function sectorsWritten(statPath: string | undefined): Promise<number | undefined> {
  if (statPath === undefined) return undefined;
  // Through cat: Deno allows reads under /sys only with --allow-all.
  const fields = (await commandText("cat", [statPath]))?.trim().split(/\s+/);
  const value = Number(fields?.[6]);
  return Number.isFinite(value) ? value : undefined;
}

/** The CPU each process last ran on (`ps -o psr`), or undefined when ps is not available. */
async function processorsOf(pids: number[]): Promise<number[] | undefined> {
  const text = await commandText("ps", ["-o", "psr=", "-p", pids.join(",")]);
  if (text === undefined) return undefined;
  return text.split("\n").map((line) => Number(line.trim())).filter((n) => Number.isInteger(n));
}

async function sequentialHotWorkload(s: Session): Promise<Workload> {
  const { options, big } = s;
  const bytes = options.sequentialBytes;
  const parts = options.fileBytes / bytes;
  const ops = parts * options.ops.sequentialPasses;
  const position = (round: number, k: number): number => (((round + 1) * ops + k) % parts) * bytes;
  const positions = Array.from(
    { length: (options.rounds + 1) * ops },
    (_, i) => (i % parts) * bytes,
  );
  const source = new Uint8Array(bytes).fill(7);
  const check = (round: number): void => {
    const last = position(round, ops - 1);
    for (const at of [0, bytes - 64]) {
      sameBytes(big.subarray(at, at + 64), expectedBytes(last + at, 64), `sequential at ${last}`);
    }
  };
  const views = Array.from(
    { length: parts },
    (_, q) => s.view.subarray(q * bytes, (q + 1) * bytes),
  );
  const contenders: Contender[] = [
    {
      label: "node:fs readSync (pread)",
      family: "node",
      role: "baseline",
      batch(round) {
        const t0 = performance.now();
        for (let k = 0; k < ops; k++) preadFully(s.fd, big, position(round, k));
        return performance.now() - t0;
      },
      after: check,
    },
    {
      label: "Deno.FsFile seekSync + readSync",
      family: "deno",
      role: "contender",
      batch(round) {
        const t0 = performance.now();
        for (let k = 0; k < ops; k++) seekReadFully(s.denoFile, big, position(round, k));
        return performance.now() - t0;
      },
      after: check,
    },
    {
      label: "MappedFile.read (guarded, in-process)",
      family: "guardmap",
      role: "contender",
      batch(round) {
        const t0 = performance.now();
        for (let k = 0; k < ops; k++) s.map.read(big, position(round, k));
        return performance.now() - t0;
      },
      after: check,
    },
    {
      label: "MapPool PoolFile.read (worker process)",
      family: "pool",
      role: "contender",
      async batch(round) {
        const t0 = performance.now();
        for (let k = 0; k < ops; k++) await s.pooled.read(big, position(round, k));
        return performance.now() - t0;
      },
      after: check,
    },
    {
      label: "unsafeView() + Uint8Array.set",
      family: "view",
      role: "ceiling",
      batch(round) {
        const t0 = performance.now();
        for (let k = 0; k < ops; k++) big.set(views[position(round, k) / bytes]);
        return performance.now() - t0;
      },
      after: check,
    },
  ];
  if (s.numpy !== undefined) {
    const numpy = s.numpy;
    writeOffsets(join(s.dir, "offsets-sequential.bin"), new Float64Array(positions));
    await numpy.request({
      op: "offsets",
      name: "sequential",
      path: join(s.dir, "offsets-sequential.bin"),
    });
    for (const variant of ["array", "copyto"] as const) {
      contenders.push({
        label: variant === "array"
          ? "numpy.memmap np.array(mm[a:b])"
          : "numpy.memmap np.copyto(out, mm[a:b])",
        family: "numpy",
        role: "contender",
        async batch(round) {
          const { ns } = await numpy.request<{ ns: number }>({
            op: "read",
            name: "sequential",
            size: bytes,
            start: (round + 1) * ops,
            count: ops,
            variant,
          });
          return ns / 1e6;
        },
      });
    }
  }
  contenders.push({
    label: "memcpy limit: gm_memcpy, anonymous to anonymous",
    family: "limit",
    role: "limit",
    batch() {
      const lib = native();
      const t0 = performance.now();
      for (let k = 0; k < ops; k++) lib.gm_memcpy(big, source, bytes);
      return performance.now() - t0;
    },
  });
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

function reductionWorkload(s: Session): Workload {
  const { options } = s;
  const sums = options.ops.sums;
  const chunk = new Uint8Array(CHUNK_BYTES);
  const chunkValues = new Float64Array(chunk.buffer);
  const check = (label: string, sum: number): void => {
    if (sum !== s.expectedSum) {
      throw new Error(`${label} summed ${sum}, the file holds ${s.expectedSum}`);
    }
  };
  const contenders: Contender[] = [
    {
      label: "node:fs readSync 1 MiB chunks + sum",
      family: "node",
      role: "baseline",
      batch() {
        let sum = 0;
        const t0 = performance.now();
        for (let k = 0; k < sums; k++) {
          sum = 0;
          for (let at = 0; at < options.fileBytes; at += CHUNK_BYTES) {
            preadFully(s.fd, chunk, at);
            sum += sumArray(chunkValues);
          }
        }
        const elapsed = performance.now() - t0;
        check(this.label, sum);
        return elapsed;
      },
    },
    {
      label: "MappedFile.read 1 MiB chunks + sum (guarded)",
      family: "guardmap",
      role: "contender",
      batch() {
        let sum = 0;
        const t0 = performance.now();
        for (let k = 0; k < sums; k++) {
          sum = 0;
          for (let at = 0; at < options.fileBytes; at += CHUNK_BYTES) {
            s.map.read(chunk, at);
            sum += sumArray(chunkValues);
          }
        }
        const elapsed = performance.now() - t0;
        check(this.label, sum);
        return elapsed;
      },
    },
    {
      label: "kernels.ts sumFloat64 over unsafeView(), in-process",
      family: "view",
      role: "ceiling",
      batch() {
        let sum = 0;
        const t0 = performance.now();
        for (let k = 0; k < sums; k++) sum = sumFloat64(s.view);
        const elapsed = performance.now() - t0;
        check(this.label, sum);
        return elapsed;
      },
    },
    {
      label: "MapPool run(kernels.ts sumFloat64) in a worker",
      family: "pool",
      role: "contender",
      async batch() {
        let sum = 0;
        const t0 = performance.now();
        for (let k = 0; k < sums; k++) sum = await s.pooled.run<number>(KERNELS, "sumFloat64");
        const elapsed = performance.now() - t0;
        check(this.label, sum);
        return elapsed;
      },
    },
  ];
  if (s.numpy !== undefined) {
    const numpy = s.numpy;
    contenders.push({
      label: "numpy.memmap float64 mm.sum()",
      family: "numpy",
      role: "contender",
      async batch() {
        const { ns, sum } = await numpy.request<{ ns: number; sum: number }>({
          op: "sum",
          count: sums,
        });
        check(this.label, sum);
        return ns / 1e6;
      },
    });
  }
  return {
    id: "reduction",
    title: `reduction: sum of the float64 values of ${formatBytes(options.fileBytes)}`,
    operation: `sum all ${options.fileBytes / 8} float64 values of the file`,
    cache: "page cache hot; page tables filled beforehand",
    opsPerRound: sums,
    bytesPerOp: options.fileBytes,
    throughput: true,
    rounds: options.rounds,
    contenders,
    notes: [
      `every contender's sum is checked against the exact sum of the file (${s.expectedSum}); ` +
      "the JavaScript contenders share one loop (bench/kernels.ts `sumArray`, four " +
      "accumulators); the MapPool kernel runs in the worker over its zero-copy view",
    ],
  };
}

async function writesWorkload(s: Session): Promise<{ workload: Workload; close: () => void }> {
  const { options } = s;
  const path = join(s.dir, "writes.bin");
  writeDataFile(path, options.writeFileBytes);
  warmPageCache(path);
  const ops = options.ops.writes;
  const offsets = randomOffsets(
    (options.rounds + 1) * ops,
    options.writeFileBytes,
    4096,
    0x27d4eb2f,
    4096,
  );
  const range = (round: number): [number, number] => [(round + 1) * ops, (round + 2) * ops];
  const source = expectedBytes(0, 4096).slice();
  const fd = openSync(path, "r+");
  const map = MappedFile.open(path, { mode: "r+" });
  map.prefault({ write: true });
  const viaFile = MappedFile.open(path, { mode: "r+", writes: "pwrite" });
  const pooled = await s.pool.open(path, { mode: "r+" });
  await pooled.prefault({ write: true });
  // Vary the data a little from one write to the next, as a real workload would.
  const stamp = new DataView(source.buffer);
  let serial = 0;
  /** A contender whose operation is `step(offset)`: write 4 KiB there and make it durable. */
  const writer = (
    label: string,
    family: Family,
    role: Role,
    step: (offset: number) => void,
  ): Contender => ({
    label,
    family,
    role,
    batch(round) {
      const [start, end] = range(round);
      const t0 = performance.now();
      for (let i = start; i < end; i++) {
        stamp.setUint32(0, ++serial, true);
        step(offsets[i]);
      }
      return performance.now() - t0;
    },
  });
  const pageOf = (at: number) => ({ position: at, length: 4096 });
  const contenders: Contender[] = [
    writer("node:fs writeSync + fsyncSync", "node", "baseline", (at) => {
      writeSync(fd, source, 0, 4096, at);
      fsyncSync(fd);
    }),
    writer("node:fs writeSync + fdatasyncSync", "node", "contender", (at) => {
      writeSync(fd, source, 0, 4096, at);
      fdatasyncSync(fd);
    }),
    writer("MappedFile.write + flush() (whole window)", "guardmap", "contender", (at) => {
      map.write(source, at);
      map.flush();
    }),
    writer(
      "MappedFile.write + flush({ position, length: 4096 })",
      "guardmap",
      "contender",
      (at) => {
        map.write(source, at);
        map.flush(pageOf(at));
      },
    ),
    writer(
      'MappedFile.write + flush({ position, length: 4096 }), writes: "pwrite"',
      "guardmap",
      "contender",
      (at) => {
        viaFile.write(source, at);
        viaFile.flush(pageOf(at));
      },
    ),
    {
      label: "MapPool PoolFile.write + flush() (worker process)",
      family: "pool",
      role: "contender",
      async batch(round) {
        const [start, end] = range(round);
        const t0 = performance.now();
        for (let i = start; i < end; i++) {
          stamp.setUint32(0, ++serial, true);
          await pooled.write(source, offsets[i]);
          await pooled.flush();
        }
        return performance.now() - t0;
      },
    },
  ];
  // Bytes the device wrote during each batch (/sys/class/block/DEV/stat, sectors written):
  // shows how much each way of writing 4 KiB really sends to the disk.
  const statPath = await blockStatPath(s.dir);
  const deviceBytes = new Map<string, number>();
  let sectorsBefore: number | undefined;
  for (const contender of contenders) {
    contender.before = async () => {
      sectorsBefore = await sectorsWritten(statPath);
    };
    contender.after = async (round) => {
      const sectorsAfter = await sectorsWritten(statPath);
      if (round < 0 || sectorsBefore === undefined || sectorsAfter === undefined) return;
      const bytes = (sectorsAfter - sectorsBefore) * 512;
      deviceBytes.set(contender.label, (deviceBytes.get(contender.label) ?? 0) + bytes);
    };
  }
  return {
    workload: {
      id: "writes",
      title: "random 4 KiB writes + flush",
      operation: `write 4 KiB at a random page-aligned offset of a ${
        formatBytes(options.writeFileBytes)
      } file, then make it durable (fsync / fdatasync / msync(MS_SYNC))`,
      cache: "page cache hot (file written, synced and read before timing)",
      opsPerRound: ops,
      bytesPerOp: 0,
      throughput: false,
      rounds: options.rounds,
      contenders,
      notes: [
        "all contenders write to the same file, one after another; each operation waits for " +
        "the device before the next starts",
      ],
      finish: () =>
        deviceBytes.size === 0 ? ["device write counters not available"] : [
          `bytes the device (${statPath}) wrote per operation, over all timed batches (all ` +
          `writers on the machine count): ${
            [...deviceBytes].map(([label, bytes]) =>
              `${label}: ${formatBytes(Math.round(bytes / (ops * options.rounds) / 1024) * 1024)}`
            ).join("; ")
          }`,
        ],
    },
    close: () => {
      closeSync(fd);
      map.close();
      viaFile.close();
      void pooled.close();
    },
  };
}

async function sequentialColdWorkload(s: Session): Promise<Workload | WorkloadResult> {
  const { options, big } = s;
  const bytes = options.sequentialBytes;
  const title = `sequential ${formatBytes(bytes)} reads, cold`;
  const operation = `copy a whole ${formatBytes(bytes)} file, freshly dropped from the page ` +
    "cache, into one preallocated buffer";
  const cache = "page cache cold: `sync; echo 1 > /proc/sys/vm/drop_caches` before every " +
    "operation, with no map of the file in any process";
  const path = join(s.dir, "cold.bin");
  writeDataFile(path, bytes);
  const drop = await dropPageCache();
  if (!drop.ok) {
    Deno.removeSync(path);
    return skipped(
      "sequential-cold",
      title,
      operation,
      cache,
      `writing /proc/sys/vm/drop_caches failed (${drop.error}); needs root. Only hot-cache ` +
        "results are reported.",
    );
  }
  let maxResident = 0;
  let residencyKnown = true;
  const dropped = async (): Promise<void> => {
    const result = await dropPageCache();
    if (!result.ok) throw new Error(`drop_caches stopped working: ${result.error}`);
    const resident = await residentBytes(path);
    if (resident === undefined) residencyKnown = false;
    else maxResident = Math.max(maxResident, resident);
  };
  const target = big.subarray(0, bytes);
  const check = (): void => {
    for (const at of [0, bytes - 64]) {
      sameBytes(target.subarray(at, at + 64), expectedBytes(at, 64), "cold read");
    }
    target.fill(0, 0, 64);
    target.fill(0, bytes - 64);
  };
  const fd = openSync(path, "r");
  const denoFile = Deno.openSync(path, { read: true });
  let map: MappedFile | undefined;
  let pooled: PoolFile | undefined;
  const contenders: Contender[] = [
    {
      label: "node:fs readSync (pread)",
      family: "node",
      role: "baseline",
      before: dropped,
      batch() {
        const t0 = performance.now();
        preadFully(fd, target, 0);
        return performance.now() - t0;
      },
      after: check,
    },
    {
      label: "Deno.FsFile seekSync + readSync",
      family: "deno",
      role: "contender",
      before: dropped,
      batch() {
        const t0 = performance.now();
        seekReadFully(denoFile, target, 0);
        return performance.now() - t0;
      },
      after: check,
    },
    {
      label: "MappedFile.read (guarded, in-process)",
      family: "guardmap",
      role: "contender",
      async before() {
        map = MappedFile.open(path);
        await dropped();
      },
      batch() {
        const t0 = performance.now();
        map!.read(target, 0);
        return performance.now() - t0;
      },
      after() {
        map!.close();
        check();
      },
    },
    {
      label: "MapPool PoolFile.read (worker process)",
      family: "pool",
      role: "contender",
      async before() {
        pooled = await s.pool.open(path);
        await dropped();
      },
      async batch() {
        const t0 = performance.now();
        await pooled!.read(target, 0);
        return performance.now() - t0;
      },
      async after() {
        await pooled!.close();
        check();
      },
    },
    {
      label: "unsafeView() + Uint8Array.set",
      family: "view",
      role: "ceiling",
      async before() {
        map = MappedFile.open(path);
        await dropped();
      },
      batch() {
        const view = map!.unsafeView();
        const t0 = performance.now();
        target.set(view);
        return performance.now() - t0;
      },
      after() {
        map!.close();
        check();
      },
    },
  ];
  if (s.numpy !== undefined) {
    const numpy = s.numpy;
    contenders.push({
      label: "numpy.memmap np.copyto(out, mm)",
      family: "numpy",
      role: "contender",
      async before() {
        await numpy.request({ op: "cold_open", path });
        await dropped();
      },
      async batch() {
        const { ns } = await numpy.request<{ ns: number }>({ op: "cold_read" });
        return ns / 1e6;
      },
    });
  }
  return {
    id: "sequential-cold",
    title,
    operation,
    cache,
    opsPerRound: 1,
    bytesPerOp: bytes,
    throughput: true,
    rounds: options.coldRounds,
    contenders,
    notes: ["the cold file is on the same file system as the hot data file (see Run)"],
    finish() {
      closeSync(fd);
      denoFile.close();
      return [
        residencyKnown
          ? `after every drop, fincore found at most ${formatBytes(maxResident)} of the file ` +
            "still in the page cache"
          : "fincore was not available to check residency after the drops",
      ];
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Facts about the machine and the software

async function commandText(command: string, args: string[]): Promise<string | undefined> {
  try {
    const output = await new Deno.Command(command, { args, stdout: "piped", stderr: "null" })
      .output();
    return output.success ? new TextDecoder().decode(output.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

/** What the machine looked like when the run started: load and free memory. */
interface StartState {
  loadavg: number[];
  availableBytes: number;
}

function startState(): StartState {
  return { loadavg: Deno.loadavg(), availableBytes: Deno.systemMemoryInfo().available };
}

async function machineFacts(dir: string, start: StartState): Promise<string[]> {
  const lscpu = (await commandText("lscpu", [])) ?? "";
  const field = (name: string): string | undefined =>
    lscpu.split("\n").find((line) => line.startsWith(`${name}:`))?.split(":").slice(1).join(":")
      .trim();
  const memory = Deno.systemMemoryInfo();
  const fs = (await commandText("findmnt", ["-no", "FSTYPE,SOURCE", "-T", dir]))
    ?.replace(/\s+/g, " ");
  const thp = readText("/sys/kernel/mm/transparent_hugepage/enabled") ??
    (await commandText("cat", ["/sys/kernel/mm/transparent_hugepage/enabled"]));
  const loads = (values: number[]): string => values.map((load) => load.toFixed(2)).join(", ");
  return [
    `Machine: ${field("Model name") ?? "unknown CPU"}` +
    `${field("Hypervisor vendor") ? ` (${field("Hypervisor vendor")} guest)` : ""}, ` +
    `${navigator.hardwareConcurrency} cores, L2 ${field("L2 cache") ?? "?"}, ` +
    `L3 ${field("L3 cache") ?? "?"}, ${(memory.total / GIB).toFixed(0)} GiB RAM ` +
    `(${(start.availableBytes / GIB).toFixed(1)} GiB available at the start)`,
    `Linux ${Deno.osRelease()}; files in ${dir} on ${fs ?? "?"}; transparent huge pages: ${
      thp ?? "?"
    }`,
    `Load average (1, 5, 15 min) at the start: ${loads(start.loadavg)}; at the end: ` +
    `${loads(Deno.loadavg())}. The machine is shared: other sessions' work may have run ` +
    "during the run.",
  ];
}

// ---------------------------------------------------------------------------------------------
// Targets

function find(
  workloads: readonly WorkloadResult[],
  id: string,
  family: Family,
  label?: string,
) {
  const workload = workloads.find((w) => w.id === id && w.skipped === undefined);
  return workload?.contenders.find((c) =>
    c.family === family && (label === undefined || c.label.includes(label))
  );
}

function judge(workloads: readonly WorkloadResult[]): TargetResult[] {
  const targets: TargetResult[] = [];
  const ratioTarget = (
    id: string,
    size: string,
    wanted: number,
    family: Family = "guardmap",
  ): void => {
    const guarded = find(workloads, id, family);
    const pread = find(workloads, id, "node");
    const how = family === "batch"
      ? ` (batched: \`readMany\`, ${READ_MANY_RANGES} reads per call)`
      : " (one `read` call per read)";
    targets.push({
      target: `in-process guarded random ${size} read at least ${wanted}x as fast as pread${how}`,
      measured: guarded && pread
        ? `${formatRatio(guarded.ratio)} (${formatTime(guarded.median)} vs ${
          formatTime(pread.median)
        })`
        : "not measured",
      met: guarded ? guarded.ratio >= wanted : undefined,
    });
  };
  ratioTarget("random-4k", "4 KiB", 5);
  ratioTarget("random-64", "64 B", 10);
  ratioTarget("random-4k", "4 KiB", 5, "batch");
  ratioTarget("random-64", "64 B", 10, "batch");
  const guarded = find(workloads, "sequential-hot", "guardmap");
  const limit = find(workloads, "sequential-hot", "limit");
  const numpyCopy = find(workloads, "sequential-hot", "numpy", "copyto");
  const numpyArray = find(workloads, "sequential-hot", "numpy", "np.array");
  const pool = find(workloads, "sequential-hot", "pool");
  const rate = (entry: { bytesPerSecond: number | undefined } | undefined): number =>
    entry?.bytesPerSecond ?? NaN;
  targets.push({
    target: "guarded sequential read at least 0.85x the memcpy limit",
    measured: guarded && limit
      ? `${(rate(guarded) / rate(limit)).toFixed(3)}x (${formatRate(rate(guarded))} vs ${
        formatRate(rate(limit))
      })`
      : "not measured",
    met: guarded && limit ? rate(guarded) / rate(limit) >= 0.85 : undefined,
  });
  targets.push({
    target: "guarded sequential read at least as fast as numpy.memmap's copy",
    measured: guarded && numpyCopy
      ? `${formatRate(rate(guarded))} vs np.copyto ${formatRate(rate(numpyCopy))}` +
        (numpyArray ? ` and np.array ${formatRate(rate(numpyArray))}` : "")
      : "not measured",
    met: guarded && numpyCopy
      ? rate(guarded) >= Math.max(rate(numpyCopy), rate(numpyArray) || 0)
      : undefined,
  });
  const pool4k = find(workloads, "random-4k", "pool");
  targets.push({
    target: "MapPool random 4 KiB read: median at most 20 µs",
    measured: pool4k ? formatTime(pool4k.median) : "not measured",
    met: pool4k ? pool4k.median <= 0.020 : undefined,
  });
  targets.push({
    target: "MapPool sequential read at least 0.5x the in-process guarded read",
    measured: pool && guarded
      ? `${(rate(pool) / rate(guarded)).toFixed(3)}x (${formatRate(rate(pool))} vs ${
        formatRate(rate(guarded))
      })`
      : "not measured",
    met: pool && guarded ? rate(pool) / rate(guarded) >= 0.5 : undefined,
  });
  return targets;
}

// ---------------------------------------------------------------------------------------------
// Main

function method(options: Options): string[] {
  return [
    "Each workload runs its contenders interleaved in one process run: a warm-up batch of " +
    `each, then ${options.rounds} rounds (cold: ${options.coldRounds}) of one batch per ` +
    "contender, in an order shuffled anew each round (seeded, the same in every run) so that no " +
    "contender always follows the same one. A batch times many operations with `performance.now()` " +
    "(`time.perf_counter_ns()` in Python, garbage collector off); the per-operation time of a " +
    "round is the batch's time divided by its operations.",
    "Reported per contender: the median over the rounds of the per-operation time; the ratio " +
    "is the baseline's median divided by the contender's. Baseline: node:fs (`readSync(fd, buf, " +
    "0, n, position)`, a pread; `writeSync` + `fsyncSync` for writes; pread chunks + the same " +
    "sum loop for the reduction).",
    "Same file and same offsets for every contender: the offsets are precomputed from a seeded " +
    "xorshift32; numpy reads them from a file the harness writes. All reads land in buffers " +
    "allocated and touched before timing (except numpy's `np.array`, which allocates, as it " +
    "does in real use). Every contender's bytes are checked against the file's known contents " +
    "before timing, the large reads after every batch, and every sum exactly.",
    "numpy runs in a Python subprocess (bench/numpy_memmap.py) that the harness drives one " +
    "batch at a time, so its batches take their turn in the same rounds; its process starts " +
    "without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE.",
    "MapPool: one worker process (`new MapPool({ workers: 1 })`, default 4 MiB staging), the " +
    "file opened once and prefaulted in the worker; each read is `await file.read(...)`.",
    "The memcpy limit: the library's `gm_memcpy` (a plain memcpy, single thread) between two " +
    "anonymous buffers of the sequential read's size, both touched before timing.",
  ];
}

async function main(): Promise<void> {
  const options = parseOptions(Deno.args);
  const started = performance.now();
  const start = startState();
  const date = new Date();
  const runs = (id: string): boolean => options.only === undefined || options.only.has(id);
  Deno.mkdirSync(options.out, { recursive: true });
  const dir = Deno.makeTempDirSync({ prefix: "guardmap-compare-" });
  const cleanups: (() => void | Promise<void>)[] = [];
  const removeDir = (): void => {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // Already gone.
    }
  };
  Deno.addSignalListener("SIGINT", () => {
    removeDir();
    Deno.exit(130);
  });
  const nominal = new Map<string, number>(
    (options.quick
      ? [
        ["random-64", 4],
        ["random-4k", 3],
        ["random-64k", 3],
        ["sequential-hot", 5],
        [
          "reduction",
          5,
        ],
        ["writes", 5],
        ["sequential-cold", 8],
      ]
      : [
        ["random-64", 12],
        ["random-4k", 10],
        ["random-64k", 8],
        ["sequential-hot", 25],
        [
          "reduction",
          25,
        ],
        ["writes", 20],
        ["sequential-cold", 25],
      ]).filter(([id]) => runs(id as string)) as [
        string,
        number,
      ][],
  );
  const progress = new Progress(nominal);
  try {
    say(
      `writing the ${formatBytes(options.fileBytes)} data file into ${dir} ` +
        `(${options.quick ? "--quick" : "full run"}; ${options.rounds} rounds)`,
    );
    const dataPath = join(dir, "data.bin");
    const expectedSum = writeDataFile(dataPath, options.fileBytes);
    if (warmPageCache(dataPath) !== options.fileBytes) throw new Error("short data file");
    const map = MappedFile.open(dataPath);
    map.prefault();
    cleanups.push(() => map.close());
    const fd = openSync(dataPath, "r");
    cleanups.push(() => closeSync(fd));
    const denoFile = Deno.openSync(dataPath, { read: true });
    cleanups.push(() => denoFile.close());
    say("starting the MapPool worker");
    const pool = new MapPool({ workers: 1 });
    cleanups.push(() => pool.close());
    const pooled = await pool.open(dataPath);
    await pooled.prefault();
    let numpy: NumpyPeer | undefined;
    let numpyInfo: { numpy: string; python: string; simd: string[] } | undefined;
    if (options.numpy) {
      say("starting numpy_memmap.py");
      const pythonPath = join(ROOT, ".tools", "python");
      numpy = new NumpyPeer(Deno.env.get("PYTHON") ?? "python3", pythonPath);
      const peer = numpy;
      cleanups.push(() => peer.close());
      try {
        numpyInfo = await numpy.request({ op: "info" });
      } catch (error) {
        throw new Error(
          `numpy could not be loaded (${error instanceof Error ? error.message : error}). ` +
            "Run `tools/dev compare`, which installs the pinned numpy into .tools/python, or " +
            "pass --no-numpy.",
        );
      }
      const opened = await numpy.request<{ sum: number }>({ op: "open", path: dataPath });
      if (opened.sum !== expectedSum) {
        throw new Error(`numpy summed ${opened.sum}, the file holds ${expectedSum}`);
      }
    }
    const session: Session = {
      options,
      dir,
      dataPath,
      expectedSum,
      map,
      view: map.unsafeView(),
      fd,
      denoFile,
      pool,
      pooled,
      numpy,
      evictor: new CacheEvictor(),
      big: new Uint8Array(options.sequentialBytes).fill(1),
    };
    session.evictor.evict();

    const results: WorkloadResult[] = [];
    const plan: [string, number, number][] = [
      ["random-64", 64, options.ops.random64],
      ["random-4k", 4 * KIB, options.ops.random4k],
      ["random-64k", 64 * KIB, options.ops.random64k],
    ];
    for (const [id, bytes, ops] of plan) {
      if (!runs(id)) continue;
      warmPageCache(dataPath);
      const seed = (0x9e3779b9 ^ Math.imul(bytes, 0x85ebca6b)) >>> 0;
      results.push(
        await runWorkload(await randomWorkload(session, id, bytes, ops, seed), progress),
      );
    }
    if (runs("sequential-hot")) {
      warmPageCache(dataPath);
      results.push(await runWorkload(await sequentialHotWorkload(session), progress));
    }
    if (runs("reduction")) {
      warmPageCache(dataPath);
      results.push(await runWorkload(reductionWorkload(session), progress));
    }
    if (runs("writes")) {
      const { workload, close } = await writesWorkload(session);
      results.push(await runWorkload(workload, progress));
      close();
    }
    let coldState = "not run (--no-cold or --only)";
    if (runs("sequential-cold") && options.cold) {
      const cold = await sequentialColdWorkload(session);
      if ("skipped" in cold && cold.skipped !== undefined) {
        say(`cold workload skipped: ${cold.skipped}`);
        results.push(cold);
        coldState = `not run: ${cold.skipped}`;
      } else {
        results.push(await runWorkload(cold as Workload, progress));
        coldState = "`sync; echo 1 > /proc/sys/vm/drop_caches` worked (run as root); it was " +
          "done before every cold operation";
      }
    }

    const seconds = (performance.now() - started) / 1000;
    const gitHead = await commandText("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"]);
    const gitDirty = await commandText("git", ["-C", ROOT, "status", "--porcelain"]);
    const run: RunInfo = {
      date: date.toISOString().replace(/\.\d+Z$/, "Z"),
      command: ["deno task compare", ...Deno.args].join(" "),
      seconds,
      quick: options.quick,
      machine: await machineFacts(dir, start),
      software: [
        `Deno ${Deno.version.deno} (V8 ${Deno.version.v8}), ${Deno.build.target}`,
        numpyInfo
          ? `numpy ${numpyInfo.numpy} on Python ${numpyInfo.python}; SIMD found: ${
            numpyInfo.simd.join(" ")
          }`
          : "numpy: not run (--no-numpy)",
        `libguardmap: ${relative(ROOT, libraryPath() ?? "?")} (tools/dev builds it ` +
        "ReleaseSafe); source tree at " +
        `${gitHead ?? "?"}${gitDirty ? " with uncommitted changes" : ""}`,
      ],
      cache: [
        "Hot: before each hot workload the data file is read once from start to end; every map " +
        "(in-process, the MapPool worker's, numpy's) had its pages touched once before timing.",
        "CPU caches: all contenders of a round read the same offsets, so before each batch of " +
        "random reads the harness writes through a 1 GiB buffer (and the Python process a 64 MiB " +
        "one on its own core): no batch finds data, page-table lines or TLB entries another " +
        "batch loaded. (A 64 MiB sweep, twice the reported L3, was not enough here: see Where " +
        "the time goes.)",
        `Cold (sequential read only): ${coldState}.`,
      ],
      method: method(options),
    };
    const targets = judge(results);
    let analysis: string | undefined;
    try {
      analysis = Deno.readTextFileSync(join(ROOT, "bench", "where_the_time_goes.md"));
    } catch {
      analysis = undefined;
    }
    const chartFile = "results.svg";
    Deno.writeTextFileSync(
      join(options.out, "RESULTS.md"),
      renderMarkdown(run, results, targets, analysis, chartFile),
    );
    Deno.writeTextFileSync(join(options.out, chartFile), renderSvg(run, results));
    // `deno fmt` formats Markdown and SVG too: leave the reports as the project's check wants
    // them.
    await new Deno.Command(Deno.execPath(), {
      args: ["fmt", "--quiet", join(options.out, "RESULTS.md"), join(options.out, chartFile)],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    const rawDir = join(ROOT, "bench", "out");
    Deno.mkdirSync(rawDir, { recursive: true });
    const rawPath = join(rawDir, `compare-${run.date.replace(/[:]/g, "")}.json`);
    Deno.writeTextFileSync(rawPath, JSON.stringify({ run, targets, results }, null, 2) + "\n");
    say(`wrote ${join(options.out, "RESULTS.md")}, ${join(options.out, chartFile)} and ${rawPath}`);
    for (const target of targets) {
      say(
        `target ${target.met === undefined ? "?" : target.met ? "met" : "NOT met"}: ` +
          `${target.target}: ${target.measured}`,
      );
    }
    say(`done in ${clock(seconds)}`);
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch {
        // Best effort: the temporary directory goes below in any case.
      }
    }
    removeDir();
  }
}

if (import.meta.main) {
  await main();
}
