/**
 * guardmap: memory-mapped files for Deno that never let an I/O error crash or silently corrupt
 * the program.
 *
 * - {@linkcode MappedFile} maps any window of a file of any size (64-bit offsets, only the
 *   window is mapped) and copies in and out through guarded routines: a truncated file or a
 *   failing disk becomes a {@linkcode MappedIOError}, not a SIGBUS.
 * - {@linkcode MapPool} keeps mappings in supervised worker processes: code that touches mapped
 *   memory directly (a `run` kernel on a zero-copy view) can only kill a worker, which is
 *   restarted; the call rejects with {@linkcode WorkerCrashedError}.
 *
 * Needs `--allow-ffi`, plus `--allow-read` (and `--allow-write` for modes `"r+"` and `"w+"`) for
 * the files it maps.
 *
 * @example Survive a file truncated under the map
 * ```ts
 * import { MappedFile, MappedIOError } from "./mod.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array(65536));
 * using map = MappedFile.open(path);
 * await Deno.truncate(path, 4096);
 * try {
 *   map.read(new Uint8Array(65536), 0);
 * } catch (error) {
 *   if (error instanceof MappedIOError) console.log(error.message);
 * }
 * ```
 *
 * @module
 */
export { MappedFile } from "./ffi/mapped_file.ts";
export type {
  Advice,
  ElementArray,
  ElementArrayConstructor,
  MapMode,
  OpenOptions,
  PrefaultOptions,
  SalvagedFaults,
  WindowRange,
} from "./ffi/types.ts";
export {
  FileTooLargeError,
  type FileTooLargeErrorOptions,
  GuardmapError,
  type GuardmapErrorOptions,
  MapClosedError,
  MappedIOError,
  type MappedIOErrorOptions,
  type MappedOperation,
  NotRegularFileError,
  type NotRegularFileErrorOptions,
  type NotRegularFileKind,
  WorkerCrashedError,
  type WorkerCrashedErrorOptions,
} from "./ffi/errors.ts";
export {
  MapPool,
  type MapPoolOptions,
  type PoolFile,
  type PoolOpenOptions,
} from "./workers/map_pool.ts";
export { Status, type StatusName } from "./ffi/status.ts";
export { type FaultGuardState, rearmFaultGuard } from "./ffi/fault_guard.ts";
export { type LibraryInfo, libraryInfo } from "./ffi/library.ts";
