/**
 * Random 4 KiB writes at page-aligned offsets of a separate file, each made durable before the
 * next (fsync, fdatasync, msync), with the bytes the device wrote for each way.
 *
 * @module
 */
import { closeSync, fdatasyncSync, fsyncSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { MappedFile, type PoolFile } from "../../mod.ts";
import { expectedBytes, randomOffsets, warmPageCache, writeDataFile } from "./data.ts";
import { blockStatPath, sectorsWritten } from "./machine.ts";
import { MIB, scaled } from "./options.ts";
import { type Family, formatBytes, type Role } from "./report.ts";
import {
  type Contender,
  roundSlice,
  timedContender,
  type Workload,
  type WorkloadEntry,
} from "./runner.ts";
import type { Session } from "./session.ts";

/** The handles every writer writes through, all on the same file, and what they write. */
interface WriteRun {
  fd: number;
  map: MappedFile;
  viaFile: MappedFile;
  pooled: PoolFile;
  offsets: Float64Array;
  slice: (round: number) => [number, number];
  /** The 4 KiB written; its first 4 bytes change from one write to the next. */
  source: Uint8Array;
  /** Stamps the next serial number into `source`. */
  stamp: () => void;
}

/** A contender whose operation is `step(offset)`: write 4 KiB there and make it durable. */
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

/** The 4 KiB at `at`, as a range for `flush`. */
const page = (at: number): { position: number; length: number } => ({ position: at, length: 4096 });

/** The writers through this process's descriptor and maps, in the order they are listed. */
function localWriters(w: WriteRun): Contender[] {
  const { fd, map, viaFile, source } = w;
  return [
    writer(w, "node:fs writeSync + fsyncSync", "node", "baseline", (at) => {
      writeSync(fd, source, 0, 4096, at);
      fsyncSync(fd);
    }),
    writer(w, "node:fs writeSync + fdatasyncSync", "node", "contender", (at) => {
      writeSync(fd, source, 0, 4096, at);
      fdatasyncSync(fd);
    }),
    writer(w, "MappedFile.write + flush() (whole window)", "guardmap", "contender", (at) => {
      map.write(source, at);
      map.flush();
    }),
    writer(
      w,
      "MappedFile.write + flush({ position, length: 4096 })",
      "guardmap",
      "contender",
      (at) => {
        map.write(source, at);
        map.flush(page(at));
      },
    ),
    writer(
      w,
      'MappedFile.write + flush({ position, length: 4096 }), writes: "pwrite"',
      "guardmap",
      "contender",
      (at) => {
        viaFile.write(source, at);
        viaFile.flush(page(at));
      },
    ),
  ];
}

function poolWriter(w: WriteRun): Contender {
  const label = "MapPool PoolFile.write + flush() (worker process)";
  return timedContender(
    { label, family: "pool", role: "contender" },
    w.slice,
    async (start, end) => {
      const { offsets, pooled, source } = w;
      for (let i = start; i < end; i++) {
        w.stamp();
        await pooled.write(source, offsets[i]);
        await pooled.flush();
      }
    },
  );
}

/**
 * Bytes the device wrote during each contender's timed batches (/sys/class/block/DEV/stat,
 * sectors written): shows how much each way of writing 4 KiB really sends to the disk.
 */
function countDeviceBytes(
  contenders: Contender[],
  statPath: string | undefined,
): Map<string, number> {
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
  return deviceBytes;
}

/** Writes the file and opens the writers' handles on it (the maps prefaulted for writing). */
async function openWriteRun(
  s: Session,
  path: string,
  fileBytes: number,
  ops: number,
): Promise<WriteRun> {
  writeDataFile(path, fileBytes);
  warmPageCache(path);
  const offsets = randomOffsets((s.options.rounds + 1) * ops, fileBytes, 4096, 0x27d4eb2f, 4096);
  const source = expectedBytes(0, 4096).slice();
  const fd = openSync(path, "r+");
  const map = MappedFile.open(path, { mode: "r+" });
  map.prefault({ write: true });
  const viaFile = MappedFile.open(path, { mode: "r+", writes: "pwrite" });
  const pooled = await s.pool.open(path, { mode: "r+" });
  await pooled.prefault({ write: true });
  // Vary the data a little from one write to the next, as a real workload would.
  const stampView = new DataView(source.buffer);
  let serial = 0;
  const stamp = (): void => stampView.setUint32(0, ++serial, true);
  return { fd, map, viaFile, pooled, offsets, slice: roundSlice(ops), source, stamp };
}

/** Notes on the bytes the device wrote per operation. */
function deviceNotes(
  deviceBytes: Map<string, number>,
  statPath: string | undefined,
  operations: number,
): string[] {
  return deviceBytes.size === 0 ? ["device write counters not available"] : [
    `bytes the device (${statPath}) wrote per operation, over all timed batches (all ` +
    `writers on the machine count): ${
      [...deviceBytes].map(([label, bytes]) =>
        `${label}: ${formatBytes(Math.round(bytes / operations / 1024) * 1024)}`
      ).join("; ")
    }`,
  ];
}

async function writesWorkload(s: Session): Promise<Workload> {
  const { options } = s;
  const fileBytes = scaled(options, 16 * MIB, 64 * MIB);
  const ops = scaled(options, 60, 300);
  const w = await openWriteRun(s, join(s.dir, "writes.bin"), fileBytes, ops);
  const contenders = [...localWriters(w), poolWriter(w)];
  const statPath = await blockStatPath(s.dir);
  const deviceBytes = countDeviceBytes(contenders, statPath);
  return {
    id: "writes",
    title: "random 4 KiB writes + flush",
    operation: `write 4 KiB at a random page-aligned offset of a ${
      formatBytes(fileBytes)
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
    finish: () => deviceNotes(deviceBytes, statPath, ops * options.rounds),
    close: () => {
      closeSync(w.fd);
      w.map.close();
      w.viaFile.close();
      void w.pooled.close();
    },
  };
}

/** The random 4 KiB writes; writes per round: 60 (quick) or 300, to a 16 or 64 MiB file. */
export const WRITES: WorkloadEntry = { id: "writes", seconds: [5, 20], build: writesWorkload };
