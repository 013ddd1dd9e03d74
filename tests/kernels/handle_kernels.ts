/**
 * A kernel for tests/pool_handle_test.ts: it drives the worker's own map table through FFI, so
 * that the next map the pool opens gets a handle of 2^32 or more.
 *
 * @module
 */
import { native } from "../../ffi/library.ts";
import { decodeOpenResult, MODE, OPEN_RESULT } from "../../ffi/abi.ts";
import { Status } from "../../ffi/status.ts";

/**
 * Opens and closes `path` `cycles` times in this worker. Each close moves the reused slot to its
 * next generation, and a handle carries the generation above its 12 index bits: 2^20 cycles
 * make that slot's next handle at least 2^32. Returns the last handle.
 */
export function cycleSlot(_view: Uint8Array, path: string, cycles: number): number {
  const lib = native();
  const bytes = new TextEncoder().encode(path);
  const length = BigInt(bytes.byteLength);
  const out = new Uint8Array(OPEN_RESULT.sizeBytes);
  const view = new DataView(out.buffer);
  let handle = 0;
  for (let cycle = 0; cycle < cycles; cycle++) {
    const status = lib.gm_open(bytes, length, MODE.read, 0n, 0n, 0, out);
    if (status !== Status.ok) throw new Error(`gm_open of ${path} failed with status ${status}`);
    handle = decodeOpenResult(view).handle;
    lib.gm_close(handle);
  }
  return handle;
}
