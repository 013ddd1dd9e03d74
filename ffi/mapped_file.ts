/**
 * `MappedFile`: a window of a file mapped into this process, read and written through guarded
 * copies that turn I/O faults into {@linkcode MappedIOError}s.
 *
 * @module
 */
import { native } from "./library.ts";
import { Status } from "./status.ts";
import { GuardmapError, MapClosedError, type MappedOperation } from "./errors.ts";
import { salvagedError } from "./call_error.ts";
import { asBytes } from "./bytes.ts";
import { checkCount, elementPosition, elementSize, elementTypeSize } from "./arguments.ts";
import { resolveOpen } from "./open_options.ts";
import { noteRelease } from "./gc_nudge.ts";
import { DETAIL } from "./abi.ts";
import {
  closeMap,
  fileSizeCall,
  fileSizeOf,
  forgetLeak,
  type LeakedMap,
  mapView,
  salvagedFaults,
  watchLeak,
} from "./map_handle.ts";
import {
  adviseArguments,
  callFailure,
  copyArguments,
  type FailureSource,
  flushArguments,
  openInProcess,
  positionsChanged,
  prefaultArguments,
  readManyFailure,
  readManyPositions,
  type WindowOperation,
} from "./window.ts";
import type {
  Advice,
  ElementArray,
  ElementArrayConstructor,
  MapMode,
  OpenOptions,
  PrefaultOptions,
  SalvagedFaults,
  WindowRange,
} from "./types.ts";

// One detail record per isolate, written by the library only when a call fails (read and write:
// fetched by gm_last_detail). Reused so the copy path allocates nothing.
const detail = new Uint8Array(DETAIL.sizeBytes);
const detailView = new DataView(detail.buffer);

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
  #leaked: LeakedMap;
  #salvage = false;
  /** Salvaged faults already reported by a read, write or check. */
  #reportedFaults = 0;

  private constructor(path: string, mode: MapMode, handle: number, offset: number, length: number) {
    this.path = path;
    this.mode = mode;
    this.#handle = handle;
    this.offset = offset;
    this.byteLength = length;
    this.#leaked = watchLeak(this, handle);
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
    const resolved = resolveOpen(path, options);
    const { handle, byteLength } = openInProcess(resolved, options.salvage === true);
    const { path: filePath, mode, offset } = resolved;
    const map = new MappedFile(filePath, mode, handle, Number(offset), byteLength);
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
    const bytes = copyArguments("read", target, position);
    this.#checkCopy("read");
    const status = native().gm_read(this.#handle, position, bytes, bytes.byteLength);
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
    this.#checkCopy("read");
    const list = readManyPositions(this, bytes, positions, length);
    const status = native().gm_read_many(
      this.#handle,
      list,
      list.length,
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
      throw positionsChanged(detailView);
    }
    throw readManyFailure(this, this.#failureSource, status, list, length);
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
    const bytes = copyArguments("write", source, position);
    this.#checkCopy("write");
    const status = native().gm_write(this.#handle, position, bytes, bytes.byteLength);
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
    const [position, length] = flushArguments(this, range);
    this.#checkOpen("flush");
    if (this.#salvage && this.faults.count > 0) {
      // For good: writes to a salvaged page went to anonymous memory, not to the file.
      throw salvagedError(this, "flush", this.faults, fileSizeOf(this.#handle));
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
    const [position, length, adviceValue] = adviseArguments(this, advice, range);
    this.#checkOpen("advise");
    const status = native().gm_advise(this.#handle, position, length, adviceValue, detail);
    if (status !== Status.ok) throw this.#copyError(status, "advise", position, length);
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
    const [position, length, write] = prefaultArguments(this, options);
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
    return salvagedFaults(this.#handle, this.offset);
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
    this.#checkCopy("check");
  }

  /** Throws unless the map is open; reports faults salvaged since the last report. */
  #checkCopy(operation: MappedOperation): void {
    this.#checkOpen(operation);
    if (!this.#salvage) return;
    const faults = this.faults;
    if (faults.count <= this.#reportedFaults) return;
    this.#reportedFaults = faults.count;
    throw salvagedError(this, operation, faults, fileSizeOf(this.#handle));
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
    this.#checkOpen("fileSize");
    const { status, sizeBytes } = fileSizeCall(this.#handle);
    if (status !== Status.ok) throw this.#copyError(status, "check", 0, 0);
    return sizeBytes;
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
    this.#checkOpen("unsafeView");
    if (this.#view === undefined) {
      this.#view = mapView(this.#handle, this.byteLength);
      if (this.#view === undefined) throw new MapClosedError("unsafeView", this.path);
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
    const status = closeMap(this.#handle, this.#view);
    this.#view = undefined;
    if (status === Status.busy) {
      throw new GuardmapError(
        `cannot close the map of "${this.path}": another thread is copying through it; retry`,
        { code: "EBUSY", status, path: this.path },
      );
    }
    this.#closed = true;
    forgetLeak(this);
    noteRelease(false);
  }

  /** Same as `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #checkOpen(operation: string): void {
    if (this.#closed) throw new MapClosedError(operation, this.path);
  }

  /** The detail record and file size a failed call on this map is described with. */
  get #failureSource(): FailureSource {
    const handle = this.#handle;
    return { detail: detailView, fileSize: () => fileSizeOf(handle) };
  }

  #copyError(status: number, operation: WindowOperation, position: number, length: number): Error {
    // gm_read and gm_write take no detail buffer: the library kept the record for this thread.
    if (operation === "read" || operation === "write") native().gm_last_detail(detail);
    return callFailure(this, this.#failureSource, status, operation, position, length);
  }
}
