/**
 * Sequential reads of a whole file freshly dropped from the page cache (needs root for
 * `drop_caches`), each contender with no map of the file open while the cache is dropped.
 *
 * @module
 */
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import { MappedFile, type PoolFile } from "../../mod.ts";
import { dropPageCache, expectedBytes, residentBytes, writeDataFile } from "./data.ts";
import { preadFully, sameBytes, seekReadFully } from "./io.ts";
import { formatBytes, type WorkloadResult } from "./report.ts";
import {
  type Contender,
  type ContenderSpec,
  ONE_OPERATION,
  skippedResult,
  timedContender,
  type Workload,
  type WorkloadEntry,
} from "./runner.ts";
import type { Session } from "./session.ts";

/** What the contenders of the workload share. */
interface ColdRun {
  s: Session;
  path: string;
  /** The start of `s.big`, as long as the file. */
  target: Uint8Array;
  fd: number;
  denoFile: Deno.FsFile;
  /** Drops the page cache and records how much of the file stayed in it. */
  dropped: () => Promise<void>;
  /** Checks the first and last 64 bytes of `target`, then zeroes them. */
  check: () => void;
}

function coldReader(
  c: ColdRun,
  spec: Omit<ContenderSpec, "before" | "after">,
  read: () => void,
): Contender {
  return timedContender({ ...spec, before: c.dropped, after: c.check }, ONE_OPERATION, read);
}

function preadCold(c: ColdRun): Contender {
  const spec = { label: "node:fs readSync (pread)", family: "node", role: "baseline" } as const;
  return coldReader(c, spec, () => preadFully(c.fd, c.target, 0));
}

function fsFileCold(c: ColdRun): Contender {
  const label = "Deno.FsFile seekSync + readSync";
  const spec: ContenderSpec = { label, family: "deno", role: "contender" };
  return coldReader(c, spec, () => seekReadFully(c.denoFile, c.target, 0));
}

/**
 * A contender with a map opened before every drop and closed after every batch; `prepare`
 * (untimed, after the drop) returns the timed read.
 */
function mapCold(
  c: ColdRun,
  spec: ContenderSpec,
  prepare: (map: MappedFile) => () => void,
): Contender {
  let map: MappedFile | undefined;
  let read = (): void => {};
  const before = async (): Promise<void> => {
    map = MappedFile.open(c.path);
    await c.dropped();
    read = prepare(map);
  };
  const after = (): void => {
    map!.close();
    c.check();
  };
  return timedContender({ ...spec, before, after }, ONE_OPERATION, () => read());
}

function mapReadCold(c: ColdRun): Contender {
  const label = "MappedFile.read (guarded, in-process)";
  return mapCold(c, { label, family: "guardmap", role: "contender" }, (map) => () => {
    map.read(c.target, 0);
  });
}

function viewCold(c: ColdRun): Contender {
  const label = "unsafeView() + Uint8Array.set";
  return mapCold(c, { label, family: "view", role: "ceiling" }, (map) => {
    const view = map.unsafeView();
    return () => c.target.set(view);
  });
}

function poolCold(c: ColdRun): Contender {
  let pooled: PoolFile | undefined;
  const spec: ContenderSpec = {
    label: "MapPool PoolFile.read (worker process)",
    family: "pool",
    role: "contender",
    async before() {
      pooled = await c.s.pool.open(c.path);
      await c.dropped();
    },
    async after() {
      await pooled!.close();
      c.check();
    },
  };
  return timedContender(spec, ONE_OPERATION, async () => {
    await pooled!.read(c.target, 0);
  });
}

function numpyCold(c: ColdRun): Contender[] {
  const numpy = c.s.numpy;
  if (numpy === undefined) return [];
  return [{
    label: "numpy.memmap np.copyto(out, mm)",
    family: "numpy",
    role: "contender",
    async before() {
      await numpy.request({ op: "cold_open", path: c.path });
      await c.dropped();
    },
    async batch() {
      const { ns } = await numpy.request<{ ns: number }>({ op: "cold_read" });
      return ns / 1e6;
    },
  }];
}

/** The contenders of the workload, in the order they are listed. */
const COLD_READERS: readonly ((c: ColdRun) => Contender | Contender[])[] = [
  preadCold,
  fsFileCold,
  mapReadCold,
  poolCold,
  viewCold,
  numpyCold,
];

/** The cache-dropping hook: drops, then records how much of `path` stayed resident. */
function residency(path: string): { dropped: () => Promise<void>; note: () => string } {
  const seen = { maxResident: 0, known: true };
  const dropped = async (): Promise<void> => {
    const result = await dropPageCache();
    if (!result.ok) throw new Error(`drop_caches stopped working: ${result.error}`);
    const resident = await residentBytes(path);
    if (resident === undefined) seen.known = false;
    else seen.maxResident = Math.max(seen.maxResident, resident);
  };
  const note = (): string =>
    seen.known
      ? `after every drop, fincore found at most ${formatBytes(seen.maxResident)} of the file ` +
        "still in the page cache"
      : "fincore was not available to check residency after the drops";
  return { dropped, note };
}

async function sequentialColdWorkload(s: Session): Promise<Workload | WorkloadResult> {
  const { options, big } = s;
  const bytes = options.sequentialBytes;
  const described = {
    id: "sequential-cold",
    title: `sequential ${formatBytes(bytes)} reads, cold`,
    operation: `copy a whole ${formatBytes(bytes)} file, freshly dropped from the page ` +
      "cache, into one preallocated buffer",
    cache: "page cache cold: `sync; echo 1 > /proc/sys/vm/drop_caches` before every " +
      "operation, with no map of the file in any process",
  };
  const path = join(s.dir, "cold.bin");
  writeDataFile(path, bytes);
  const drop = await dropPageCache();
  if (!drop.ok) {
    Deno.removeSync(path);
    return skippedResult(
      described,
      `writing /proc/sys/vm/drop_caches failed (${drop.error}); needs root. Only hot-cache ` +
        "results are reported.",
    );
  }
  const { dropped, note } = residency(path);
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
  const c: ColdRun = { s, path, target, fd, denoFile, dropped, check };
  return {
    ...described,
    opsPerRound: 1,
    bytesPerOp: bytes,
    throughput: true,
    rounds: options.coldRounds,
    contenders: COLD_READERS.flatMap((make) => make(c)),
    notes: ["the cold file is on the same file system as the hot data file (see Run)"],
    finish: () => [note()],
    close() {
      closeSync(fd);
      denoFile.close();
    },
  };
}

/** The cold sequential read: runs unless `--no-cold`; skipped when it cannot drop the cache. */
export const SEQUENTIAL_COLD: WorkloadEntry = {
  id: "sequential-cold",
  seconds: [8, 25],
  enabled: (options) => options.cold,
  build: sequentialColdWorkload,
};
