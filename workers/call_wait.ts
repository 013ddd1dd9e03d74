/**
 * How a MapPool call waits for its worker without holding up the host's event loop: a short
 * budget on the calling thread, the rest on Deno's blocking pool, and a regular turn of the
 * event loop during long runs of fast calls. Internal.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { DETAIL } from "../ffi/abi.ts";

/** Transfers at least this large wait for their worker off the event loop from the start. */
export const ASYNC_TRANSFER_BYTES = 1024 * 1024;
/**
 * How long a smaller call may wait for its worker on the calling thread (spinning while the
 * worker runs on another CPU, else sleeping so it can run on this one) before it waits off the
 * event loop on Deno's blocking pool. A 4 KiB round trip to an awake worker takes a few
 * microseconds; the hand-off to the blocking pool costs tens of microseconds.
 */
export const SYNC_BUDGET_US = 50;
/**
 * A run of pool calls that all completed within their budget (so their promises settled
 * without the event loop turning) yields to the event loop once it has lasted this long, so
 * timers and I/O of the host still run during a tight loop of awaited reads.
 */
export const YIELD_AFTER_MS = 2;

/**
 * The budget of a transfer of `bytes` bytes: none for large ones, which take long anyway.
 *
 * @example
 * ```ts
 * import { budgetFor } from "./call_wait.ts";
 * console.log(budgetFor(4096), budgetFor(2 ** 20)); // 50 0
 * ```
 */
export function budgetFor(bytes: number): number {
  return bytes >= ASYNC_TRANSFER_BYTES ? 0 : SYNC_BUDGET_US;
}

/**
 * `view` itself, or a copy of it (with its bytes when `copyIn`) when its buffer is resizable or
 * growable: Deno refuses such buffers in the nonblocking FFI calls that finish a slow call, so
 * the bytes travel through a fixed buffer and the caller copies them back.
 *
 * @example
 * ```ts
 * import { stagedCopy } from "./call_wait.ts";
 * const view = new Uint8Array(new ArrayBuffer(4, { maxByteLength: 8 })).fill(1);
 * const fixed = stagedCopy(view, true);
 * console.log(fixed !== view, fixed.buffer.resizable, fixed[3]); // true false 1
 * ```
 */
export function stagedCopy<T extends Uint8Array | Float64Array>(view: T, copyIn: boolean): T {
  const buffer = view.buffer as ArrayBufferLike & { resizable?: boolean; growable?: boolean };
  if (buffer.resizable !== true && buffer.growable !== true) return view;
  const copy = new (view.constructor as { new (length: number): T })(view.length);
  if (copyIn) copy.set(view);
  return copy;
}

/**
 * The bytes a failed call delivered before its fault (at most `limit`).
 *
 * @example
 * ```ts
 * import { bytesDone } from "./call_wait.ts";
 * import { DETAIL } from "../ffi/abi.ts";
 * const detail = new DataView(new ArrayBuffer(DETAIL.sizeBytes));
 * detail.setBigUint64(DETAIL.bytesDone, 300n, true);
 * console.log(bytesDone(detail, 100)); // 100
 * ```
 */
export function bytesDone(detail: DataView, limit: number): number {
  return Math.min(Number(detail.getBigUint64(DETAIL.bytesDone, true)), limit);
}

/** Whether the event loop has turned since the current run of pool calls began. */
let loopTurned = true;
let runStartedMs = 0;

/**
 * Called before every pool call. Calls that complete within their budget settle their promises
 * in microtasks, so a loop of awaited calls would never let the event loop turn: after
 * {@linkcode YIELD_AFTER_MS} of such a run, the next call first waits for one turn. Returns
 * undefined when there is nothing to wait for, so the fast path adds no promise.
 *
 * @example
 * ```ts
 * import { yieldIfDue } from "./call_wait.ts";
 * const turn = yieldIfDue();
 * if (turn !== undefined) await turn;
 * ```
 */
export function yieldIfDue(): Promise<void> | undefined {
  if (loopTurned) {
    loopTurned = false;
    runStartedMs = performance.now();
    setImmediate(() => {
      loopTurned = true;
    });
    return undefined;
  }
  if (performance.now() - runStartedMs < YIELD_AFTER_MS) return undefined;
  // An immediate runs after one turn of the event loop (timers, I/O) and costs microseconds;
  // a setTimeout(0) here measured 1-2.5 ms.
  return new Promise((resolve) => setImmediate(resolve));
}
