/**
 * The data of the comparison harness: the file contents, the seeded offsets and the cache
 * controls (warming the page cache, evicting the CPU caches, dropping the page cache).
 *
 * The file is a sequence of float64 values. Element `i` is a dyadic number in [0, 256) with 12
 * fractional bits (`valueAt`), so every partial sum of up to 2^27 elements (1 GiB) is exact in
 * float64: every contender of the reduction must return exactly the sum `writeDataFile`
 * returns, whatever order it adds in. The values come from a multiplicative hash of `i`, so the
 * bytes have no short period and a read at a wrong offset is caught by the byte checks.
 *
 * @module
 */

/** Bytes written or read per chunk when making or warming a file. */
export const CHUNK_BYTES = 2 ** 20;

/** The float64 value stored at element index `i` of every data file. */
export function valueAt(i: number): number {
  return ((Math.imul(i, 0x9e3779b1) >>> 12) & 0xfffff) / 4096;
}

/** Fills `target` with elements `first`, `first + 1`, ... and returns their sum. */
function fillValues(target: Float64Array, first: number): number {
  let sum = 0;
  for (let j = 0; j < target.length; j++) {
    const value = valueAt(first + j);
    target[j] = value;
    sum += value;
  }
  return sum;
}

/**
 * Writes `bytes` (a multiple of 1 MiB) of data to `path`, syncs it to the device so that no
 * write-back runs later while something is timed, and returns the exact sum of its values.
 */
export function writeDataFile(path: string, bytes: number): number {
  if (bytes % CHUNK_BYTES !== 0) throw new RangeError(`${bytes} is not a multiple of 1 MiB`);
  const chunk = new Float64Array(CHUNK_BYTES / 8);
  const chunkBytes = new Uint8Array(chunk.buffer);
  let sum = 0;
  using file: Deno.FsFile = Deno.openSync(path, { write: true, create: true, truncate: true });
  for (let offset = 0; offset < bytes; offset += CHUNK_BYTES) {
    sum += fillValues(chunk, offset / 8);
    let rest: Uint8Array = chunkBytes;
    while (rest.byteLength > 0) rest = rest.subarray(file.writeSync(rest));
  }
  file.syncSync();
  return sum;
}

/** The bytes `[position, position + length)` that every data file holds. */
export function expectedBytes(position: number, length: number): Uint8Array {
  const first = Math.floor(position / 8);
  const last = Math.ceil((position + length) / 8);
  const values = new Float64Array(last - first);
  fillValues(values, first);
  return new Uint8Array(values.buffer, position - first * 8, length);
}

/** Reads `path` once from start to end, so that all of it is in the page cache ("hot"). */
export function warmPageCache(path: string): number {
  using file: Deno.FsFile = Deno.openSync(path, { read: true });
  const chunk = new Uint8Array(CHUNK_BYTES);
  let total = 0;
  for (;;) {
    const count: number | null = file.readSync(chunk);
    if (count === null) return total;
    total += count;
  }
}

/**
 * `count` offsets in `[0, span - readBytes]`, multiples of `align`, from a fixed-seed
 * xorshift32: every run and every contender reads the same positions.
 */
export function randomOffsets(
  count: number,
  span: number,
  readBytes: number,
  seed: number,
  align = 1,
): Float64Array {
  const offsets = new Float64Array(count);
  const slots = Math.floor((span - readBytes) / align) + 1;
  let state = seed >>> 0;
  for (let i = 0; i < count; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    offsets[i] = Math.floor((state / 2 ** 32) * slots) * align;
  }
  return offsets;
}

/**
 * A large buffer written through before each timed batch of random reads, so that no
 * contender finds the data lines, page-table lines or TLB entries that the one before it
 * (reading the same offsets) left behind. The default is 1 GiB: on the machine this was written
 * on, reads after a 64 or 256 MiB sweep were still faster than first reads of the same offsets,
 * although the CPU reports a 32 MiB L3; after a 1 GiB sweep they were as slow as first reads
 * (`bench/copy_probe.ts`, "eviction check").
 */
export class CacheEvictor {
  #scratch: Uint8Array;
  #round = 0;

  /** Allocates (and touches) the sweep buffer. */
  constructor(bytes: number = 2 ** 30) {
    this.#scratch = new Uint8Array(bytes).fill(1);
  }

  /** Writes every byte of the sweep buffer. */
  evict(): void {
    this.#scratch.fill(++this.#round & 0xff);
  }
}

/** The outcome of an attempt to drop the page cache. */
export interface DropResult {
  /** Whether `sync; echo 1 > /proc/sys/vm/drop_caches` succeeded. */
  ok: boolean;
  /** Why not, when it did not. */
  error?: string;
}

/**
 * Writes back dirty pages and drops the clean page cache (`sync; echo 1 >
 * /proc/sys/vm/drop_caches`). Needs root; runs `sh` because Deno grants writes under
 * `/proc/sys` only with `--allow-all`. Pages that some process has mapped are not dropped.
 */
export async function dropPageCache(): Promise<DropResult> {
  try {
    const output = await new Deno.Command("sh", {
      args: ["-c", "sync && echo 1 > /proc/sys/vm/drop_caches"],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (output.success) return { ok: true };
    return { ok: false, error: new TextDecoder().decode(output.stderr).trim() };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * How many bytes of `path` are in the page cache (`fincore --bytes`), or `undefined` when
 * fincore (util-linux) is not available.
 */
export async function residentBytes(path: string): Promise<number | undefined> {
  try {
    const output = await new Deno.Command("fincore", {
      args: ["--bytes", "--noheadings", "--output", "RES", path],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!output.success) return undefined;
    const value = Number(new TextDecoder().decode(output.stdout).trim());
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The order of `count` contenders (or variants) in round `round`: a permutation shuffled
 * (Fisher-Yates) by a xorshift32 seeded with the round, so every run uses the same orders.
 */
export function roundOrder(count: number, round: number): number[] {
  const order = Array.from({ length: count }, (_, i) => i);
  let state = (Math.imul(round + 1, 0x9e3779b9) >>> 0) || 1;
  for (let i = count - 1; i > 0; i--) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    const j = state % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}
