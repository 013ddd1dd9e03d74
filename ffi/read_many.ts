/**
 * The parts of `readMany` that `MappedFile` (in-process) and `PoolFile` (through a worker)
 * share: argument checks with errors that name the bad range, and the fault of one range turned
 * into the fault of the batch. Internal.
 *
 * @module
 */
import { MappedIOError } from "./errors.ts";
import { checkCount, positionList } from "./arguments.ts";
import { DETAIL } from "./abi.ts";

/**
 * Checks a `readMany` call before anything is copied and returns the positions as a
 * `Float64Array` (the array given, when it is one). The native side checks all of it again.
 *
 * @example
 * ```ts
 * import { checkReadMany } from "./read_many.ts";
 * const positions = checkReadMany(new Uint8Array(8), [0, 4], 4, 16, "/tmp/x");
 * console.log(positions); // Float64Array(2) [ 0, 4 ]
 * ```
 */
export function checkReadMany(
  target: Uint8Array,
  positions: Float64Array | readonly number[],
  length: number,
  windowLength: number,
  path: string,
): Float64Array {
  checkCount(length, "readMany", "length");
  const list = positionList(positions);
  const total = list.length * length;
  if (total > target.byteLength) {
    throw new RangeError(
      `readMany: ${list.length} ranges of ${length} bytes need a target of ${total} bytes, ` +
        `got ${target.byteLength}; nothing was copied`,
    );
  }
  for (let index = 0; index < list.length; index++) {
    const position = list[index];
    if (!Number.isSafeInteger(position) || position < 0 || position + length > windowLength) {
      throw new RangeError(
        `readMany: range ${index} [${position}, ${position + length}) is not inside the ` +
          `window [0, ${windowLength}) of "${path}"; nothing was copied`,
      );
    }
  }
  return list;
}

/**
 * Splits the byte count of a failed batch (`DETAIL.bytesDone`, as the library reports it) into
 * the failing range and the bytes copied of it, and writes the latter back into `detail`, so
 * the usual error builder can describe that range as a single read.
 *
 * @example
 * ```ts
 * import { splitBatchCount } from "./read_many.ts";
 * import { DETAIL } from "./abi.ts";
 * const detail = new DataView(new ArrayBuffer(DETAIL.sizeBytes));
 * detail.setBigUint64(DETAIL.bytesDone, 230n, true);
 * console.log(splitBatchCount(detail, 100, 4), detail.getBigUint64(DETAIL.bytesDone, true)); // 2 30n
 * ```
 */
export function splitBatchCount(detail: DataView, length: number, count: number): number {
  const done = Number(detail.getBigUint64(DETAIL.bytesDone, true));
  const index = length === 0 ? 0 : Math.min(Math.floor(done / length), Math.max(count - 1, 0));
  detail.setBigUint64(DETAIL.bytesDone, BigInt(done - index * length), true);
  return index;
}

/**
 * The error of a batch whose range `index` (of `count`, `length` bytes each) failed with
 * `error`: the same fault, named for the batch, counting the bytes of the earlier ranges too.
 *
 * @example
 * ```ts
 * import { batchError } from "./read_many.ts";
 * import { MappedIOError } from "./errors.ts";
 * const single = new MappedIOError("read failed", {
 *   code: "EIO", status: 2, operation: "read", position: 4096, fileOffset: 4096,
 *   bytesTransferred: 30, reason: "io",
 * });
 * const error = batchError(single, 2, 4, 100);
 * console.log(error.rangeIndex, error.bytesTransferred); // 2 230
 * ```
 */
export function batchError(
  error: MappedIOError,
  index: number,
  count: number,
  length: number,
): MappedIOError {
  return new MappedIOError(`readMany, range ${index} of ${count}: ${error.message}`, {
    code: error.code,
    status: error.status,
    path: error.path,
    osError: error.osError,
    operation: "read",
    position: error.position,
    fileOffset: error.fileOffset,
    bytesTransferred: index * length + error.bytesTransferred,
    reason: error.reason,
    fileSize: error.fileSize,
    signal: error.signal,
    rangeIndex: index,
  });
}
