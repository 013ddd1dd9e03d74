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
 * their maps are touched the same way (numpy's by numpy_memmap.py, `op: "touch"`), before the
 * harness empties the caches.
 *
 * @module
 */
import type { PoolFile } from "../../mod.ts";

/** The page size the touches step by: the smallest page any supported kernel maps. */
const TOUCH_PAGE_BYTES = 4096;
/** A CPU cache line. */
const LINE_BYTES = 64;

/**
 * One byte for every page that the ranges `[offsets[i], offsets[i] + readBytes)`, `i` in
 * `[start, end)`, overlap: a byte of the page outside the range where the page has a whole line
 * outside it (its first line, else its last), so that the touch leaves none of the batch's own
 * bytes in a cache that is not emptied afterwards (the MapPool worker's core); only a page the range
 * covers end to end gives one of its lines. bench/numpy_memmap.py's `touch_positions` follows the
 * same rule.
 */
export function touchPositions(
  offsets: Float64Array,
  readBytes: number,
  start: number,
  end: number,
): Float64Array {
  const positions: number[] = [];
  for (let i = start; i < end; i++) {
    const first = offsets[i];
    const last = first + readBytes - 1;
    for (let page = first - (first % TOUCH_PAGE_BYTES); page <= last; page += TOUCH_PAGE_BYTES) {
      const low = Math.max(first, page) - page;
      const high = Math.min(last, page + TOUCH_PAGE_BYTES - 1) - page;
      const outside = low >= LINE_BYTES
        ? 0
        : high < TOUCH_PAGE_BYTES - LINE_BYTES
        ? TOUCH_PAGE_BYTES - 1
        : low;
      positions.push(page + outside);
    }
  }
  return Float64Array.from(positions);
}

/** Reads the bytes at `positions` through `view`; returns their sum, so they cannot be left out. */
export function touchThroughView(view: Uint8Array, positions: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < positions.length; i++) sum += view[positions[i]];
  return sum;
}

/** Ranges per `readMany` of a pool touch (as many as the batched contenders read per call). */
const POOL_TOUCH_RANGES = 256;

/**
 * The same through a MapPool worker's map: `readMany` of one byte at each position,
 * `POOL_TOUCH_RANGES` at a time, into `scratch` (at least that many bytes; the bytes are thrown
 * away).
 */
export async function touchThroughPool(
  file: PoolFile,
  scratch: Uint8Array,
  positions: Float64Array,
): Promise<void> {
  for (let i = 0; i < positions.length; i += POOL_TOUCH_RANGES) {
    const chunk = positions.subarray(i, Math.min(i + POOL_TOUCH_RANGES, positions.length));
    await file.readMany(scratch, chunk, 1);
  }
}
