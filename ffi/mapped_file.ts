/**
 * `MappedFile`: a window of a file mapped into this process, read and written through guarded
 * copies that turn I/O faults into {@linkcode MappedIOError}s.
 *
 * @module
 */
import { native } from "./library.ts";
import { Status } from "./status.ts";
import { GuardmapError, MapClosedError, MappedIOError, type MappedOperation } from "./errors.ts";
import { callError } from "./call_error.ts";
import { asBytes, checkPosition } from "./bytes.ts";
import {
  adviceNumber,
  checkCount,
  elementSize,
  elementTypeSize,
  prefaultRange,
  windowRange,
} from "./arguments.ts";
import { batchError, checkReadMany, splitBatchCount } from "./read_many.ts";
import { MODES, openError, openFailure, resolveOpen } from "./open_options.ts";
import { noteOpen, noteRelease } from "./gc_nudge.ts";

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
   * How `write` reaches the file, modes `"r+"` and `"w+"` (Linux): `"map"` (the default) copies
   * into the mapping through the guard; `"pwrite"` writes through the file descriptor. The map
   * sees the bytes either way (one page cache). With `"map"` the kernel marks whole page-cache
   * folios dirty (1 MiB was measured on ext4), so `flush()` after a 4 KiB write writes about
   * 1 MiB to the device; with `"pwrite"` only the blocks written become dirty. Errors the file
   * system gives at write time (`ENOSPC` mostly; `EIO` on file systems that write through, such
   * as FUSE and many network ones) are thrown by `write` itself; on ext4 and the like a failing
   * device is still reported by `flush()`. A write reaching past
   * the file's current end (truncated under the map) is written up to the end and throws there,
   * even inside the last partial page (which a write through the map would take without error);
   * it does not grow the file back, unless a truncation races with the call (the size is read
   * just before the `pwrite`). Not with `salvage`.
   */
  writes?: "map" | "pwrite";
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
  /** Fault the pages in writable (for a window about to be written); default false. */
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

const OPEN_FLAG_LENGTH_GIVEN = 1;
const OPEN_FLAG_SALVAGE = 4;
const OPEN_FLAG_WRITES_TO_FILE = 8;

// One detail record per isolate, written by the library only when a call fails. Reused so the
// copy path allocates nothing.
const detail = new Uint8Array(32);
const detailView = new DataView(detail.buffer);
const sizeOut = new Uint8Array(8);
const sizeView = new DataView(sizeOut.buffer);
const encoder = new TextEncoder();

/** What the finalizer of a map that was never closed needs: its handle and its view, if any. */
interface Leaked {
  handle: number;
  view: WeakRef<ArrayBuffer> | undefined;
}

// A map the program dropped without close() is released when the garbage collector finds it
// (between tasks: finalizers never run inside a synchronous loop). Without a zero-copy view it is
// unmapped. With one, the view may outlive the map: while the view's own buffer is reachable the
// map waits for it; once the buffer is gone (or was transferred, so a copy of it may live
// anywhere), the library closes the file but leaves the range mapped to zeros instead of
// unmapping it, so a late access reads zeros and cannot crash.
const leaked = new FinalizationRegistry<Leaked>(({ handle, view }) => {
  const buffer = view?.deref();
  if (buffer !== undefined && !buffer.detached) return leakedViews.register(buffer, handle);
  noteRelease(true);
  if (view === undefined) native().gm_close(handle);
  else native().gm_release(handle);
});
const leakedViews = new FinalizationRegistry<number>((handle) => {
  noteRelease(true);
  native().gm_release(handle);
});

/**
 * A window `[offset, offset + length)` of a file, mapped into this process. Only the window is
 * mapped (from `offset` rounded down to the page size), offsets past 4 GiB work, and every copy
 * in or out goes through a guard that turns I/O faults into {@linkcode MappedIOError}.
 *
 * Use it with `using` (or call `close()`); an unclosed map is unmapped when collected.
 *
 * @example Map a window at 6 GiB of a sparse file, write and read it back
 * ```ts
 * import { MappedFile } from "../mod.ts";
 * const path = await Deno.makeTempFile();
 * using map = MappedFile.open(path, { mode: "w+", offset: 6 * 2 ** 30, length: 4096 });
 * map.write(new TextEncoder().encode("hello"), 0);
 * const text = new Uint8Array(5);
 * map.read(text, 0);
 * console.log(new TextDecoder().decode(text)); // "hello"
 * await Deno.remove(path);
 * ```
 */
export class MappedFile implements Disposable {
  /** The path of the file, as a string. */
  readonly path: string;
  /** The mode the file was mapped with. */
  readonly mode: MapMode;
  /** File offset of the window's first byte. */
  readonly offset: number;
  /** Length of the window in bytes. */
  readonly byteLength: number;
  #handle: number;
  #closed = false;
  #view: ArrayBuffer | undefined;
  #leaked: Leaked;
  #salvage = false;
  /** Salvaged faults already reported by a read, write or check. */
  #reportedFaults = 0;

  private constructor(path: string, mode: MapMode, handle: number, offset: number, length: number) {
    this.path = path;
    this.mode = mode;
    this.#handle = handle;
    this.offset = offset;
    this.byteLength = length;
    this.#leaked = { handle, view: undefined };
    leaked.register(this, this.#leaked, this);
  }

  /**
   * Opens `path` and maps a window of it.
   *
   * Throws `Deno.errors.NotFound`, `Deno.errors.IsADirectory`, `Deno.errors.NotADirectory`,
   * `Deno.errors.FilesystemLoop` (`code: "ELOOP"`), `Deno.errors.PermissionDenied` or
   * `Deno.errors.NotCapable` (missing `--allow-read`/`--allow-write`) like `Deno.open`;
   * `TypeError` for arguments of the wrong type (a mode string where the options belong, a
   * `null` option, an unknown key, a NUL in the path); `RangeError` for a bad offset or length,
   * or a window past the end of the file; `NotRegularFileError` for a FIFO, socket or device
   * (never waiting on it); `FileTooLargeError` when a `"w+"` window ends past the file system's
   * largest file or `RLIMIT_FSIZE`; {@linkcode GuardmapError} for the rest (for example
   * `code: "ENOSPC"` in mode `"w+"`, `"ENAMETOOLONG"`). On failure nothing stays open or mapped.
   *
   * @example Map the second mebibyte of a file read-only
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * await Deno.writeFile(path, new Uint8Array(2 ** 21));
   * using map = MappedFile.open(path, { offset: 2 ** 20, length: 2 ** 20 });
   * console.log(map.offset, map.byteLength); // 1048576 1048576
   * ```
   */
  static open(path: string | URL, options: OpenOptions = {}): MappedFile {
    const { path: filePath, mode, offset, length, writes } = resolveOpen(path, options);
    const lib = native();
    const pathBytes = encoder.encode(filePath);
    const out = new Uint8Array(32);
    const status = lib.gm_open(
      pathBytes,
      BigInt(pathBytes.byteLength),
      MODES[mode],
      offset,
      length ?? 0n,
      (length === undefined ? 0 : OPEN_FLAG_LENGTH_GIVEN) |
        (options.salvage ? OPEN_FLAG_SALVAGE : 0) |
        (writes === "pwrite" ? OPEN_FLAG_WRITES_TO_FILE : 0),
      out,
    );
    noteOpen(status === Status.ok);
    const view = new DataView(out.buffer);
    if (status !== Status.ok) {
      throw openError(status, openFailure(out), filePath, mode, offset, length);
    }
    const handle = view.getFloat64(0, true);
    const windowLength = view.getBigUint64(8, true);
    if (offset + windowLength > BigInt(Number.MAX_SAFE_INTEGER)) {
      lib.gm_close(handle);
      noteRelease(false);
      throw new RangeError(
        `the window ends at byte ${offset + windowLength}, past 2^53; map a smaller window`,
      );
    }
    const map = new MappedFile(filePath, mode, handle, Number(offset), Number(windowLength));
    map.#salvage = options.salvage === true;
    return map;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Copies `target.byteLength` bytes of the window, starting at `position`, into `target`.
   * Returns the number of bytes copied. A range outside the window is a `RangeError` and copies
   * nothing; an I/O fault throws {@linkcode MappedIOError} after copying the bytes before it.
   *
   * @example
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * await Deno.writeFile(path, new Uint8Array([1, 2, 3, 4]));
   * using map = MappedFile.open(path);
   * const target = new Uint8Array(2);
   * console.log(map.read(target, 2), target); // 2 Uint8Array(2) [ 3, 4 ]
   * ```
   */
  read(target: ArrayBufferView, position: number = 0): number {
    const bytes = asBytes(target, "read");
    checkPosition(position, "read");
    if (this.#closed) throw new MapClosedError("read", this.path);
    if (this.#salvage) this.#reportSalvaged("read");
    const status = native().gm_read(this.#handle, position, bytes, bytes.byteLength, detail);
    if (status !== Status.ok) throw this.#copyError(status, "read", position, bytes.byteLength);
    return bytes.byteLength;
  }

  /**
   * Reads many ranges of `length` bytes in one call: range `i` is copied from window position
   * `positions[i]` into `target` at byte `i * length`. Returns the number of bytes copied,
   * `positions.length * length`.
   *
   * One native call serves the whole list, so many small random reads cost much less than one
   * `read` each (see bench/RESULTS.md); pass a `Float64Array` to avoid a conversion. Every range
   * is checked before anything is copied: a position that is not a number (`"8"` and `8n` are
   * not converted) is a `TypeError`, a range outside the window, or a target shorter than
   * `positions.length * length` bytes, is a `RangeError`, and neither copies anything. An I/O fault throws
   * {@linkcode MappedIOError} after copying the bytes before it: `rangeIndex` names the range,
   * `position` and `fileOffset` the first byte not copied, and `bytesTransferred` counts the
   * bytes of all earlier ranges plus those of the failing one. Keep `positions` out of
   * `target`'s memory: the library takes them 256 at a time, so a later position that an earlier
   * range overwrote is read as overwritten (and refused with a `RangeError` when it is no longer
   * a position inside the window; memory outside the window is never read).
   *
   * @example Gather three 2-byte records
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * await Deno.writeFile(path, new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7]));
   * using map = MappedFile.open(path);
   * const target = new Uint8Array(6);
   * map.readMany(target, new Float64Array([6, 0, 3]), 2);
   * console.log(target); // Uint8Array(6) [ 6, 7, 0, 1, 3, 4 ]
   * ```
   */
  readMany(
    target: ArrayBufferView,
    positions: Float64Array | readonly number[],
    length: number,
  ): number {
    const bytes = asBytes(target, "readMany");
    if (this.#closed) throw new MapClosedError("read", this.path);
    if (this.#salvage) this.#reportSalvaged("read");
    const list = checkReadMany(bytes, positions, length, this.byteLength, this.path);
    const status = native().gm_read_many(
      this.#handle,
      list,
      list.length,
      length,
      bytes,
      bytes.byteLength,
      detail,
    );
    if (status === Status.ok) return list.length * length;
    if (status === Status.out_of_range || status === Status.invalid_argument) {
      // Checked above, so the list changed during the call (it shares memory with the target,
      // or another thread wrote it): the library stopped at the range it could not trust.
      throw new RangeError(
        `readMany: a position changed while the ranges were copied (do the positions share ` +
          `memory with the target?); ${Number(detailView.getBigUint64(0, true))} bytes were ` +
          `copied, the rest not`,
      );
    }
    const index = splitBatchCount(detailView, length, list.length);
    const error = this.#copyError(status, "read", list[index], length);
    throw error instanceof MappedIOError ? batchError(error, index, list.length, length) : error;
  }

  /**
   * Copies all of `source` into the window at `position`. Returns the number of bytes written.
   * Throws for mode `"r"`. The data reaches the file's page cache at once and the device on
   * `flush()` (or whenever the kernel writes it back).
   *
   * @example
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * await Deno.writeFile(path, new Uint8Array(4));
   * using map = MappedFile.open(path, { mode: "r+" });
   * map.write(new Uint8Array([9, 9]), 1);
   * map.flush();
   * console.log(await Deno.readFile(path)); // Uint8Array(4) [ 0, 9, 9, 0 ]
   * ```
   */
  write(source: ArrayBufferView, position: number = 0): number {
    const bytes = asBytes(source, "write");
    checkPosition(position, "write");
    if (this.#closed) throw new MapClosedError("write", this.path);
    if (this.#salvage) this.#reportSalvaged("write");
    const status = native().gm_write(this.#handle, position, bytes, bytes.byteLength, detail);
    if (status !== Status.ok) throw this.#copyError(status, "write", position, bytes.byteLength);
    return bytes.byteLength;
  }

  /**
   * Reads `count` elements of `type` starting at element `index` of the window (byte position
   * `index * type.BYTES_PER_ELEMENT`) into a new typed array. Elements are in the platform's
   * byte order, little-endian on x86_64 and aarch64; for another byte order, `read` into a
   * buffer and use a `DataView`.
   *
   * @example Read three float64 values starting at element 1
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * await Deno.writeFile(path, new Uint8Array(new Float64Array([0, 1.5, 2.5, 3.5]).buffer));
   * using map = MappedFile.open(path);
   * console.log(map.readArray(Float64Array, 1, 3)); // Float64Array(3) [ 1.5, 2.5, 3.5 ]
   * ```
   */
  readArray<T extends ElementArray>(
    type: ElementArrayConstructor<T>,
    index: number,
    count: number,
  ): T {
    const position = elementPosition(index, elementTypeSize(type, "readArray"), "readArray");
    const array = new type(checkCount(count, "readArray", "count"));
    this.read(array, position);
    return array;
  }

  /**
   * Writes the elements of `values` into the window starting at element `index` (byte position
   * `index * values.BYTES_PER_ELEMENT`), in the platform's byte order.
   *
   * @example
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * using map = MappedFile.open(path, { mode: "w+", length: 32 });
   * map.writeArray(new Float64Array([2.5, 3.5]), 2);
   * console.log(map.readArray(Float64Array, 0, 4)); // Float64Array(4) [ 0, 0, 2.5, 3.5 ]
   * ```
   */
  writeArray(values: ElementArray, index: number): number {
    return this.write(
      values,
      elementPosition(index, elementSize(values, "writeArray"), "writeArray"),
    );
  }

  /**
   * Writes the window's dirty pages to the file and waits for the device (`msync(MS_SYNC)`;
   * `FlushViewOfFile` + `FlushFileBuffers` on Windows). Throws {@linkcode MappedIOError} when
   * write-back fails, so data that did not reach the file is never reported as saved. A no-op
   * in mode `"c"`, whose writes never reach the file.
   *
   * @example
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * using map = MappedFile.open(path, { mode: "w+", length: 4096 });
   * map.write(new Uint8Array([1]), 0);
   * map.flush();
   * ```
   */
  flush(range: WindowRange = {}): void {
    const [position, length] = windowRange("flush", range, this.byteLength);
    this.#checkOpen("flush");
    if (this.#salvage && this.faults.count > 0) {
      // For good: writes to a salvaged page went to anonymous memory, not to the file.
      throw this.#salvagedError("flush", this.faults);
    }
    const status = native().gm_flush(this.#handle, position, length, detail);
    if (status !== Status.ok) throw this.#copyError(status, "flush", position, length);
  }

  /**
   * Tells the kernel how the window (or a range of it) will be used. `"dontneed"` is refused in
   * mode `"c"`, where dropping pages would discard the private changes.
   *
   * @example
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * await Deno.writeFile(path, new Uint8Array(8192));
   * using map = MappedFile.open(path);
   * map.advise("sequential");
   * ```
   */
  advise(advice: Advice, range: WindowRange = {}): void {
    const adviceValue = adviceNumber(advice);
    const [position, length] = windowRange("advise", range, this.byteLength);
    this.#checkOpen("advise");
    const status = native().gm_advise(this.#handle, position, length, adviceValue, detail);
    if (status !== Status.ok) {
      throw this.#copyError(status, "advise", position, length);
    }
  }

  /**
   * Faults the pages of the window (or a range of it) in now, so later accesses do not wait for
   * the disk. A page that cannot be read throws {@linkcode MappedIOError} whose `position` is
   * the first failing offset; no signal is raised. A probe, not a promise: pages can be evicted
   * or the file truncated afterwards, which the guarded copies still catch.
   *
   * @example
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * await Deno.writeFile(path, new Uint8Array(8192));
   * using map = MappedFile.open(path);
   * map.prefault();
   * ```
   */
  prefault(options: PrefaultOptions = {}): void {
    const [position, length, write] = prefaultRange(options, this.byteLength);
    this.#checkOpen("prefault");
    const status = native().gm_prefault(this.#handle, position, length, write, detail);
    if (status !== Status.ok) throw this.#copyError(status, "prefault", position, length);
  }

  /**
   * Faults salvaged so far on a map opened with `salvage: true` (always none otherwise).
   *
   * @example
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * await Deno.writeFile(path, new Uint8Array(8192).fill(1));
   * using map = MappedFile.open(path, { salvage: true });
   * const view = map.unsafeView();
   * await Deno.truncate(path, 4096);
   * console.log(view[5000], map.faults); // 0 { count: 1, fileOffset: 5000 }
   * ```
   */
  get faults(): SalvagedFaults {
    if (!this.#salvage || this.#closed) return { count: 0, fileOffset: undefined };
    const out = new BigUint64Array(2);
    const status = native().gm_salvage_faults(this.#handle, new Uint8Array(out.buffer));
    if (status !== Status.ok || out[0] === 0n) return { count: 0, fileOffset: undefined };
    return { count: Number(out[0]), fileOffset: this.offset + Number(out[1]) };
  }

  /**
   * Throws {@linkcode MappedIOError} if a zero-copy view met an I/O error since the last
   * report (maps opened with `salvage: true`); does nothing otherwise.
   *
   * @example
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * await Deno.writeFile(path, new Uint8Array(10));
   * using map = MappedFile.open(path, { salvage: true });
   * map.check(); // nothing salvaged: no error
   * ```
   */
  check(): void {
    if (this.#closed) throw new MapClosedError("check", this.path);
    if (this.#salvage) this.#reportSalvaged("check");
  }

  #reportSalvaged(operation: MappedOperation): void {
    const faults = this.faults;
    if (faults.count <= this.#reportedFaults) return;
    this.#reportedFaults = faults.count;
    throw this.#salvagedError(operation, faults);
  }

  #salvagedError(operation: MappedOperation, faults: SalvagedFaults): MappedIOError {
    const fileOffset = faults.fileOffset ?? this.offset;
    let fileSize: number | undefined;
    if (native().gm_file_size(this.#handle, sizeOut) === Status.ok) {
      fileSize = Number(sizeView.getBigUint64(0, true));
    }
    const reason = fileSize !== undefined && fileSize <= fileOffset ? "truncated" : "io";
    return new MappedIOError(
      `${operation} on "${this.path}": a zero-copy view touched ${faults.count} page(s) that ` +
        `could not be read, the first at file offset ${fileOffset}` +
        `${reason === "truncated" ? ` (the file was truncated to ${fileSize} bytes)` : ""}. ` +
        "guardmap replaced them with zeros: what was read there is zeros, and what was written " +
        "there will not reach the file (flush fails for this map from now on). Map the file " +
        "again to see its current contents.",
      {
        code: "EIO",
        status: Status.io,
        path: this.path,
        operation,
        position: fileOffset - this.offset,
        fileOffset,
        bytesTransferred: 0,
        reason,
        fileSize,
        signal: "SIGBUS",
      },
    );
  }

  /**
   * The file's size now, which may differ from when it was mapped (it may have been truncated
   * or grown by someone else).
   *
   * @example
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * await Deno.writeFile(path, new Uint8Array(100));
   * using map = MappedFile.open(path);
   * await Deno.truncate(path, 10);
   * console.log(map.fileSize()); // 10
   * ```
   */
  fileSize(): number {
    if (this.#closed) throw new MapClosedError("fileSize", this.path);
    const status = native().gm_file_size(this.#handle, sizeOut);
    if (status !== Status.ok) throw this.#copyError(status, "check", 0, 0);
    return Number(sizeView.getBigUint64(0, true));
  }

  /**
   * A zero-copy `Uint8Array` over the window. Fast, and **unguarded**: an I/O fault while
   * JavaScript touches it (a truncated file, a failing disk) kills the process with SIGBUS,
   * exactly as with any other memory map, unless the map was opened with `salvage: true`
   * (then the lost page reads as zeros and the map reports the fault). Use `read`/`write`
   * where the storage can fail, or a `MapPool` worker to keep faults out of this process. The view is detached (length 0) when
   * the map is closed, so it never reaches unmapped memory.
   *
   * @example
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * await Deno.writeFile(path, new Uint8Array([5, 6, 7]));
   * const map = MappedFile.open(path);
   * const view = map.unsafeView();
   * console.log(view[1]); // 6
   * map.close();
   * console.log(view.length); // 0
   * ```
   */
  unsafeView(): Uint8Array {
    if (this.#closed) throw new MapClosedError("unsafeView", this.path);
    if (this.#view === undefined) {
      const pointer = native().gm_address(this.#handle);
      if (pointer === null) throw new MapClosedError("unsafeView", this.path);
      this.#view = Deno.UnsafePointerView.getArrayBuffer(pointer, this.byteLength);
      // From now on the view may outlive this object: the finalizer must not unmap under it.
      this.#leaked.view = new WeakRef(this.#view);
    }
    return new Uint8Array(this.#view);
  }

  /**
   * Detaches any zero-copy view, unmaps the window and closes the file. Calling it again does
   * nothing. Does not flush: call `flush()` first to be sure data reached the device.
   *
   * @example
   * ```ts
   * import { MappedFile } from "../mod.ts";
   * const path = await Deno.makeTempFile();
   * await Deno.writeFile(path, new Uint8Array(1));
   * const map = MappedFile.open(path);
   * map.close();
   * map.close();
   * console.log(map.closed); // true
   * ```
   */
  close(): void {
    if (this.#closed) return;
    const view = this.#view;
    // A detached view was transferred (structuredClone, postMessage, transfer()): its memory
    // now belongs to another buffer, perhaps in another isolate, that close cannot reach.
    const moved = view !== undefined && view.detached;
    // Otherwise detach it: every typed array over it now has length 0, so no JavaScript can
    // touch the pages after they are unmapped.
    if (view !== undefined && !moved) view.transfer(0);
    this.#view = undefined;
    // A moved view keeps its address range, mapped to zeros: reads give zeros, not a crash.
    const status = moved ? native().gm_release(this.#handle) : native().gm_close(this.#handle);
    if (status === Status.busy) {
      throw new GuardmapError(
        `cannot close the map of "${this.path}": another thread is copying through it; retry`,
        { code: "EBUSY", status, path: this.path },
      );
    }
    this.#closed = true;
    leaked.unregister(this);
    noteRelease(false);
  }

  /** Same as `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #checkOpen(operation: string): void {
    if (this.#closed) throw new MapClosedError(operation, this.path);
  }

  #copyError(
    status: number,
    operation: MappedOperation | "advise",
    position: number,
    length: number,
  ): Error {
    return callError(status, {
      operation,
      position,
      length,
      path: this.path,
      mode: this.mode,
      windowOffset: this.offset,
      windowLength: this.byteLength,
      detail: detailView,
      fileSize: () => {
        if (native().gm_file_size(this.#handle, sizeOut) !== Status.ok) return undefined;
        return Number(sizeView.getBigUint64(0, true));
      },
    });
  }
}

function elementPosition(index: number, bytesPerElement: number, operation: string): number {
  return checkCount(index, operation, "index") * bytesPerElement;
}
