/**
 * Web Worker of tests/abi_test.ts: posts this thread's gm_last_detail record, which no read of
 * this thread has written.
 *
 * @module
 */
import { native } from "../ffi/library.ts";
import { DETAIL } from "../ffi/abi.ts";

const detail = new Uint8Array(DETAIL.sizeBytes).fill(0xff);
native().gm_last_detail(detail);
self.postMessage([...detail]);
