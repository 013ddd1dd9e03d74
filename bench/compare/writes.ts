/**
 * Random writes of 4 KiB, 64 KiB, 1 MiB and 64 MiB at page-aligned offsets of a separate file:
 * `writeSync` (with and without `fsync`), `MappedFile.write` with the default `writes` (through
 * the descriptor) and with `writes: "map"`, each with and without a `flush` of the range
 * written, and at 4 KiB the pool and the bytes the device wrote for each way.
 *
 * @module
 */
import { closeSync, fdatasyncSync, fsyncSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { MappedFile, type PoolFile } from "../../mod.ts";
import { expectedBytes, randomOffsets, warmPageCache, writeDataFile } from "./data.ts";
import { blockStatPath, sectorsWritten } from "./machine.ts";
import { KIB, MIB, scaled } from "./options.ts";
import { type Family, formatBytes, type Role } from "./report.ts";
import {
  type Contender,
  roundSlice,
  timedContender,
  type Workload,
  type WorkloadEntry,
} from "./runner.ts";
import type { Session } from "./session.ts";

/** The two ways `MappedFile.write` reaches the file, as the labels name them. */
type WriteWay = "default" | "map";

/** The handles every writer writes through, all on the same file, and what they write. */
interface WriteRun {
  fd: number;
  maps: Record<WriteWay, MappedFile>;
  offsets: Float64Array;
  slice: (round: number) => [number, number];
  /** The bytes written; its first 4 bytes change from one write to the next. */
  source: Uint8Array;
  /** Stamps the next serial number into `source`. */
  stamp: () => void;
}

/** A contender whose operation is `step(offset)`: write `source` there (and make it durable). */
function writer(
  w: WriteRun,
  label: string,
  family: Family,
  role: Role,
  step: (offset: number) => void,
): Contender {
  return timedContender({ label, family, role }, w.slice, (start, end) => {
    const { offsets } = w;
    for (let i = start; i < end; i++) {
      w.stamp();
      step(offsets[i]);
    }
  });
}

const WAY_LABELS: Record<WriteWay, string> = {
  default: "default writes (pwrite)",
  map: 'writes: "map"',
};

/** The writers through this process's descriptor and maps, in the order they are listed. */
function localWriters(w: WriteRun, withExtras: boolean): Contender[] {
  const { fd, maps, source } = w;
  const size = source.length;
  const range = (at: number) => ({ position: at, length: size });
  const contenders = [
    writer(w, "node:fs writeSync + fsyncSync", "node", "baseline", (at) => {
      writeSync(fd, source, 0, size, at);
      fsyncSync(fd);
    }),
  ];
  if (withExtras) {
    contenders.push(writer(w, "node:fs writeSync + fdatasyncSync", "node", "contender", (at) => {
      writeSync(fd, source, 0, size, at);
      fdatasyncSync(fd);
    }));
  }
  for (const way of ["default", "map"] as const) {
    const map = maps[way];
    contenders.push(writer(
      w,
      `MappedFile.write + flush({ position, length }), ${WAY_LABELS[way]}`,
      "guardmap",
      "contender",
      (at) => {
        map.write(source, at);
        map.flush(range(at));
      },
    ));
  }
  if (withExtras) {
    const map = maps.default;
    contenders.push(writer(
      w,
      `MappedFile.write + flush() (whole window), ${WAY_LABELS.default}`,
      "guardmap",
      "contender",
      (at) => {
        map.write(source, at);
        map.flush();
      },
    ));
  }
  contenders.push(writer(w, "node:fs writeSync, no sync", "node", "contender", (at) => {
    writeSync(fd, source, 0, size, at);
  }));
  for (const way of ["default", "map"] as const) {
    const map = maps[way];
    contenders.push(writer(
      w,
      `MappedFile.write, no flush, ${WAY_LABELS[way]}`,
      "guardmap",
      "contender",
      (at) => map.write(source, at),
    ));
  }
  return contenders;
}

/** The pool's writers (4 KiB only): a `PoolFile` of each way, write + flush of the whole file. */
function poolWriters(w: WriteRun, pooled: Record<WriteWay, PoolFile>): Contender[] {
  return (["default", "map"] as const).map((way) =>
    timedContender(
      {
        label: `MapPool PoolFile.write + flush() (worker process), ${WAY_LABELS[way]}`,
        family: "pool",
        role: "contender",
      },
      w.slice,
      async (start, end) => {
        const { offsets, source } = w;
        for (let i = start; i < end; i++) {
          w.stamp();
          await pooled[way].write(source, offsets[i]);
          await pooled[way].flush();
        }
      },
    )
  );
}

/**
 * Before each batch (untimed), every dirty page of the file is written back, so that each
 * contender starts from clean pages whatever ran before it; with `statPath`, the bytes the
 * device wrote during each timed batch are counted (/sys/class/block/DEV/stat, sectors written).
 */
function settleAndCount(
  contenders: Contender[],
  fd: number,
  statPath: string | undefined,
): Map<string, number> {
  const deviceBytes = new Map<string, number>();
  let sectorsBefore: number | undefined;
  for (const contender of contenders) {
    contender.before = async () => {
      fsyncSync(fd);
      sectorsBefore = await sectorsWritten(statPath);
    };
    contender.after = async (round) => {
      const sectorsAfter = await sectorsWritten(statPath);
      if (round < 0 || sectorsBefore === undefined || sectorsAfter === undefined) return;
      const bytes = (sectorsAfter - sectorsBefore) * 512;
      deviceBytes.set(contender.label, (deviceBytes.get(contender.label) ?? 0) + bytes);
    };
  }
  return deviceBytes;
}

/** Writes the file and opens the writers' handles on it (the maps prefaulted for writing). */
function openWriteRun(
  s: Session,
  path: string,
  fileBytes: number,
  writeBytes: number,
  ops: number,
): WriteRun {
  writeDataFile(path, fileBytes);
  warmPageCache(path);
  const offsets = randomOffsets(
    (s.options.rounds + 1) * ops,
    fileBytes,
    writeBytes,
    0x27d4eb2f ^ writeBytes,
    4096,
  );
  const source = expectedBytes(0, writeBytes).slice();
  const fd = openSync(path, "r+");
  const maps = {
    default: MappedFile.open(path, { mode: "r+" }),
    map: MappedFile.open(path, { mode: "r+", writes: "map" }),
  };
  for (const map of Object.values(maps)) map.prefault({ write: true });
  // Vary the data a little from one write to the next, as a real workload would.
  const stampView = new DataView(source.buffer);
  let serial = 0;
  const stamp = (): void => stampView.setUint32(0, ++serial, true);
  return { fd, maps, offsets, slice: roundSlice(ops), source, stamp };
}

/** Notes on the bytes the device wrote per operation. */
function deviceNotes(
  deviceBytes: Map<string, number>,
  statPath: string | undefined,
  operations: number,
): string[] {
  return deviceBytes.size === 0 ? ["device write counters not available"] : [
    `bytes the device (${statPath}) wrote per operation, over all timed batches (all ` +
    `writers on the machine count; without a sync the kernel writes back later, mostly ` +
    `outside the batch): ${
      [...deviceBytes].map(([label, bytes]) =>
        `${label}: ${formatBytes(Math.round(bytes / operations / 1024) * 1024)}`
      ).join("; ")
    }`,
  ];
}

/** One size of write: its id, bytes, the file's size and the writes per round. */
interface WriteSize {
  id: string;
  writeBytes: [number, number];
  fileBytes: [number, number];
  ops: [number, number];
}

async function writesWorkload(s: Session, size: WriteSize): Promise<Workload> {
  const { options } = s;
  const pick = <T>(pair: [T, T]): T => scaled(options, pair[0], pair[1]);
  const [writeBytes, fileBytes, ops] = [
    pick(size.writeBytes),
    pick(size.fileBytes),
    pick(size.ops),
  ];
  const w = openWriteRun(s, join(s.dir, `${size.id}.bin`), fileBytes, writeBytes, ops);
  const small = writeBytes <= 4 * KIB;
  const pooled = small
    ? {
      default: await s.pool.open(w.maps.default.path, { mode: "r+" }),
      map: await s.pool.open(w.maps.default.path, { mode: "r+", writes: "map" }),
    }
    : undefined;
  const contenders = [
    ...localWriters(w, small),
    ...(pooled === undefined ? [] : poolWriters(w, pooled)),
  ];
  const statPath = await blockStatPath(s.dir);
  const deviceBytes = settleAndCount(contenders, w.fd, statPath);
  return {
    id: size.id,
    title: `random ${formatBytes(writeBytes)} writes, with and without flush`,
    operation: `write ${formatBytes(writeBytes)} at a random page-aligned offset of a ${
      formatBytes(fileBytes)
    } file, then (where the label says) make it durable (fsync / fdatasync / msync(MS_SYNC))`,
    cache: "page cache hot (file written and read before timing); every dirty page written " +
      "back before each batch",
    opsPerRound: ops,
    bytesPerOp: writeBytes,
    throughput: writeBytes >= MIB,
    rounds: options.rounds,
    contenders,
    notes: [
      "all contenders write to the same file, one after another; each durable operation waits " +
      'for the device before the next starts. "default writes" is MappedFile.open without a ' +
      '`writes` option ("auto": through the descriptor in mode r+)',
    ],
    finish: () => deviceNotes(deviceBytes, statPath, ops * options.rounds),
    close: async () => {
      closeSync(w.fd);
      for (const map of Object.values(w.maps)) map.close();
      if (pooled !== undefined) await Promise.all(Object.values(pooled).map((f) => f.close()));
    },
  };
}

/** The sizes, `[--quick, full]`: bytes per write, the file, writes per round. */
const SIZES: WriteSize[] = [
  { id: "writes", writeBytes: [4 * KIB, 4 * KIB], fileBytes: [16 * MIB, 64 * MIB], ops: [60, 300] },
  {
    id: "writes-64k",
    writeBytes: [64 * KIB, 64 * KIB],
    fileBytes: [64 * MIB, 256 * MIB],
    ops: [20, 100],
  },
  { id: "writes-1m", writeBytes: [MIB, MIB], fileBytes: [64 * MIB, 256 * MIB], ops: [4, 20] },
  {
    id: "writes-64m",
    writeBytes: [8 * MIB, 64 * MIB],
    fileBytes: [64 * MIB, 256 * MIB],
    ops: [1, 1],
  },
];

/** The random writes of each size; `writes` is the 4 KiB one. */
export const WRITE_WORKLOADS: WorkloadEntry[] = SIZES.map((size) => ({
  id: size.id,
  seconds: [5, 20],
  build: (s: Session) => writesWorkload(s, size),
}));
