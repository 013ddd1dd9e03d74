/**
 * Turns a failed call's status and detail record into the error users see. Shared by
 * `MappedFile` (in-process) and `MapPool` (through a worker). Internal.
 *
 * @module
 */
import { errorCodeOf, Status } from "./status.ts";
import { GuardmapError, MapClosedError, MappedIOError, type MappedOperation } from "./errors.ts";
import { decodeDetail, DETAIL } from "./abi.ts";
import type { SalvagedFaults } from "./types.ts";

/** What was being done, on which window, and where to find the details. */
export interface CallContext {
  /** The operation, as named in errors. */
  operation: MappedOperation | "advise";
  /** Window position and length of the call. */
  position: number;
  length: number;
  /** The mapped file. */
  path: string;
  mode: string;
  /** File offset and length of the window. */
  windowOffset: number;
  windowLength: number;
  /** The library's detail record for this call (`DETAIL` in ./abi.ts). */
  detail: DataView;
  /** The file's current size, if it can be had. */
  fileSize: () => number | undefined;
}

/**
 * The error for `status` (not ok) from a call described by `call`.
 *
 * @example
 * ```ts
 * import { callError } from "./call_error.ts";
 * import { DETAIL } from "./abi.ts";
 * const error = callError(2, {
 *   operation: "read", position: 10, length: 5, path: "/tmp/x", mode: "r",
 *   windowOffset: 0, windowLength: 12, detail: new DataView(new ArrayBuffer(DETAIL.sizeBytes)),
 *   fileSize: () => 12,
 * });
 * console.log(error instanceof RangeError); // true
 * ```
 */
export function callError(status: number, call: CallContext): Error {
  const { operation, position, length, path } = call;
  switch (status) {
    case Status.io:
    case Status.bad_address:
    case Status.no_space:
      return faultError(status, call);
    case Status.invalid_argument:
      return new RangeError(
        `${operation}: position and length must be non-negative integers, got ` +
          `position ${position} and length ${length}`,
      );
    case Status.out_of_range:
      return new RangeError(
        `${operation}: [${position}, ${position + length}) is outside the window ` +
          `[0, ${call.windowLength}) of "${path}"`,
      );
    case Status.bad_handle:
      return new MapClosedError(operation, path);
    case Status.read_only:
      return new GuardmapError(
        `cannot ${operation} "${path}": it is mapped read-only (mode "${call.mode}"); ` +
          `open it with mode "r+" (or "c" for private changes)`,
        { code: errorCodeOf(status), status, path },
      );
    case Status.not_supported:
      if (operation === "prefault") {
        return new GuardmapError(
          `cannot prefault "${path}" for writing here: that needs MADV_POPULATE_WRITE (Linux ` +
            `5.14 or later; Windows has no equivalent), and reading one byte a page would neither ` +
            `dirty the pages nor break copy-on-write; call prefault() without write: true, or ` +
            `write the pages`,
          { code: errorCodeOf(status), status, path },
        );
      }
      return new GuardmapError(
        `cannot ${operation} "${path}" in mode "${call.mode}": not supported there`,
        { code: errorCodeOf(status), status, path },
      );
    default:
      return new GuardmapError(
        `${operation} on "${path}" failed: ${errorCodeOf(status)} (status ${status}, ` +
          `os error ${call.detail.getInt32(DETAIL.osError, true)})`,
        { code: errorCodeOf(status), status, path },
      );
  }
}

function faultError(status: number, call: CallContext): MappedIOError {
  const { position, length, windowOffset, path } = call;
  const operation = call.operation === "advise" ? "check" : call.operation;
  const detail = decodeDetail(call.detail);
  const copied = detail.bytesDone;
  const faultOffset = detail.faultWindowOffset;
  // prefault reports the failing page itself; a copy reports how far it got; flush and advise
  // report no place, only that the range failed.
  let failedAt = operation === "prefault"
    ? faultOffset
    : operation === "read" || operation === "write"
    ? position + copied
    : position;
  const fileSize = call.fileSize();
  const reason = fileSize !== undefined && fileSize <= windowOffset + failedAt ? "truncated" : "io";
  if (reason === "truncated") {
    // The kernel serves the page holding the new end in full, zeros after the end, and faults
    // only at the next page. Those zeros are not file data: count only up to the real end.
    failedAt = Math.max(position, Math.min(failedAt, fileSize! - windowOffset));
  }
  const bytesTransferred = operation === "prefault" ? copied : failedAt - position;
  const fileOffset = windowOffset + failedAt;
  const signal = signalName(detail.signal);
  const cause = reason === "truncated"
    ? `the file was truncated to ${fileSize} bytes while mapped`
    : status === Status.no_space
    ? "the device is full"
    : operation === "flush"
    ? "writing the dirty pages back failed"
    : "the device or file system reported an I/O error";
  const moved = operation === "read" || operation === "write"
    ? `; ${bytesTransferred} of ${length} bytes were ${operation === "read" ? "read" : "written"}`
    : "";
  const advice = reason === "truncated"
    ? "Map the file again over its current size."
    : operation === "flush"
    ? "The data is not safely in the file; write it again once the storage recovers."
    : "Check the device; the same call succeeds again once the storage recovers.";
  return new MappedIOError(
    `${operation} failed at file offset ${fileOffset} (window position ${failedAt}) of ` +
      `"${path}": ${cause}${signal ? ` (${signal})` : ""}${moved}. ${advice}`,
    {
      code: errorCodeOf(status),
      status,
      path,
      osError: detail.osError,
      operation,
      position: failedAt,
      fileOffset,
      bytesTransferred,
      reason,
      fileSize,
      signal,
    },
  );
}

function signalName(signal: number): string | undefined {
  if (signal === 0) return undefined;
  if (Deno.build.os === "windows") {
    return signal === -1073741818 ? "EXCEPTION_IN_PAGE_ERROR" : "EXCEPTION_ACCESS_VIOLATION";
  }
  return signal === 7 ? "SIGBUS" : signal === 11 ? "SIGSEGV" : `signal ${signal}`;
}

/**
 * The error of `operation` on a map opened with `salvage: true` whose zero-copy views touched
 * `faults.count` pages that could not be read; `fileSize` is the file's size now, if known.
 *
 * @example
 * ```ts
 * import { salvagedError } from "./call_error.ts";
 * const window = { path: "/tmp/x", offset: 0 };
 * const error = salvagedError(window, "read", { count: 1, fileOffset: 8192 }, 4096);
 * console.log(error.reason); // "truncated"
 * ```
 */
export function salvagedError(
  window: { readonly path: string; readonly offset: number },
  operation: MappedOperation,
  faults: SalvagedFaults,
  fileSize: number | undefined,
): MappedIOError {
  const { path } = window;
  const fileOffset = faults.fileOffset ?? window.offset;
  const reason = fileSize !== undefined && fileSize <= fileOffset ? "truncated" : "io";
  return new MappedIOError(
    `${operation} on "${path}": a zero-copy view touched ${faults.count} page(s) that ` +
      `could not be read, the first at file offset ${fileOffset}` +
      `${reason === "truncated" ? ` (the file was truncated to ${fileSize} bytes)` : ""}. ` +
      "guardmap replaced them with zeros: what was read there is zeros, and what was written " +
      "there will not reach the file (flush fails for this map from now on). Map the file " +
      "again to see its current contents.",
    {
      code: "EIO",
      status: Status.io,
      path,
      operation,
      position: fileOffset - window.offset,
      fileOffset,
      bytesTransferred: 0,
      reason,
      fileSize,
      signal: "SIGBUS",
    },
  );
}
