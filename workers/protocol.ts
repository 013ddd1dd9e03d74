/**
 * What the MapPool host and its workers say to each other through the channel, beyond the data
 * requests the native code serves itself. Internal.
 *
 * Control requests carry a structured-clone payload (`node:v8` serialize) at the start of the
 * staging area; the answer comes back the same way.
 *
 * @module
 */
import { deserialize, serialize } from "node:v8";
import type { OpenFailure } from "../ffi/open_options.ts";
import { CHANNEL_OP } from "../ffi/abi.ts";

/**
 * Control operations, served by the worker's JavaScript: the numbers from
 * `CHANNEL_OP.controlFirst` on (the data operations below it are served natively).
 */
export const Op = {
  open: CHANNEL_OP.controlFirst,
  close: CHANNEL_OP.controlFirst + 1,
  run: CHANNEL_OP.controlFirst + 2,
  ping: CHANNEL_OP.controlFirst + 3,
  exit: CHANNEL_OP.controlFirst + 4,
} as const;

/** Request of `Op.open`. */
export interface OpenRequest {
  path: string;
  mode: number;
  offset: bigint;
  length: bigint | undefined;
  /** Re-opening after a restart: keep the window even if the file has shrunk since. */
  pastEnd: boolean;
  /** `writes: "pwrite"`: writes go through the file descriptor. */
  writesToFile: boolean;
}

/** Answer of `Op.open`. */
export interface OpenAnswer {
  handle: number;
  length: number;
  osError: number;
  /** When the open failed: what the library's record says (see ffi/open_options.ts). */
  failure?: OpenFailure;
}

/** Request of `Op.run`. */
export interface RunRequest {
  handle: number;
  length: number;
  module: string;
  name: string;
  args: unknown[];
}

/** An answer carrying a message instead of a result (a failed import, a result too large). */
export interface FailureAnswer {
  message: string;
}

/**
 * Writes `value` at the start of `staging`; returns its length. Throws a RangeError when it
 * does not fit.
 *
 * @example
 * ```ts
 * import { readPayload, writePayload } from "./protocol.ts";
 * const staging = new Uint8Array(1024);
 * const length = writePayload(staging, { a: 1n });
 * console.log(readPayload(staging, length)); // { a: 1n }
 * ```
 */
export function writePayload(staging: Uint8Array, value: unknown): number {
  const bytes = serialize(value);
  if (bytes.byteLength > staging.byteLength) {
    throw new RangeError(
      `a message of ${bytes.byteLength} bytes does not fit the pool's staging area of ` +
        `${staging.byteLength} bytes; raise MapPool's stagingBytes or send less`,
    );
  }
  staging.set(bytes, 0);
  return bytes.byteLength;
}

/**
 * Reads a value written by {@linkcode writePayload}.
 *
 * @example
 * ```ts
 * import { readPayload, writePayload } from "./protocol.ts";
 * const staging = new Uint8Array(64);
 * console.log(readPayload(staging, writePayload(staging, "hi"))); // "hi"
 * ```
 */
export function readPayload<T>(staging: Uint8Array, length: number): T {
  return deserialize(staging.subarray(0, length)) as T;
}
