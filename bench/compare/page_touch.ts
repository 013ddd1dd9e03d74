/**
 * Before each batch of random reads: read the batch's pages once, untimed, through the map the
 * contender reads through, so that every contender meets page-table entries whose accessed bits
 * are set.
 *
 * Why: this VM's DAMON monitor clears the accessed bits of sampled folios every 500 ms, and
 * setting one again cost about a microsecond here (where_the_time_goes.md, "Sequential reads").
 * All contenders of a round read the same offsets, and the in-process ones share one map, so the
 * first of them to run in a round paid for the round's cleared bits and the others did not: a
 * contender's median depended on where the shuffled order put it (the 4 KiB `read` flipped between
 * about 0.9 and 1.4 µs from round to round). The pool's worker and numpy map the file themselves;
 * their maps are touched the same way (numpy's by numpy_memmap.py, `touch: true`).
 *
 * @module
 */
import type { PoolFile } from "../../mod.ts";

/** The page size the touches step by: the smallest page any supported kernel maps. */
const TOUCH_STEP_BYTES = 4096;

/**
 * Reads one byte of every page of each range `[offsets[i], offsets[i] + readBytes)` for `i` in
 * `[start, end)` through `view`; returns their sum, so that the reads cannot be left out.
 */
export function touchThroughView(
  view: Uint8Array,
  offsets: Float64Array,
  readBytes: number,
  start: number,
  end: number,
): number {
  let sum = 0;
  for (let i = start; i < end; i++) {
    const at = offsets[i];
    for (let byte = at; byte < at + readBytes; byte += TOUCH_STEP_BYTES) sum += view[byte];
    sum += view[at + readBytes - 1];
  }
  return sum;
}

/**
 * The same through a MapPool worker's map: `readMany` of the ranges, `many.byteLength /
 * readBytes` at a time, into `many` (the bytes are thrown away; the caches are emptied after).
 */
export async function touchThroughPool(
  file: PoolFile,
  many: Uint8Array,
  offsets: Float64Array,
  readBytes: number,
  start: number,
  end: number,
): Promise<void> {
  const perCall = Math.floor(many.byteLength / readBytes);
  for (let i = start; i < end; i += perCall) {
    await file.readMany(many, offsets.subarray(i, Math.min(i + perCall, end)), readBytes);
  }
}
