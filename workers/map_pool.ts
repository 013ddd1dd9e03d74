/**
 * `MapPool`: mappings kept in supervised worker processes, so that a fault nothing can recover
 * from (user code touching a lost page through a zero-copy view, a segfault, a signal) kills a
 * worker, never the host. Bytes travel through shared memory (zig/src/channel.zig), not pipes.
 *
 * The parts: ./supervisor.ts starts and restarts the workers, ./call_queue.ts runs one call at a
 * time per worker, ./dispatch.ts sends the calls, ./pool_file.ts is the file users hold,
 * ./worker_process.ts launches a worker and ./worker.ts is the worker itself.
 *
 * @module
 */
import type { OpenOptions } from "../ffi/types.ts";
import { resolveOpen } from "../ffi/open_options.ts";
import { exclusive } from "./call_queue.ts";
import { openOn } from "./control.ts";
import { PoolCalls } from "./dispatch.ts";
import { type PoolFile, PoolFileImpl } from "./pool_file.ts";
import { type MapPoolOptions, poolSettings } from "./pool_options.ts";
import { Supervisor } from "./supervisor.ts";

export type { MapPoolOptions } from "./pool_options.ts";
export type { PoolFile } from "./pool_file.ts";

/** The options of {@linkcode MapPool.open}: those of `MappedFile.open`, and `worker`. */
export type PoolOpenOptions = OpenOptions & {
  /** The index of the worker (0 to `workers - 1`) that maps the window; default round-robin. */
  worker?: number;
};

/**
 * `options` without its `worker` key, and that key's value. Anything that is not an object is
 * passed on whole, so `resolveOpen` reports it as `MappedFile.open` would.
 */
function withoutWorker(options: PoolOpenOptions): [unknown, OpenOptions] {
  if (typeof options !== "object" || options === null || !Object.hasOwn(options, "worker")) {
    return [undefined, options];
  }
  const { worker, ...rest } = options;
  return [worker, rest];
}

/**
 * A pool of supervised worker processes that hold file mappings for this process.
 *
 * A worker that dies (a signal, an uncaught exception, `Deno.exit`) is noticed at once: every
 * call running on it rejects with {@linkcode WorkerCrashedError}, a new worker starts, and the
 * files it had open are opened again (same path, mode and window), so the next call on the same
 * handle works. The host itself never maps the files.
 *
 * Workers run with `--allow-ffi`, read access to guardmap's own directory and
 * `permissions.read`, write access to `permissions.write`, and nothing else; they are killed
 * when the host exits and `close()` leaves no process, descriptor or shared-memory file behind.
 * Linux only for now.
 *
 * @example Read through a worker and sum bytes in it with a kernel
 * ```ts
 * import { MapPool } from "../mod.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array([1, 2, 3, 4]));
 * await using pool = new MapPool({ workers: 1 });
 * const file = await pool.open(path);
 * const bytes = new Uint8Array(2);
 * await file.read(bytes, 2);
 * console.log(bytes); // Uint8Array(2) [ 3, 4 ]
 * ```
 */
export class MapPool implements AsyncDisposable {
  #supervisor: Supervisor;
  #calls: PoolCalls;

  /** Creates the pool; workers start on first use. */
  constructor(options: MapPoolOptions = {}) {
    this.#supervisor = new Supervisor(poolSettings(options));
    this.#calls = new PoolCalls(this.#supervisor);
  }

  /** How many workers were restarted after dying. */
  get restarts(): number {
    return this.#supervisor.restarts;
  }

  /** The process ids of the running workers (for monitoring and tests). */
  get pids(): number[] {
    return this.#supervisor.pids;
  }

  /**
   * Maps a window of `path` in one of the workers. Same options and errors as
   * `MappedFile.open`; Deno's permissions for the path are checked in this process first.
   *
   * `worker` (an index from 0 to `workers - 1`) places the window on that worker; without it,
   * files go to the workers round-robin. Windows on different workers are served in parallel:
   * to spread one computation over the machine, open one window per worker and `run` on each
   * (a worker serves one call at a time).
   *
   * @example Sum a file's float64 values on two workers at once
   * ```ts
   * import { MapPool } from "../mod.ts";
   * const dir = await Deno.makeTempDir();
   * await Deno.writeFile(`${dir}/data.bin`, new Uint8Array(new Float64Array([1, 2, 3, 4]).buffer));
   * await Deno.writeTextFile(
   *   `${dir}/sum.ts`,
   *   "export const sum = (view: Uint8Array) => new Float64Array(view.buffer, view.byteOffset," +
   *     " view.byteLength / 8).reduce((total, value) => total + value, 0);",
   * );
   * await using pool = new MapPool({ workers: 2 });
   * const halves = await Promise.all([0, 1].map((worker) =>
   *   pool.open(`${dir}/data.bin`, { offset: worker * 16, length: 16, worker })
   * ));
   * const sums = await Promise.all(halves.map((half) => half.run<number>(`${dir}/sum.ts`, "sum")));
   * console.log(sums); // [ 3, 7 ]
   * ```
   */
  async open(path: string | URL, options: PoolOpenOptions = {}): Promise<PoolFile> {
    if (options?.salvage === true) {
      throw new TypeError(
        "salvage is for in-process maps (MappedFile.open); a MapPool worker that meets a lost " +
          "page dies and is restarted instead",
      );
    }
    const [index, mapOptions] = withoutWorker(options);
    const resolved = resolveOpen(path, mapOptions);
    const supervisor = this.#supervisor;
    const worker = index === undefined ? supervisor.next() : supervisor.at(index);
    const answer = await exclusive(supervisor, worker, "open", resolved.path, () => {
      return openOn(worker, resolved, supervisor.settings.startTimeoutMs);
    });
    const file = new PoolFileImpl(this.#calls, worker, resolved, answer);
    worker.files.add(file);
    return file;
  }

  /** Stops every worker and unmaps everything. Idempotent. */
  close(): Promise<void> {
    return this.#supervisor.close();
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
