/**
 * The reduction: the sum of every float64 value of the data file, read in 1 MiB chunks, summed
 * over the map in-process, in the MapPool worker, and by numpy; every sum checked exactly.
 *
 * @module
 */
import { sumArray, sumFloat64 } from "../kernels.ts";
import { CHUNK_BYTES, warmPageCache } from "./data.ts";
import { preadFully } from "./io.ts";
import { scaled } from "./options.ts";
import { formatBytes } from "./report.ts";
import {
  type Contender,
  type ContenderSpec,
  ONE_OPERATION,
  timedContender,
  type Workload,
  type WorkloadEntry,
} from "./runner.ts";
import type { Session } from "./session.ts";

const KERNELS = new URL("../kernels.ts", import.meta.url);

/** What the contenders of the workload share. */
interface ReductionRun {
  s: Session;
  /** Sums of the whole file per batch. */
  sums: number;
  /** The chunk the chunked contenders read into, and its float64 values. */
  chunk: Uint8Array;
  chunkValues: Float64Array;
}

/** Throws unless `sum` is the exact sum of the file. */
function checkSum(q: ReductionRun, label: string, sum: number): void {
  if (sum !== q.s.expectedSum) {
    throw new Error(`${label} summed ${sum}, the file holds ${q.s.expectedSum}`);
  }
}

/** A contender that sums the file `sums` times per batch with `once`, then checks the sum. */
function summer(q: ReductionRun, spec: ContenderSpec, once: () => number): Contender {
  let sum = 0;
  const after = (): void => checkSum(q, spec.label, sum);
  return timedContender({ ...spec, after }, ONE_OPERATION, () => {
    for (let k = 0; k < q.sums; k++) sum = once();
  });
}

/** The sum of the file read through `read` in 1 MiB chunks, with the shared JavaScript loop. */
function chunkedSum(q: ReductionRun, read: (chunk: Uint8Array, at: number) => void): number {
  let sum = 0;
  for (let at = 0; at < q.s.options.fileBytes; at += CHUNK_BYTES) {
    read(q.chunk, at);
    sum += sumArray(q.chunkValues);
  }
  return sum;
}

function preadSummer(q: ReductionRun): Contender {
  const label = "node:fs readSync 1 MiB chunks + sum";
  const read = (chunk: Uint8Array, at: number): void => preadFully(q.s.fd, chunk, at);
  return summer(q, { label, family: "node", role: "baseline" }, () => chunkedSum(q, read));
}

function mapSummer(q: ReductionRun): Contender {
  const label = "MappedFile.read 1 MiB chunks + sum (guarded)";
  const read = (chunk: Uint8Array, at: number): void => {
    q.s.map.read(chunk, at);
  };
  return summer(q, { label, family: "guardmap", role: "contender" }, () => chunkedSum(q, read));
}

function viewSummer(q: ReductionRun): Contender {
  const label = "kernels.ts sumFloat64 over unsafeView(), in-process";
  return summer(q, { label, family: "view", role: "ceiling" }, () => sumFloat64(q.s.view));
}

function poolSummer(q: ReductionRun): Contender {
  const label = "MapPool run(kernels.ts sumFloat64) in a worker";
  let sum = 0;
  const after = (): void => checkSum(q, label, sum);
  const spec: ContenderSpec = { label, family: "pool", role: "contender", after };
  return timedContender(spec, ONE_OPERATION, async () => {
    for (let k = 0; k < q.sums; k++) sum = await q.s.pooled.run<number>(KERNELS, "sumFloat64");
  });
}

/** numpy's `mm.sum()`, timed in Python. */
function numpySummer(q: ReductionRun): Contender[] {
  const numpy = q.s.numpy;
  if (numpy === undefined) return [];
  const label = "numpy.memmap float64 mm.sum()";
  let sum = 0;
  return [{
    label,
    family: "numpy",
    role: "contender",
    async batch() {
      const answer = await numpy.request<{ ns: number; sum: number }>({
        op: "sum",
        count: q.sums,
      });
      sum = answer.sum;
      return answer.ns / 1e6;
    },
    after: () => checkSum(q, label, sum),
  }];
}

/** The contenders of the workload, in the order they are listed. */
const SUMMERS: readonly ((q: ReductionRun) => Contender[] | Contender)[] = [
  preadSummer,
  mapSummer,
  viewSummer,
  poolSummer,
  numpySummer,
];

function reductionWorkload(s: Session): Promise<Workload> {
  warmPageCache(s.dataPath);
  const { options } = s;
  const chunk = new Uint8Array(CHUNK_BYTES);
  const q: ReductionRun = {
    s,
    sums: scaled(options, 1, 2),
    chunk,
    chunkValues: new Float64Array(chunk.buffer),
  };
  return Promise.resolve({
    id: "reduction",
    title: `reduction: sum of the float64 values of ${formatBytes(options.fileBytes)}`,
    operation: `sum all ${options.fileBytes / 8} float64 values of the file`,
    cache: "page cache hot; page tables filled beforehand",
    opsPerRound: q.sums,
    bytesPerOp: options.fileBytes,
    throughput: true,
    rounds: options.rounds,
    contenders: SUMMERS.flatMap((make) => make(q)),
    notes: [
      `every contender's sum is checked against the exact sum of the file (${s.expectedSum}); ` +
      "the JavaScript contenders share one loop (bench/kernels.ts `sumArray`, four " +
      "accumulators); the MapPool kernel runs in the worker over its zero-copy view",
    ],
  });
}

/** The reduction; sums of the whole file per round: 1 (quick) or 2. */
export const REDUCTION: WorkloadEntry = {
  id: "reduction",
  seconds: [5, 25],
  build: reductionWorkload,
};
