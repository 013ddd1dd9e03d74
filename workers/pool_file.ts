/**
 * `PoolFile`: a file mapped in a MapPool worker, and the object that stands for it in this
 * process. Its calls check their arguments here, then go to the worker (./dispatch.ts).
 *
 * @module
 */
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import { MapClosedError } from "../ffi/errors.ts";
import { asBytes } from "../ffi/bytes.ts";
import {
  adviseArguments,
  copyArguments,
  flushArguments,
  prefaultArguments,
  readManyPositions,
} from "../ffi/window.ts";
import type { ResolvedOpen } from "../ffi/open_options.ts";
import type { Advice, MapMode, PrefaultOptions, WindowRange } from "../ffi/types.ts";
import type { PoolCalls } from "./dispatch.ts";
import { PoolFileRecord, type PoolWorker } from "./pool_worker.ts";
import type { OpenAnswer } from "./protocol.ts";

/** A file mapped in a {@linkcode MapPool} worker. Same window rules as `MappedFile`. */
export interface PoolFile extends AsyncDisposable {
  /** The path of the file. */
  readonly path: string;
  /** The mode the file was mapped with. */
  readonly mode: MapMode;
  /** File offset of the window's first byte. */
  readonly offset: number;
  /** Length of the window in bytes. */
  readonly byteLength: number;
  /** Copies `target.byteLength` bytes from window `position` into `target`. */
  read(target: ArrayBufferView, position?: number): Promise<number>;
  /**
   * Reads many ranges of `length` bytes in one round trip per staging area's worth: range `i`
   * from window position `positions[i]` into `target` at byte `i * length`. Checks, errors and
   * `rangeIndex` as `MappedFile.readMany`; a range longer than half the staging area is a
   * `RangeError` (use `read` for those).
   */
  readMany(
    target: ArrayBufferView,
    positions: Float64Array | readonly number[],
    length: number,
  ): Promise<number>;
  /** Copies `source` into the window at `position`. */
  write(source: ArrayBufferView, position?: number): Promise<number>;
  /** Writes dirty pages back and waits for the device; throws MappedIOError on failure. */
  flush(range?: WindowRange): Promise<void>;
  /** Faults pages in; a page that cannot be read throws MappedIOError at its offset. */
  prefault(options?: PrefaultOptions): Promise<void>;
  /** Tells the worker's kernel how the window will be used. */
  advise(advice: Advice, range?: WindowRange): Promise<void>;
  /**
   * Runs export `name` of `module` inside the worker as `name(view, ...args)`, where `view` is
   * a zero-copy `Uint8Array` over the window, and returns its (awaited) result, copied back by
   * structured clone (JSON values, typed arrays, Maps, bigints, ...). `module` is a URL, or a
   * path resolved against the current directory. Outside guardmap's directory and
   * `permissions.read`, the first `run` of a module restarts the worker with read access to that
   * file, and to each file of its static import graph (import access to the host of an `https:`
   * module), as long as this process holds that permission itself; imports computed at run time
   * need `permissions.read`. If the kernel crashes the worker, or throws,
   * the call rejects with {@linkcode WorkerCrashedError} and the worker is restarted.
   */
  run<T = unknown>(module: string | URL, name: string, ...args: unknown[]): Promise<T>;
  /** Unmaps the file in its worker. Idempotent. */
  close(): Promise<void>;
}

/**
 * The PoolFile handed to users.
 *
 * @example
 * ```ts ignore
 * import { PoolFileImpl } from "./pool_file.ts";
 * const file = new PoolFileImpl(calls, worker, resolveOpen(path, {}), answer);
 * ```
 */
export class PoolFileImpl extends PoolFileRecord implements PoolFile {
  #pool: PoolCalls;
  #closed = false;

  /** The file `answer` says `worker` opened for `resolved`; its calls go through `pool`. */
  constructor(pool: PoolCalls, worker: PoolWorker, resolved: ResolvedOpen, answer: OpenAnswer) {
    super(worker, resolved, answer);
    this.#pool = pool;
  }

  /**
   * Throws when the file cannot take calls. Called after the argument checks, as MappedFile
   * does, so that a bad argument gets the same error on either transport, open or closed.
   */
  #usable(operation: string): void {
    if (this.#closed) throw new MapClosedError(operation, this.path);
    const broken = this.brokenBy();
    if (broken !== undefined) throw broken;
  }

  read(target: ArrayBufferView, position: number = 0): Promise<number> {
    return this.#transfer("read", target, position);
  }

  write(source: ArrayBufferView, position: number = 0): Promise<number> {
    return this.#transfer("write", source, position);
  }

  async readMany(
    target: ArrayBufferView,
    positions: Float64Array | readonly number[],
    length: number,
  ): Promise<number> {
    // The same order of checks as MappedFile.readMany: the target, the map, the positions.
    const bytes = asBytes(target, "readMany");
    this.#usable("read");
    const list = readManyPositions(this, bytes, positions, length);
    if (length > this.#pool.stagingBytes / 2) {
      throw new RangeError(
        `readMany: ranges of ${length} bytes do not fit the worker's staging area ` +
          `(${this.#pool.stagingBytes} bytes, half of it per range at most); use read() for each`,
      );
    }
    return await this.#pool.readMany(this, bytes, list, length);
  }

  async #transfer(kind: "read" | "write", view: ArrayBufferView, position: number) {
    const bytes = copyArguments(kind, view, position);
    this.#usable(kind);
    return await this.#pool.transfer(this, kind, bytes, position);
  }

  async flush(range: WindowRange = {}): Promise<void> {
    const window = flushArguments(this, range);
    this.#usable("flush");
    await this.#pool.request(this, "flush", window, 0);
  }

  async prefault(options: PrefaultOptions = {}): Promise<void> {
    const [position, length, write] = prefaultArguments(this, options);
    this.#usable("prefault");
    await this.#pool.request(this, "prefault", [position, length], write);
  }

  async advise(advice: Advice, range: WindowRange = {}): Promise<void> {
    const [position, length, adviceValue] = adviseArguments(this, advice, range);
    this.#usable("advise");
    await this.#pool.request(this, "advise", [position, length], adviceValue);
  }

  async run<T = unknown>(module: string | URL, name: string, ...args: unknown[]): Promise<T> {
    this.#usable("run");
    return await this.#pool.run<T>(this, moduleUrl(module), name, args);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.brokenBy() !== undefined) return;
    await this.#pool.closeFile(this);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The URL of kernel module `module`: a URL, or a path resolved against the current directory. */
function moduleUrl(module: string | URL): string {
  if (module instanceof URL) return module.href;
  try {
    return new URL(module).href;
  } catch {
    return pathToFileURL(resolve(module)).href;
  }
}
