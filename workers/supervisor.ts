/**
 * The MapPool supervisor: starts each worker process (channel, spawn, watch, ping), restarts a
 * worker that died and opens its files again, backs off after failed starts and, after too many
 * in a row, gives up like an open circuit breaker until a later probe start works. Internal.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { native } from "../ffi/library.ts";
import { Status } from "../ffi/status.ts";
import { GuardmapError, MapClosedError } from "../ffi/errors.ts";
import { hostOf, KernelAccess } from "./kernel_access.ts";
import { createChannel } from "./channel.ts";
import { control, openOn, WorkerGone } from "./control.ts";
import type { PoolSettings } from "./pool_options.ts";
import { PoolWorker } from "./pool_worker.ts";
import { Op } from "./protocol.ts";
import { type Life, within, workerArgs } from "./worker_process.ts";

/**
 * Keeps a pool's workers running, from the first start to `close`.
 *
 * @example
 * ```ts ignore
 * import { Supervisor } from "./supervisor.ts";
 * const supervisor = new Supervisor(poolSettings({ workers: 1 }));
 * const worker = supervisor.next();
 * await supervisor.ensureAlive(worker);
 * await supervisor.close();
 * ```
 */
export class Supervisor {
  /** The checked options of the pool. */
  readonly settings: PoolSettings;
  /** Kernel modules (and their imports) the workers were given access to. */
  readonly access: KernelAccess;
  #workers: PoolWorker[];
  #next = 0;
  #restarts = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Set while the breaker is open: the pool gave up restarting a worker. */
  #failure: GuardmapError | undefined;
  /** When the breaker opened, or its last probe failed. */
  #failedAtMs = 0;
  /** A call is trying the one start that may close the breaker. */
  #probing = false;
  /** The worker whose failed starts opened the breaker: the probe starts it. */
  #failedWorker: PoolWorker | undefined;

  /** Empty slots for `settings.workers` processes, which start on first use. */
  constructor(settings: PoolSettings) {
    this.settings = settings;
    this.#workers = Array.from({ length: settings.workers }, (_, index) => new PoolWorker(index));
    const root = new URL("..", import.meta.url);
    this.access = new KernelAccess(
      [...(root.protocol === "file:" ? [fileURLToPath(root)] : []), ...settings.read],
      root.protocol === "file:" ? [] : [hostOf(root)],
    );
  }

  /** How many workers were restarted after dying. */
  get restarts(): number {
    return this.#restarts;
  }

  /** The process ids of the running workers. */
  get pids(): number[] {
    return this.#workers.filter((worker) => worker.alive).map((worker) => worker.life!.pid);
  }

  /** Whether a call must go through {@linkcode Supervisor.ensureAlive} before it runs. */
  mustEnsure(worker: PoolWorker): boolean {
    return !worker.alive || this.#closed || this.#failure !== undefined;
  }

  /** The worker for the next file: round-robin. */
  next(): PoolWorker {
    return this.#workers[this.#next++ % this.#workers.length];
  }

  /**
   * The worker of slot `index` (`MapPool.open`'s `worker` option); a TypeError or RangeError
   * names the option when `index` is not a whole number from 0 to `workers - 1`.
   */
  at(index: unknown): PoolWorker {
    const count = this.#workers.length;
    if (typeof index !== "number") {
      throw new TypeError(
        `MapPool.open: options.worker must be a worker index (a number from 0 to ${
          count - 1
        }), got ${typeof index === "string" ? JSON.stringify(index) : `${typeof index} ${index}`}`,
      );
    }
    if (!Number.isSafeInteger(index) || index < 0 || index >= count) {
      throw new RangeError(
        `MapPool.open: options.worker must be a whole number from 0 to ${count - 1} (the pool ` +
          `has ${count} worker${count === 1 ? "" : "s"}; see MapPoolOptions.workers), got ${index}`,
      );
    }
    return this.#workers[index];
  }

  /** Stops every worker and unmaps everything. Idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= Promise.all(this.#workers.map((worker) => this.#stop(worker))).then(
      () => {},
    );
    return this.#closing;
  }

  /**
   * Makes sure `worker` runs: starts it if it is not, with back-off after failed starts. Throws
   * POOL_CLOSED after `close`, POOL_FAILED while the breaker is open.
   */
  async ensureAlive(worker: PoolWorker): Promise<void> {
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
    if (this.#probing || performance.now() - this.#failedAtMs < this.settings.backoffMaxMs) {
      throw this.#failure;
    }
    this.#probing = true;
    try {
      await this.start(failed);
      await this.reopen(failed);
      this.#restarts++;
    } catch (error) {
      failed.lastStartError = error instanceof Error ? error.message : String(error);
      await this.#reap(failed);
      this.#failedAtMs = performance.now();
      this.#failure = poolFailed(failed, this.settings.backoffMaxMs, "and one more start failed");
      throw this.#failure;
    } finally {
      this.#probing = false;
    }
    for (const each of this.#workers) each.failedStarts = 0;
    this.#failure = undefined;
    this.#failedWorker = undefined;
    await this.ensureAlive(worker);
  }

  async #startWithBackoff(worker: PoolWorker): Promise<void> {
    const restart = worker.generation > 0;
    // Bounded: at most maxFailedStarts attempts, then the pool's breaker opens (see #probe).
    while (true) {
      if (worker.failedStarts >= this.settings.maxFailedStarts) {
        this.#failure = poolFailed(worker, this.settings.backoffMaxMs, "");
        this.#failedWorker = worker;
        this.#failedAtMs = performance.now();
        throw this.#failure;
      }
      if (worker.failedStarts > 0) {
        const delay = Math.min(
          this.settings.backoffMaxMs,
          this.settings.backoffMs * 2 ** (worker.failedStarts - 1),
        );
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
      try {
        await this.start(worker);
        await this.reopen(worker);
        if (restart) this.#restarts++;
        return;
      } catch (error) {
        worker.failedStarts++;
        worker.lastStartError = error instanceof Error ? error.message : String(error);
        await this.#reap(worker);
      }
    }
  }

  /**
   * Starts a new process in `worker`'s slot (the previous one, if any, is killed first), with
   * the kernel grants made so far. The files of the slot are not opened again: see
   * {@linkcode Supervisor.reopen}.
   */
  async start(worker: PoolWorker): Promise<void> {
    // The previous process's channel (mapping and pidfd) goes before a new one is made.
    await this.#reap(worker);
    worker.generation++;
    const created = createChannel(this.settings.stagingBytes, `worker ${worker.index}`);
    worker.attachChannel(created.end);
    try {
      worker.accessVersion = this.access.version;
      worker.spawn(workerArgs(this.settings, this.access, created.path));
      watch(worker);
      await ping(worker, this.settings.startTimeoutMs);
    } catch (error) {
      throw startFailure(worker, error);
    }
    const life = worker.life!;
    life.alive = true;
    life.exited.then(() => this.#onExit(worker, life));
  }

  /** Re-opens the files a restarted worker had, with the same path, mode and window. */
  async reopen(worker: PoolWorker): Promise<void> {
    for (const file of worker.files) {
      try {
        // The same window as before, even if the file shrank meanwhile: the guard reports
        // what lies past the end, exactly as it did before the restart.
        const timeoutMs = this.settings.startTimeoutMs;
        file.reopened(await openOn(worker, file.resolved, timeoutMs, file.byteLength));
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
    const restart = worker.queue.then(() => this.ensureAlive(worker));
    worker.queue = restart.catch(() => {});
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
        await control(worker, Op.exit, 0, undefined, 1000);
      } catch {
        // Already gone, or not answering: killed below.
      }
    }
    for (const file of worker.files) file.broken(new MapClosedError("use", file.path));
    worker.files.clear();
    await this.#reap(worker);
  }
}

/** Has the channel report the worker's exit (a pidfd), so no wait on it can hang. */
function watch(worker: PoolWorker): void {
  if (native().gm_channel_watch(worker.channel, worker.life!.pid) !== Status.ok) {
    throw new Error(`worker process ${worker.life!.pid} exited at once`);
  }
}

/** The first request of a new process: it answers once it is ready to serve. */
async function ping(worker: PoolWorker, timeoutMs: number): Promise<void> {
  const status = await control(worker, Op.ping, 0, undefined, timeoutMs);
  if (status !== Status.ok) {
    throw new Error(`the worker answered its first request with ${status}`);
  }
}

/** Why a start failed, with the tail of the process's stderr. */
function startFailure(worker: PoolWorker, error: unknown): Error {
  const detail = error instanceof WorkerGone
    ? (error.timedOut ? "did not answer in time" : "exited")
    : (error instanceof Error ? error.message : String(error));
  return new Error(
    `worker ${worker.index} failed to start: ${detail}. ${worker.life?.stderrTail.trim() ?? ""}`,
  );
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
