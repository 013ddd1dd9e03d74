/// <reference lib="deno.worker" />
/**
 * A Web Worker of webworker_truncation_storm.ts: opens, reads, readMany, writes and closes maps
 * of the storm's files while the main thread truncates and re-extends them, and checks every
 * byte a call reported as transferred against the model. Not a script (runners skip `_` files).
 *
 * @module
 */
import { MappedFile, MappedIOError } from "../../mod.ts";
import { bump, errorKind, modelByte } from "./_common.ts";

/** What the main thread sends to start a worker. */
export interface TruncationJob {
  /** The files, all `size` bytes when not truncated. */
  paths: string[];
  /** Full size of each file. */
  size: number;
  /** [stop flag, truncation epoch (odd while a truncation runs)] */
  shared: SharedArrayBuffer;
  /** Seed of this worker's random choices. */
  seed: number;
}

/** What a worker answers when it stops. */
export interface TruncationReport {
  counts: Record<string, number>;
  mismatches: string[];
}

// Every byte of file f at offset o is one of: the pattern P (modelByte(f, 0, o)), what writers
// write W (modelByte(f, 1, o)), or 0 (a truncation cut it and the re-extension zero-filled it).
const PATTERN = 0;
const WRITTEN = 1;

let random = 1;
function next(limit: number): number {
  // xorshift32: deterministic per seed, cheap, no allocation.
  random ^= random << 13;
  random ^= random >>> 17;
  random ^= random << 5;
  return (random >>> 0) % limit;
}

self.onmessage = (event: MessageEvent<TruncationJob>) => {
  const job = event.data;
  random = job.seed | 1;
  const report = run(job);
  self.postMessage(report);
};

function run(job: TruncationJob): TruncationReport {
  const flags = new Int32Array(job.shared);
  const report: TruncationReport = { counts: {}, mismatches: [] };
  // Bounded by the stop flag the main thread sets after its time budget.
  while (Atomics.load(flags, 0) === 0) {
    const file = next(job.paths.length);
    let map: MappedFile;
    try {
      map = next(2) === 0
        ? MappedFile.open(job.paths[file], { mode: "r+", writes: "map", length: job.size })
        : MappedFile.open(job.paths[file], { mode: "r+", writes: "map" });
      bump(report.counts, "opens");
    } catch (error) {
      // The file was short at that moment: a typed refusal is right, anything else is counted.
      bump(report.counts, `open failed ${errorKind(error)}`);
      if (!(error instanceof RangeError) && !(error instanceof MappedIOError)) {
        bump(report.counts, "unexpected errors");
        report.mismatches.push(`open: ${errorKind(error)}: ${(error as Error).message}`);
      }
      continue;
    }
    for (let op = 0; op < 20; op++) operate(map, file, flags, report);
    map.close();
    bump(report.counts, "closes");
  }
  return report;
}

function operate(map: MappedFile, file: number, flags: Int32Array, report: TruncationReport) {
  const kind = next(10);
  const length = 1 + next(kind < 2 ? 65536 : 8192);
  const position = next(Math.max(1, map.byteLength - length));
  if (position + length > map.byteLength) return;
  try {
    if (kind < 5) readAndCheck(map, file, position, length, report);
    else if (kind < 7) readMany(map, file, report);
    else writeAndCheck(map, file, position, length, flags, report);
  } catch (error) {
    bump(report.counts, errorKind(error));
    if (!(error instanceof MappedIOError)) {
      bump(report.counts, "unexpected errors");
      report.mismatches.push(`${errorKind(error)}: ${(error as Error).message}`);
    }
  }
}

function readAndCheck(
  map: MappedFile,
  file: number,
  position: number,
  length: number,
  report: TruncationReport,
) {
  const target = new Uint8Array(length);
  try {
    const n = map.read(target, position);
    bump(report.counts, "reads");
    if (n !== length) report.mismatches.push(`read returned ${n}, asked ${length}`);
    check(report, "read", file, map.offset + position, target);
  } catch (error) {
    if (error instanceof MappedIOError) {
      const done = error.bytesTransferred;
      if (done > length || error.position !== position + done) {
        bump(report.counts, "mismatches");
        report.mismatches.push(
          `read at ${position} of ${length}: bytesTransferred ${done}, position ${error.position}`,
        );
      }
      check(report, "read (before fault)", file, map.offset + position, target.subarray(0, done));
    }
    throw error;
  }
}

function readMany(map: MappedFile, file: number, report: TruncationReport) {
  const count = 1 + next(32);
  const length = 1 + next(256);
  if (map.byteLength < length) return;
  const positions = new Float64Array(count);
  for (let i = 0; i < count; i++) positions[i] = next(map.byteLength - length + 1);
  const target = new Uint8Array(count * length);
  try {
    map.readMany(target, positions, length);
    bump(report.counts, "readMany");
    for (let i = 0; i < count; i++) {
      const bytes = target.subarray(i * length, (i + 1) * length);
      check(report, "readMany", file, map.offset + positions[i], bytes);
    }
  } catch (error) {
    if (error instanceof MappedIOError && error.rangeIndex !== undefined) {
      // Ranges before rangeIndex were delivered whole.
      for (let i = 0; i < error.rangeIndex; i++) {
        const bytes = target.subarray(i * length, (i + 1) * length);
        check(report, "readMany (before fault)", file, map.offset + positions[i], bytes);
      }
    }
    throw error;
  }
}

function writeAndCheck(
  map: MappedFile,
  file: number,
  position: number,
  length: number,
  flags: Int32Array,
  report: TruncationReport,
) {
  const source = new Uint8Array(length);
  for (let i = 0; i < length; i++) source[i] = modelByte(file, WRITTEN, map.offset + position + i);
  const epoch = Atomics.load(flags, 1);
  map.write(source, position);
  bump(report.counts, "writes");
  const back = new Uint8Array(length);
  map.read(back, position);
  bump(report.counts, "reads");
  if ((epoch & 1) === 0 && Atomics.load(flags, 1) === epoch) {
    // No truncation ran during write + read back: every byte must be what this worker wrote
    // (other writers write the same value at the same offset).
    for (let i = 0; i < length; i++) {
      if (back[i] !== source[i]) {
        report.mismatches.push(
          `file ${file} offset ${map.offset + position + i}: wrote ${source[i]}, read back ` +
            `${back[i]} with no truncation in between`,
        );
        bump(report.counts, "mismatches");
        return;
      }
    }
  } else check(report, "read back", file, map.offset + position, back);
}

function check(
  report: TruncationReport,
  what: string,
  file: number,
  offset: number,
  bytes: Uint8Array,
) {
  for (let i = 0; i < bytes.length; i++) {
    const value = bytes[i];
    if (
      value !== 0 && value !== modelByte(file, PATTERN, offset + i) &&
      value !== modelByte(file, WRITTEN, offset + i)
    ) {
      bump(report.counts, "mismatches");
      if (report.mismatches.length < 10) {
        report.mismatches.push(
          `${what}: file ${file} offset ${offset + i}: ${value}, expected ` +
            `${modelByte(file, PATTERN, offset + i)}, ${modelByte(file, WRITTEN, offset + i)} or 0`,
        );
      }
      return;
    }
  }
}
