/**
 * Reads and byte checks the comparison harness's contenders share.
 *
 * @module
 */
import { readSync } from "node:fs";

/** pread through node:fs until `target` is full. */
export function preadFully(fd: number, target: Uint8Array, position: number): void {
  let done = readSync(fd, target, 0, target.byteLength, position);
  while (done < target.byteLength) {
    const count = readSync(fd, target, done, target.byteLength - done, position + done);
    if (count === 0) throw new Error(`pread hit the end of the file at ${position + done}`);
    done += count;
  }
}

/** `Deno.FsFile` seek + read until `target` is full. */
export function seekReadFully(file: Deno.FsFile, target: Uint8Array, position: number): void {
  file.seekSync(position, Deno.SeekMode.Start);
  let done = 0;
  while (done < target.byteLength) {
    const count = file.readSync(done === 0 ? target : target.subarray(done));
    if (count === null) throw new Error(`read hit the end of the file at ${position + done}`);
    done += count;
  }
}

/** Throws, naming `what`, unless `actual` holds exactly the bytes of `expected`. */
export function sameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (actual.byteLength !== expected.byteLength) {
    throw new Error(`${what}: ${actual.byteLength} bytes instead of ${expected.byteLength}`);
  }
  for (let i = 0; i < expected.byteLength; i++) {
    if (actual[i] !== expected[i]) throw new Error(`${what}: wrong byte at ${i}`);
  }
}

/** The sum of the bytes (what numpy_memmap.py's `check` answers per range). */
export function byteSum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.byteLength; i++) sum += bytes[i];
  return sum;
}

/** Writes `offsets` where numpy_memmap.py reads them (little-endian float64). */
export function writeOffsets(path: string, offsets: Float64Array): void {
  Deno.writeFileSync(path, new Uint8Array(offsets.buffer, offsets.byteOffset, offsets.byteLength));
}
