/**
 * The public types of guardmap's window calls, shared by `MappedFile` (in-process) and
 * `PoolFile` (through a worker): map modes, open options, ranges, advice and the typed arrays
 * `readArray` fills. A module of their own, so that the modules that check and use them import
 * no class. Re-exported from `mod.ts`.
 *
 * @module
 */

/**
 * How a file is mapped, as in `numpy.memmap`:
 * - `"r"`: read-only, shared (the default);
 * - `"r+"`: read-write, shared; the file must already cover the window;
 * - `"w+"`: create or truncate the file, then size it to `offset + length` and reserve its blocks
 *   (so a full disk fails at open, not later); needs `length`. Before it truncates anything it
 *   checks the process's file-size limit (`RLIMIT_FSIZE`), the file system's largest file and
 *   the free space (counting the blocks the old file gives back): when one of them says no, the
 *   open throws and the file keeps its content and size. If the reservation still fails after
 *   that (another writer took the space, a quota, file-system metadata the estimate cannot
 *   see), the old content is already gone: the file is left at 0 bytes, every block the attempt
 *   took is given back, and a file the open created is removed. On Windows the space check
 *   is the same (the caller's free space, quotas included), but the largest file is only found
 *   by the sizing itself, after the truncation;
 * - `"c"`: copy-on-write, private: writes are visible through this map only, never in the file.
 */
export type MapMode = "r" | "r+" | "w+" | "c";

/** Options of {@linkcode MappedFile.open}. */
export interface OpenOptions {
  /** How to map the file; default `"r"`. */
  mode?: MapMode;
  /** File offset of the window's first byte, any byte offset; default 0. */
  offset?: number | bigint;
  /** Length of the window in bytes; default: the rest of the file. Required for `"w+"`. */
  length?: number | bigint;
  /**
   * Linux, in-process only: let zero-copy views survive I/O errors. When code outside
   * guardmap's copies (JavaScript reading `unsafeView()`, say) touches a page that cannot be
   * read, guardmap maps a page of zeros there instead of letting SIGBUS kill the process: the
   * access goes on and reads zeros. The fault is then reported by the map's next `read`,
   * `write` or `check()` (once per new fault) and by every later `flush()`, because writes that
   * landed on such a page never reach the file. See `faults`. Default false.
   */
  salvage?: boolean;
  /**
   * How `write` reaches the file. `"pwrite"` writes through the file descriptor; `"map"` copies
   * into the mapping through the guard. `"auto"` (the default) is `"pwrite"` in modes `"r+"` and
   * `"w+"` on Linux without `salvage`, and `"map"` everywhere else (mode `"c"` keeps its writes
   * in the map, a salvaged page would not show bytes written to the file, and Windows has no
   * `"pwrite"`); `"pwrite"` where it cannot be used is a `TypeError`. The map sees the bytes at
   * once either way (one page cache).
   *
   * Why the descriptor by default: a write through a mapping marks the whole page-cache folio
   * dirty (1 MiB was measured on ext4), so `flush()` after a 4 KiB write sends about 1 MiB to the
   * device, and the kernel's own write-back does the same; through the descriptor only the
   * blocks written become dirty. In one run it was faster than `"map"` at every size measured,
   * 4 KiB to 64 MiB, with and without `flush()` (bench/where_the_time_goes.md, "Writes and
   * flush"). `"map"` is faster for many small writes to pages the map has already dirtied, with no
   * `flush()` between them (tens of nanoseconds against a system call's microsecond or two).
   *
   * What `"pwrite"` changes: errors the file system gives at write time (`ENOSPC` mostly; `EIO`
   * on file systems that write through, such as FUSE and many network ones) are thrown by `write`
   * itself, with no signal; on ext4 and the like a failing device is still reported by
   * `flush()`. A write reaching past the file's current end (truncated under the map) is written
   * up to the end and throws there, even inside the last partial page (which a write through the
   * map would take without error); it does not grow the file back, unless a truncation races
   * with the call (the size is read just before the `pwrite`). A write that would pass the
   * process's file-size limit (`RLIMIT_FSIZE`), where `pwrite` would raise SIGXFSZ, is copied
   * through the map instead.
   */
  writes?: "auto" | "map" | "pwrite";
}

/** Faults salvaged on a map opened with `salvage: true`. */
export interface SalvagedFaults {
  /** How many pages were replaced by zeros. */
  count: number;
  /** File offset of the lowest faulting address, or undefined when there was none. */
  fileOffset: number | undefined;
}

/** A hint to the kernel about how the window will be used (madvise). */
export type Advice = "normal" | "sequential" | "random" | "willneed" | "dontneed";

/** A byte range of the window; both fields default to the whole window. */
export interface WindowRange {
  /** Offset in the window; default 0. */
  position?: number;
  /** Length in bytes; default: to the end of the window. */
  length?: number;
}

/** Options of {@linkcode MappedFile.prefault}. */
export interface PrefaultOptions extends WindowRange {
  /**
   * Fault the pages in writable (for a window about to be written); default false. Needs Linux
   * 5.14 or later (`MADV_POPULATE_WRITE`); an older kernel, and Windows, refuse it with a
   * `GuardmapError` (`ENOTSUP`) instead of doing less than it says.
   */
  write?: boolean;
}

/** A typed array class that `readArray` can fill. */
export type ElementArray =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/** The constructor of an {@linkcode ElementArray}, such as `Float64Array`. */
export interface ElementArrayConstructor<T extends ElementArray> {
  /** Creates a zero-filled array of `length` elements. */
  new (length: number): T;
  /** Size of one element in bytes. */
  readonly BYTES_PER_ELEMENT: number;
}
