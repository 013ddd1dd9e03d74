/**
 * `MapPool`: mappings kept in supervised worker processes, so that a fault nothing can recover
 * from (user code touching a lost page through a zero-copy view, a segfault, a signal) kills a
 * worker, never the host. Bytes travel through shared memory (zig/src/channel.zig), not pipes.
 *
 * @module
 */
import { fileURLToPath, pathToFileURL } from "node:url";
import { resolve } from "node:path";

export type { MapPoolOptions } from "./pool_options.ts";
import { native } from "../ffi/library.ts";
import { Status } from "../ffi/status.ts";
import { GuardmapError, MapClosedError, MappedIOError, WorkerCrashedError } from "../ffi/errors.ts";
import { batchError, checkReadMany, splitBatchCount } from "../ffi/read_many.ts";
import { callError } from "../ffi/call_error.ts";
import { hostOf, KernelAccess } from "./kernel_access.ts";
import { Life, within, workerArgs } from "./worker_process.ts";
import { type ChannelEnd, closeChannel, createChannel, resultBytes } from "./channel.ts";
import { CHANNEL_OP, DETAIL } from "../ffi/abi.ts";
import { budgetFor, bytesDone, stagedCopy, SYNC_BUDGET_US, yieldIfDue } from "./call_wait.ts";
import { asBytes, checkPosition } from "../ffi/bytes.ts";
import { adviceNumber, prefaultRange, windowRange } from "../ffi/arguments.ts";
import { MODES, openError, type ResolvedOpen, resolveOpen } from "../ffi/open_options.ts";
import type {
  Advice,
  MapMode,
  OpenOptions,
  PrefaultOptions,
  WindowRange,
} from "../ffi/mapped_file.ts";
import { type MapPoolOptions, type PoolSettings, poolSettings } from "./pool_options.ts";
import {
  type FailureAnswer,
  Op,
  type OpenAnswer,
  type OpenRequest,
  readPayload,
  type RunRequest,
  writePayload,
} from "./protocol.ts";

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
  #core: PoolCore;

  /** Creates the pool; workers start on first use. */
  constructor(options: MapPoolOptions = {}) {
    this.#core = new PoolCore(options);
  }

  /** How many workers were restarted after dying. */
  get restarts(): number {
    return this.#core.restarts;
  }

  /** The process ids of the running workers (for monitoring and tests). */
  get pids(): number[] {
    return this.#core.pids;
  }

  /**
   * Maps a window of `path` in one of the workers. Same options and errors as
   * `MappedFile.open`; Deno's permissions for the path are checked in this process first.
   */
  open(path: string | URL, options: OpenOptions = {}): Promise<PoolFile> {
    return this.#core.open(path, options);
  }

  /** Stops every worker and unmaps everything. Idempotent. */
  close(): Promise<void> {
    return this.#core.close();
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The pool's machinery, behind the public {@linkcode MapPool}. */
class PoolCore {
  #options: PoolSettings;
  #workers: PoolWorker[];
  #next = 0;
  #restarts = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Kernel modules (and their imports) the workers were given access to. */
  #access: KernelAccess;
  /** Set while the breaker is open: the pool gave up restarting a worker. */
  #failure: GuardmapError | undefined;
  /** When the breaker opened, or its last probe failed. */
  #failedAtMs = 0;
  /** A call is trying the one start that may close the breaker. */
  #probing = false;
  /** The worker whose failed starts opened the breaker: the probe starts it. */
  #failedWorker: PoolWorker | undefined;

  constructor(options: MapPoolOptions) {
    this.#options = poolSettings(options);
    const workers = this.#options.workers;
    this.#workers = Array.from({ length: workers }, (_, index) => new PoolWorker(index));
    const root = new URL("..", import.meta.url);
    this.#access = new KernelAccess(
      [...(root.protocol === "file:" ? [fileURLToPath(root)] : []), ...this.#options.read],
      root.protocol === "file:" ? [] : [hostOf(root)],
    );
  }

  /** How many workers were restarted after dying. */
  get restarts(): number {
    return this.#restarts;
  }

  /** The process ids of the running workers (for monitoring and tests). */
  get pids(): number[] {
    return this.#workers.filter((worker) => worker.alive).map((worker) => worker.life!.pid);
  }

  /**
   * Maps a window of `path` in one of the workers. Same options and errors as
   * `MappedFile.open`; Deno's permissions for the path are checked in this process first.
   */
  async open(path: string | URL, options: OpenOptions = {}): Promise<PoolFile> {
    if (options?.salvage === true) {
      throw new TypeError(
        "salvage is for in-process maps (MappedFile.open); a MapPool worker that meets a lost " +
          "page dies and is restarted instead",
      );
    }
    const resolved = resolveOpen(path, options);
    const worker = this.#workers[this.#next++ % this.#workers.length];
    const answer = await this.#exclusive(worker, "open", resolved.path, () => {
      return this.#openOn(worker, resolved);
    });
    const file = new PoolFileImpl(this, worker, resolved, answer);
    worker.files.add(file);
    return file;
  }

  /** Stops every worker and unmaps everything. Idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= Promise.all(this.#workers.map((worker) => this.#stop(worker))).then(
      () => {},
    );
    return this.#closing;
  }

  // --- calls -----------------------------------------------------------------------------

  /** Runs `body` on `worker` after the calls queued before it, with a live worker. */
  #exclusive<T>(
    worker: PoolWorker,
    operation: string,
    path: string,
    body: () => T | Promise<T>,
  ): Promise<T> {
    const call = worker.queue.then(async () => {
      const turn = yieldIfDue();
      if (turn !== undefined) await turn;
      if (!worker.alive || this.#closed || this.#failure !== undefined) {
        await this.#ensureAlive(worker);
      }
      // `run` may replace the process during `body` (a new kernel grant): what happens after
      // it is counted on, and reported from, the process current at that moment.
      const life = worker.life!;
      life.inCall = true;
      try {
        const result = await body();
        worker.life!.completedCalls++;
        return result;
      } catch (error) {
        if (error instanceof WorkerGone) throw await this.#crashed(worker, operation, path, error);
        throw error;
      } finally {
        life.inCall = false;
        worker.life!.inCall = false;
      }
    });
    worker.queue = call.catch(() => {});
    return call;
  }

  /** Throws WorkerGone for the two statuses that mean the worker is no longer answering. */
  #check(status: number): number {
    if (status === Status.worker_gone) throw new WorkerGone(false);
    if (status === Status.timed_out) throw new WorkerGone(true);
    return status;
  }

  async #openOn(
    worker: PoolWorker,
    resolved: ResolvedOpen,
    reopenLength?: number,
  ): Promise<OpenAnswer> {
    // A restart re-opens "w+" files as "r+": "w+" would truncate the file, and everything
    // written through the old worker with it.
    const mode = reopenLength !== undefined && resolved.mode === "w+" ? "r+" : resolved.mode;
    const request: OpenRequest = {
      path: resolved.path,
      mode: MODES[mode],
      offset: resolved.offset,
      length: reopenLength === undefined ? resolved.length : BigInt(reopenLength),
      pastEnd: reopenLength !== undefined,
      writesToFile: resolved.writes === "pwrite",
    };
    const status = await this.#control(worker, Op.open, 0, request, this.#options.startTimeoutMs);
    const answer = readPayload<OpenAnswer>(worker.staging, worker.resultBytes());
    if (status !== Status.ok) {
      throw openError(
        status,
        answer.failure ?? answer.osError,
        resolved.path,
        resolved.mode,
        resolved.offset,
        resolved.length,
      );
    }
    return answer;
  }

  /** Posts a control request with a payload and waits for it off the event loop. */
  async #control(
    worker: PoolWorker,
    op: number,
    handle: number,
    payload: unknown,
    timeoutMs: number,
  ): Promise<number> {
    const lib = native();
    const length = payload === undefined ? 0 : writePayload(worker.staging, payload);
    const posted = lib.gm_channel_post(worker.channel, op, handle, 0, length, 0, 0);
    if (posted !== Status.ok) throw new WorkerGone(false);
    return this.#check(await lib.gm_channel_wait_async(worker.channel, timeoutMs, worker.detail));
  }

  /**
   * Finishes a call that returned `pending` (its worker did not answer within the budget) on
   * Deno's blocking pool, so the event loop runs while the worker works, or hangs. Any other
   * status is checked at once: the fast path adds no promise.
   */
  #finish(
    worker: PoolWorker,
    status: number,
    buffer: Uint8Array | null,
    positions: Float64Array | null,
  ): number | Promise<number> {
    if (status !== Status.pending) return this.#check(status);
    return native().gm_pool_resume_async(
      worker.channel,
      buffer,
      buffer?.byteLength ?? 0,
      positions,
      positions?.length ?? 0,
      this.#options.callTimeoutMs,
      worker.detail,
    ).then((resumed) => this.#check(resumed));
  }

  /** Reads or writes through the worker; a worker slower than the budget is awaited off-thread. */
  transfer(
    file: PoolFileImpl,
    kind: "read" | "write",
    bytes: Uint8Array,
    position: number,
  ): Promise<number> {
    return this.#exclusive(file.worker, kind, file.path, async () => {
      const lib = native();
      const worker = file.worker;
      const length = bytes.byteLength;
      const staged = stagedCopy(bytes, kind === "write");
      const call = kind === "read" ? lib.gm_pool_read : lib.gm_pool_write;
      const first = call(
        worker.channel,
        file.handle,
        position,
        staged,
        length,
        this.#options.callTimeoutMs,
        budgetFor(length),
        worker.detail,
      );
      const finished = this.#finish(worker, first, staged, null);
      const status = typeof finished === "number" ? finished : await finished;
      if (kind === "read" && staged !== bytes) {
        const delivered = status === Status.ok ? length : bytesDone(worker.detailView, length);
        bytes.set(staged.subarray(0, delivered));
      }
      if (status !== Status.ok) throw this.#callError(file, status, kind, position, length);
      return length;
    });
  }

  /** Bytes of each worker's staging area. */
  get stagingBytes(): number {
    return this.#options.stagingBytes;
  }

  /** Many small reads through the worker: as many per request as its staging area holds. */
  readMany(
    file: PoolFileImpl,
    bytes: Uint8Array,
    list: Float64Array,
    length: number,
  ): Promise<number> {
    return this.#exclusive(file.worker, "readMany", file.path, async () => {
      const worker = file.worker;
      const count = list.length;
      const staged = stagedCopy(bytes, false);
      const positions = stagedCopy(list, true);
      const first = native().gm_pool_read_many(
        worker.channel,
        file.handle,
        positions,
        count,
        length,
        staged,
        staged.byteLength,
        this.#options.callTimeoutMs,
        // Each range also moves its 8-byte position through staging.
        budgetFor(count * (8 + length)),
        worker.detail,
      );
      const finished = this.#finish(worker, first, staged, positions);
      const status = typeof finished === "number" ? finished : await finished;
      if (staged !== bytes) {
        const total = count * length;
        bytes.set(
          staged.subarray(0, status === Status.ok ? total : bytesDone(worker.detailView, total)),
        );
      }
      if (status === Status.ok) return count * length;
      const index = splitBatchCount(worker.detailView, length, count);
      const error = this.#callError(file, status, "read", positions[index], length);
      throw error instanceof MappedIOError ? batchError(error, index, count, length) : error;
    });
  }

  /** flush, prefault and advise: one request the worker's native loop serves. */
  request(
    file: PoolFileImpl,
    operation: "flush" | "prefault" | "advise",
    range: [number, number],
    argument: number,
  ): Promise<void> {
    const op = operation === "flush"
      ? CHANNEL_OP.flush
      : operation === "prefault"
      ? CHANNEL_OP.prefault
      : CHANNEL_OP.advise;
    return this.#exclusive(file.worker, operation, file.path, async () => {
      const worker = file.worker;
      const [position, length] = range;
      const first = native().gm_channel_call(
        worker.channel,
        op,
        file.handle,
        position,
        length,
        argument,
        this.#options.callTimeoutMs,
        SYNC_BUDGET_US,
        worker.detail,
      );
      const finished = this.#finish(worker, first, null, null);
      const status = typeof finished === "number" ? finished : await finished;
      if (status !== Status.ok) throw this.#callError(file, status, operation, position, length);
    });
  }

  run<T>(file: PoolFileImpl, module: string | URL, name: string, args: unknown[]): Promise<T> {
    const url = moduleUrl(module);
    return this.#exclusive(file.worker, "run", file.path, async () => {
      const worker = file.worker;
      // The kernel's module graph, as far as the host may read it (KernelAccess.grantGraph).
      await this.#access.grantGraph(url);
      // A worker started before the latest grants lacks them: start it again with them.
      if (worker.accessVersion !== this.#access.version) {
        await this.#start(worker);
        worker.life!.inCall = true;
        await this.#reopen(worker);
      }
      const request: RunRequest = {
        handle: file.handle,
        length: file.byteLength,
        module: url,
        name,
        args,
      };
      const status = await this.#control(
        worker,
        Op.run,
        file.handle,
        request,
        this.#options.runTimeoutMs,
      );
      if (status === Status.ok) return readPayload<T>(worker.staging, worker.resultBytes());
      const failure: FailureAnswer = worker.resultBytes() > 0
        ? readPayload<FailureAnswer>(worker.staging, worker.resultBytes())
        : { message: `status ${status}` };
      throw new GuardmapError(`run ${name} from ${url} on "${file.path}": ${failure.message}`, {
        code: status === Status.not_found ? "KERNEL_NOT_FOUND" : "RESULT_TOO_LARGE",
        status,
        path: file.path,
      });
    });
  }

  closeFile(file: PoolFileImpl): Promise<void> {
    return this.#exclusive(file.worker, "close", file.path, async () => {
      file.worker.files.delete(file);
      await this.#control(
        file.worker,
        Op.close,
        file.handle,
        undefined,
        this.#options.callTimeoutMs,
      );
    });
  }

  #callError(
    file: PoolFileImpl,
    status: number,
    operation: "read" | "write" | "flush" | "prefault" | "advise",
    position: number,
    length: number,
  ): Error {
    return callError(status, {
      operation,
      position,
      length,
      path: file.path,
      mode: file.mode,
      windowOffset: file.offset,
      windowLength: file.byteLength,
      detail: file.worker.detailView,
      fileSize: () => {
        try {
          return Deno.statSync(file.path).size;
        } catch {
          return undefined;
        }
      },
    });
  }

  // --- supervision -----------------------------------------------------------------------

  async #ensureAlive(worker: PoolWorker): Promise<void> {
    if (this.#closed) {
      throw new GuardmapError("the MapPool is closed; create a new one", {
        code: "POOL_CLOSED",
        status: Status.bad_handle,
      });
    }
    if (this.#failure !== undefined) return await this.#probe(worker);
    if (worker.alive) return;
    worker.starting ??= this.#startWithBackoff(worker).finally(() => {
      worker.starting = undefined;
    });
    await worker.starting;
  }

  /**
   * The open breaker: calls fail at once with the POOL_FAILED error, except that once
   * `backoffMaxMs` has passed since the pool gave up (or since the last probe failed), one call
   * starts the worker that failed once more, whichever worker the call is for. If that start
   * works, the breaker closes and the pool works as before; if not, the call fails and the wait
   * begins again.
   */
  async #probe(worker: PoolWorker): Promise<void> {
    const failed = this.#failedWorker!;
    if (this.#probing || performance.now() - this.#failedAtMs < this.#options.backoffMaxMs) {
      throw this.#failure;
    }
    this.#probing = true;
    try {
      await this.#start(failed);
      await this.#reopen(failed);
      this.#restarts++;
    } catch (error) {
      failed.lastStartError = error instanceof Error ? error.message : String(error);
      await this.#reap(failed);
      this.#failedAtMs = performance.now();
      this.#failure = poolFailed(failed, this.#options.backoffMaxMs, "and one more start failed");
      throw this.#failure;
    } finally {
      this.#probing = false;
    }
    for (const each of this.#workers) each.failedStarts = 0;
    this.#failure = undefined;
    this.#failedWorker = undefined;
    await this.#ensureAlive(worker);
  }

  async #startWithBackoff(worker: PoolWorker): Promise<void> {
    const restart = worker.generation > 0;
    // Bounded: at most maxFailedStarts attempts, then the pool's breaker opens (see #probe).
    while (true) {
      if (worker.failedStarts >= this.#options.maxFailedStarts) {
        this.#failure = poolFailed(worker, this.#options.backoffMaxMs, "");
        this.#failedWorker = worker;
        this.#failedAtMs = performance.now();
        throw this.#failure;
      }
      if (worker.failedStarts > 0) {
        const delay = Math.min(
          this.#options.backoffMaxMs,
          this.#options.backoffMs * 2 ** (worker.failedStarts - 1),
        );
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
      try {
        await this.#start(worker);
        await this.#reopen(worker);
        if (restart) this.#restarts++;
        return;
      } catch (error) {
        worker.failedStarts++;
        worker.lastStartError = error instanceof Error ? error.message : String(error);
        await this.#reap(worker);
      }
    }
  }

  async #start(worker: PoolWorker): Promise<void> {
    const lib = native();
    // The previous process's channel (mapping and pidfd) goes before a new one is made.
    await this.#reap(worker);
    worker.generation++;
    const created = createChannel(this.#options.stagingBytes, `worker ${worker.index}`);
    worker.attachChannel(created.end);
    const channelPath = created.path;
    try {
      worker.accessVersion = this.#access.version;
      worker.spawn(workerArgs(this.#options, this.#access, channelPath));
      if (lib.gm_channel_watch(worker.channel, worker.life!.pid) !== Status.ok) {
        throw new Error(`worker process ${worker.life!.pid} exited at once`);
      }
      const status = await this.#control(
        worker,
        Op.ping,
        0,
        undefined,
        this.#options.startTimeoutMs,
      );
      if (status !== Status.ok) {
        throw new Error(`the worker answered its first request with ${status}`);
      }
    } catch (error) {
      const detail = error instanceof WorkerGone
        ? (error.timedOut ? "did not answer in time" : "exited")
        : (error instanceof Error ? error.message : String(error));
      throw new Error(
        `worker ${worker.index} failed to start: ${detail}. ${
          worker.life?.stderrTail.trim() ?? ""
        }`,
      );
    }
    const life = worker.life!;
    life.alive = true;
    life.exited.then(() => this.#onExit(worker, life));
  }

  /** Re-opens the files a restarted worker had, with the same path, mode and window. */
  async #reopen(worker: PoolWorker): Promise<void> {
    for (const file of worker.files) {
      try {
        // The same window as before, even if the file shrank meanwhile: the guard reports
        // what lies past the end, exactly as it did before the restart.
        file.reopened(await this.#openOn(worker, file.resolved, file.byteLength));
      } catch (error) {
        if (error instanceof WorkerGone) throw error;
        // The file cannot be opened again (deleted, say): calls on it will say so.
        file.broken(error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  #onExit(worker: PoolWorker, life: Life): void {
    life.alive = false;
    if (worker.life !== life) return; // An older process: already replaced.
    // A worker that died in a call was killed by that call (a crashing kernel, a kill): it had
    // started fine. One that died idle before completing any call counts as a failed start.
    if (life.inCall || life.completedCalls > 0) worker.failedStarts = 0;
    else worker.failedStarts++;
    if (this.#closed || this.#failure !== undefined) return;
    // Start the replacement now rather than on the next call (failures surface on that call),
    // but behind the calls already queued: a call still waiting on the old channel must see
    // the worker gone before the restart closes that channel.
    const restart = worker.queue.then(() => this.#ensureAlive(worker));
    worker.queue = restart.catch(() => {});
  }

  /** The error for a call whose worker died or stopped answering. */
  async #crashed(
    worker: PoolWorker,
    operation: string,
    path: string,
    gone: WorkerGone,
  ): Promise<WorkerCrashedError> {
    // The process the call was waiting on when it failed, which `run` may have started itself.
    const life = worker.life!;
    // Dead (or about to be killed) as of now, whenever Deno gets round to its exit status.
    life.alive = false;
    if (gone.timedOut) life.kill();
    const status = await life.exitedWithin(2000);
    return new WorkerCrashedError({
      operation,
      path,
      signal: status?.signal ?? null,
      exitCode: status?.code ?? null,
      reason: gone.timedOut ? "timed_out" : "crashed",
      stderr: life.stderrTail,
    });
  }

  async #reap(worker: PoolWorker): Promise<void> {
    const life = worker.life;
    if (life !== undefined) {
      life.kill();
      await life.exitedWithin(5000);
    }
    await worker.closeChannel();
  }

  async #stop(worker: PoolWorker): Promise<void> {
    // Let running calls finish for a moment; a worker still busy after that is killed, and its
    // call rejects with WorkerCrashedError.
    await within(worker.queue, 1000);
    await worker.starting?.catch(() => {});
    if (worker.alive) {
      try {
        await this.#control(worker, Op.exit, 0, undefined, 1000);
      } catch {
        // Already gone, or not answering: killed below.
      }
    }
    for (const file of worker.files) file.broken(new MapClosedError("use", file.path));
    worker.files.clear();
    await this.#reap(worker);
  }
}

/** Thrown inside a call when the worker died or timed out; turned into WorkerCrashedError. */
class WorkerGone extends Error {
  constructor(readonly timedOut: boolean) {
    super(timedOut ? "worker timed out" : "worker gone");
  }
}

/** One worker slot: the current process, its channel, and the calls queued for it. */
class PoolWorker {
  readonly index: number;
  generation = 0;
  channel = 0;
  staging: Uint8Array = new Uint8Array(0);
  #header: DataView = new DataView(new ArrayBuffer(0));
  detail: Uint8Array = new Uint8Array(DETAIL.sizeBytes);
  detailView: DataView = new DataView(this.detail.buffer);
  files: Set<PoolFileImpl> = new Set();
  queue: Promise<unknown> = Promise.resolve();
  starting: Promise<void> | undefined;
  failedStarts = 0;
  lastStartError = "";
  /** The kernel grants (`KernelAccess.version`) this worker's process was started with. */
  accessVersion = 0;
  /** The current process; undefined before the first start. */
  life: Life | undefined;

  constructor(index: number) {
    this.index = index;
  }

  get alive(): boolean {
    return this.life?.alive ?? false;
  }

  attachChannel(end: ChannelEnd): void {
    this.channel = end.channel;
    this.#header = end.header;
    this.staging = end.staging;
  }

  resultBytes(): number {
    return resultBytes(this.#header);
  }

  spawn(args: string[]): void {
    this.life = new Life(args);
  }

  async closeChannel(): Promise<void> {
    if (this.channel === 0) return;
    await closeChannel(this.channel);
    this.channel = 0;
    this.staging = new Uint8Array(0);
  }
}

/** The PoolFile handed to users. */
class PoolFileImpl implements PoolFile {
  readonly path: string;
  readonly mode: MapMode;
  readonly offset: number;
  readonly byteLength: number;
  readonly resolved: ResolvedOpen;
  readonly worker: PoolWorker;
  handle: number;
  #pool: PoolCore;
  #closed = false;
  #broken: Error | undefined;

  constructor(pool: PoolCore, worker: PoolWorker, resolved: ResolvedOpen, answer: OpenAnswer) {
    this.#pool = pool;
    this.worker = worker;
    this.resolved = resolved;
    this.path = resolved.path;
    this.mode = resolved.mode;
    this.offset = Number(resolved.offset);
    this.byteLength = answer.length;
    this.handle = answer.handle;
  }

  reopened(answer: OpenAnswer): void {
    this.handle = answer.handle;
  }

  broken(error: Error): void {
    this.#broken = error;
  }

  #usable(operation: string): void {
    if (this.#closed) throw new MapClosedError(operation, this.path);
    if (this.#broken !== undefined) throw this.#broken;
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
    this.#usable("read");
    const bytes = asBytes(target, "readMany");
    const list = checkReadMany(bytes, positions, length, this.byteLength, this.path);
    if (length > this.#pool.stagingBytes / 2) {
      throw new RangeError(
        `readMany: ranges of ${length} bytes do not fit the worker's staging area ` +
          `(${this.#pool.stagingBytes} bytes, half of it per range at most); use read() for each`,
      );
    }
    return await this.#pool.readMany(this, bytes, list, length);
  }

  async #transfer(kind: "read" | "write", view: ArrayBufferView, position: number) {
    this.#usable(kind);
    const bytes = asBytes(view, kind);
    checkPosition(position, kind);
    return await this.#pool.transfer(this, kind, bytes, position);
  }

  async flush(range: WindowRange = {}): Promise<void> {
    this.#usable("flush");
    await this.#pool.request(this, "flush", windowRange("flush", range, this.byteLength), 0);
  }

  async prefault(options: PrefaultOptions = {}): Promise<void> {
    this.#usable("prefault");
    const [position, length, write] = prefaultRange(options, this.byteLength);
    await this.#pool.request(this, "prefault", [position, length], write);
  }

  async advise(advice: Advice, range: WindowRange = {}): Promise<void> {
    this.#usable("advise");
    const adviceValue = adviceNumber(advice);
    await this.#pool.request(
      this,
      "advise",
      windowRange("advise", range, this.byteLength),
      adviceValue,
    );
  }

  async run<T = unknown>(module: string | URL, name: string, ...args: unknown[]): Promise<T> {
    this.#usable("run");
    return await this.#pool.run<T>(this, module, name, args);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#broken !== undefined) return;
    await this.#pool.closeFile(this);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The error calls get while the pool's breaker is open. */
function poolFailed(worker: PoolWorker, backoffMaxMs: number, more: string): GuardmapError {
  return new GuardmapError(
    `MapPool gave up: worker ${worker.index} failed to start or died before completing a call ` +
      `${worker.failedStarts} times in a row${more === "" ? "" : `, ${more}`}. Last error: ` +
      `${worker.lastStartError}. A call ${backoffMaxMs} ms from now tries one start again.`,
    { code: "POOL_FAILED", status: Status.unexpected },
  );
}

function moduleUrl(module: string | URL): string {
  if (module instanceof URL) return module.href;
  try {
    return new URL(module).href;
  } catch {
    return pathToFileURL(resolve(module)).href;
  }
}
