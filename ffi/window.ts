/**
 * What a window of a mapped file means to every call on it, whichever transport serves the call:
 * `MappedFile` copies in this process, `PoolFile` through a worker. Both check their arguments,
 * open the file and describe failures here, so the two cannot drift apart: the same bad argument
 * gets the same words, the same fault the same error. Internal.
 *
 * @module
 */
import { native } from "./library.ts";
import { Status } from "./status.ts";
import { noteOpen, noteRelease } from "./gc_nudge.ts";
import { MODES, openError, openFailure, type ResolvedOpen } from "./open_options.ts";
import { MappedIOError, type MappedOperation } from "./errors.ts";
import { callError } from "./call_error.ts";
import { asBytes, checkPosition } from "./bytes.ts";
import { adviceNumber, prefaultRange, windowRange } from "./arguments.ts";
import { batchError, checkReadMany, splitBatchCount } from "./read_many.ts";
import {
  decodeDetail,
  decodeOpenResult,
  OPEN_FLAGS,
  OPEN_RESULT,
  type OpenResultRecord,
} from "./abi.ts";
import type { Advice, MapMode, PrefaultOptions, WindowRange } from "./types.ts";

/** The window a call works on, as both transports describe it. */
export interface WindowInfo {
  /** The mapped file's path. */
  readonly path: string;
  /** The mode it was mapped with. */
  readonly mode: MapMode;
  /** File offset of the window's first byte. */
  readonly offset: number;
  /** Length of the window in bytes. */
  readonly byteLength: number;
}

/** Where the details of a failed call are found. */
export interface FailureSource {
  /** The detail record the library filled for the call (`DETAIL` in ./abi.ts). */
  readonly detail: DataView;
  /** The file's size now, or undefined when it cannot be had. */
  fileSize(): number | undefined;
}

/** The calls whose failures {@linkcode callFailure} describes. */
export type WindowOperation = MappedOperation | "advise";

/**
 * The bytes of `view` for a `read` or `write` at window `position`, or the `TypeError` that
 * names the bad argument.
 *
 * @example
 * ```ts
 * import { copyArguments } from "./window.ts";
 * console.log(copyArguments("read", new Uint16Array(2), 8).byteLength); // 4
 * ```
 */
export function copyArguments(
  operation: "read" | "write",
  view: ArrayBufferView,
  position: number,
): Uint8Array {
  const bytes = asBytes(view, operation);
  checkPosition(position, operation);
  return bytes;
}

/**
 * The `[position, length]` of `flush`'s range over `window`.
 *
 * @example
 * ```ts
 * import { flushArguments } from "./window.ts";
 * const window = { path: "/tmp/x", mode: "r+", offset: 0, byteLength: 100 } as const;
 * console.log(flushArguments(window, { position: 10 })); // [ 10, 90 ]
 * ```
 */
export function flushArguments(window: WindowInfo, range: WindowRange): [number, number] {
  return windowRange("flush", range, window.byteLength);
}

/**
 * The `[position, length, advice number]` of an `advise` call over `window`.
 *
 * @example
 * ```ts
 * import { adviseArguments } from "./window.ts";
 * const window = { path: "/tmp/x", mode: "r", offset: 0, byteLength: 100 } as const;
 * console.log(adviseArguments(window, "willneed", {})); // [ 0, 100, 3 ]
 * ```
 */
export function adviseArguments(
  window: WindowInfo,
  advice: Advice,
  range: WindowRange,
): [number, number, number] {
  const number = adviceNumber(advice);
  return [...windowRange("advise", range, window.byteLength), number];
}

/**
 * The `[position, length, write]` of a `prefault` call over `window`, `write` as 0 or 1.
 *
 * @example
 * ```ts
 * import { prefaultArguments } from "./window.ts";
 * const window = { path: "/tmp/x", mode: "r", offset: 0, byteLength: 100 } as const;
 * console.log(prefaultArguments(window, { length: 10 })); // [ 0, 10, 0 ]
 * ```
 */
export function prefaultArguments(
  window: WindowInfo,
  options: PrefaultOptions,
): [number, number, 0 | 1] {
  return prefaultRange(options, window.byteLength);
}

/**
 * The positions of a `readMany` over `window` as a `Float64Array`, every range checked against
 * the window and `target` before anything is copied.
 *
 * @example
 * ```ts
 * import { readManyPositions } from "./window.ts";
 * const window = { path: "/tmp/x", mode: "r", offset: 0, byteLength: 16 } as const;
 * console.log(readManyPositions(window, new Uint8Array(8), [0, 4], 4)); // Float64Array(2) [ 0, 4 ]
 * ```
 */
export function readManyPositions(
  window: WindowInfo,
  target: Uint8Array,
  positions: Float64Array | readonly number[],
  length: number,
): Float64Array {
  return checkReadMany(target, positions, length, window.byteLength, window.path);
}

/**
 * The error of a call on `window` that failed with `status`: `[position, position + length)` is
 * the range it was given, `source` where its details are.
 *
 * @example
 * ```ts
 * import { callFailure } from "./window.ts";
 * import { DETAIL, Status } from "./abi.ts";
 * const window = { path: "/tmp/x", mode: "r", offset: 0, byteLength: 12 } as const;
 * const source = { detail: new DataView(new ArrayBuffer(DETAIL.sizeBytes)), fileSize: () => 12 };
 * const error = callFailure(window, source, Status.out_of_range, "read", 10, 5);
 * console.log(error instanceof RangeError); // true
 * ```
 */
export function callFailure(
  window: WindowInfo,
  source: FailureSource,
  status: number,
  operation: WindowOperation,
  position: number,
  length: number,
): Error {
  return callError(status, {
    operation,
    position,
    length,
    path: window.path,
    mode: window.mode,
    windowOffset: window.offset,
    windowLength: window.byteLength,
    detail: source.detail,
    fileSize: () => source.fileSize(),
  });
}

/**
 * The error of a `readMany` of `positions.length` ranges of `length` bytes that failed with
 * `status`: an I/O fault names the failing range and counts the bytes of the ranges before it.
 *
 * @example
 * ```ts
 * import { readManyFailure } from "./window.ts";
 * import { DETAIL, Status } from "./abi.ts";
 * const window = { path: "/tmp/x", mode: "r", offset: 0, byteLength: 8192 } as const;
 * const detail = new DataView(new ArrayBuffer(DETAIL.sizeBytes));
 * detail.setBigUint64(DETAIL.bytesDone, 150n, true);
 * const positions = new Float64Array([0, 4096]);
 * const error = readManyFailure(window, { detail, fileSize: () => 8192 }, Status.io, positions, 100);
 * console.log(error.message.startsWith("readMany, range 1 of 2")); // true
 * ```
 */
export function readManyFailure(
  window: WindowInfo,
  source: FailureSource,
  status: number,
  positions: Float64Array,
  length: number,
): Error {
  const count = positions.length;
  const index = splitBatchCount(source.detail, length, count);
  const error = callFailure(window, source, status, "read", positions[index], length);
  return error instanceof MappedIOError ? batchError(error, index, count, length) : error;
}

/**
 * The error of a `readMany` whose positions, checked before the call, changed during it (they
 * share memory with the target, or another thread wrote them): the library stopped at the
 * first range it could not trust, after `DETAIL.bytesDone` bytes.
 *
 * @example
 * ```ts
 * import { positionsChanged } from "./window.ts";
 * import { DETAIL } from "./abi.ts";
 * const error = positionsChanged(new DataView(new ArrayBuffer(DETAIL.sizeBytes)));
 * console.log(error instanceof RangeError); // true
 * ```
 */
export function positionsChanged(detail: DataView): RangeError {
  return new RangeError(
    `readMany: a position changed while the ranges were copied (do the positions share ` +
      `memory with the target?); ${decodeDetail(detail).bytesDone} bytes were copied, the ` +
      "rest not",
  );
}

/** What `gm_open` is asked for. */
export interface NativeOpenRequest {
  /** The file's path. */
  path: string;
  /** The mode's number (`MODES` in ./open_options.ts). */
  mode: number;
  /** File offset of the window. */
  offset: bigint;
  /** Length of the window, or undefined for the rest of the file. */
  length: bigint | undefined;
  /** Salvage mode: faults read as zeros and are counted. */
  salvage?: boolean;
  /** Keep a window that now lies past the end of the file (a worker's re-open). */
  pastEnd?: boolean;
  /** Writes go through the file descriptor (`writes: "pwrite"`). */
  writesToFile?: boolean;
}

/** What `gm_open` answered: its status and its result record, decoded. */
export interface NativeOpenResult {
  /** `Status.ok` or why the open failed. */
  status: number;
  /** The handle and window length on success; the failure's facts otherwise. */
  result: OpenResultRecord;
}

const encoder = new TextEncoder();

/**
 * Opens and maps a window in this process (`gm_open`). Nothing stays open when it fails.
 *
 * @example
 * ```ts
 * import { openNative } from "./window.ts";
 * import { native } from "./library.ts";
 * import { MODE, Status } from "./abi.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array(10));
 * const request = { path, mode: MODE.read, offset: 0n, length: undefined };
 * const { status, result } = openNative(request);
 * console.log(status === Status.ok, result.lengthBytes); // true 10n
 * native().gm_close(result.handle);
 * ```
 */
export function openNative(request: NativeOpenRequest): NativeOpenResult {
  const pathBytes = encoder.encode(request.path);
  const record = new Uint8Array(OPEN_RESULT.sizeBytes);
  const status = native().gm_open(
    pathBytes,
    BigInt(pathBytes.byteLength),
    request.mode,
    request.offset,
    request.length ?? 0n,
    openFlags(request),
    record,
  );
  return { status, result: decodeOpenResult(new DataView(record.buffer)) };
}

function openFlags(request: NativeOpenRequest): number {
  return (request.length === undefined ? 0 : OPEN_FLAGS.lengthGiven) |
    (request.pastEnd === true ? OPEN_FLAGS.pastEnd : 0) |
    (request.salvage === true ? OPEN_FLAGS.salvage : 0) |
    (request.writesToFile === true ? OPEN_FLAGS.writesToFile : 0);
}

/** A window opened in this process: its handle and its length. */
export interface OpenedWindow {
  /** The map's handle. */
  handle: number;
  /** The window's length in bytes. */
  byteLength: number;
}

/**
 * Opens and maps the window `resolved` describes in this process, or throws the error that says
 * why it cannot be (nothing stays open then).
 *
 * @example
 * ```ts
 * import { openInProcess } from "./window.ts";
 * import { resolveOpen } from "./open_options.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array(10));
 * import { native } from "./library.ts";
 * const opened = openInProcess(resolveOpen(path, { offset: 4 }), false);
 * console.log(opened.byteLength); // 6
 * native().gm_close(opened.handle);
 * ```
 */
export function openInProcess(resolved: ResolvedOpen, salvage: boolean): OpenedWindow {
  const { path, mode, offset, length } = resolved;
  const { status, result } = openNative({
    path,
    mode: MODES[mode],
    offset,
    length,
    salvage,
    writesToFile: resolved.writes === "pwrite",
  });
  noteOpen(status === Status.ok);
  if (status !== Status.ok) {
    throw openError(status, openFailure(result), path, mode, offset, length);
  }
  const end = offset + result.lengthBytes;
  if (end > BigInt(Number.MAX_SAFE_INTEGER)) {
    native().gm_close(result.handle);
    noteRelease(false);
    throw new RangeError(`the window ends at byte ${end}, past 2^53; map a smaller window`);
  }
  return { handle: result.handle, byteLength: Number(result.lengthBytes) };
}

/**
 * The size of the file at `path` now, or undefined when it cannot be read: the file size of a
 * window whose map lives in another process.
 *
 * @example
 * ```ts
 * import { fileSizeAt } from "./window.ts";
 * console.log(fileSizeAt("/no/such/file")); // undefined
 * ```
 */
export function fileSizeAt(path: string): number | undefined {
  try {
    return Deno.statSync(path).size;
  } catch {
    return undefined;
  }
}
