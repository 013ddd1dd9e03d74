/**
 * Kernels of the comparison harness (`bench/compare.ts`). The same functions run in the host
 * (over `unsafeView()` or over chunks read with `read`/`pread`) and inside a `MapPool` worker
 * (through `PoolFile.run`), so the reduction workload compares where the code runs, not two
 * different loops.
 *
 * @module
 */

/**
 * Sums `values` with four independent accumulators, so the loop is bound by memory and not by
 * the latency of one chain of floating-point additions. With the harness's data (dyadic values
 * whose partial sums stay below 2^53) every summation order gives exactly the same result.
 */
export function sumArray(values: Float64Array): number {
  let a = 0;
  let b = 0;
  let c = 0;
  let d = 0;
  const length = values.length;
  const whole = length - (length % 4);
  let i = 0;
  for (; i < whole; i += 4) {
    a += values[i];
    b += values[i + 1];
    c += values[i + 2];
    d += values[i + 3];
  }
  for (; i < length; i++) a += values[i];
  return (a + b) + (c + d);
}

/** Elements per call of `sumArray` in `sumFloat64`: 1 MiB of float64. */
const CHUNK_ELEMENTS = 2 ** 17;

/**
 * A `MapPool` kernel: the sum of the float64 values of the window's bytes `[start, end)`
 * (default: the whole window; both multiples of 8). Runs as `run(KERNELS, "sumFloat64")`, and
 * in-process over `unsafeView()`.
 *
 * It adds 1 MiB at a time. One call of `sumArray` over a whole 1 GiB array in a fresh isolate
 * ran about 4.5 times slower (180-207 ms against 40 ms) than after calls on small arrays: V8
 * compiles the long-running first call on stack replacement and kept the slower code. In
 * chunks, the loop is called often enough to be optimised normally, in the worker as here.
 */
export function sumFloat64(view: Uint8Array, start = 0, end: number = view.byteLength): number {
  if (start % 8 !== 0 || end % 8 !== 0 || start < 0 || end > view.byteLength || start > end) {
    throw new RangeError(`sumFloat64: bad range [${start}, ${end}) of ${view.byteLength} bytes`);
  }
  const values = new Float64Array(view.buffer, view.byteOffset + start, (end - start) / 8);
  let sum = 0;
  for (let first = 0; first < values.length; first += CHUNK_ELEMENTS) {
    sum += sumArray(values.subarray(first, first + CHUNK_ELEMENTS));
  }
  return sum;
}
