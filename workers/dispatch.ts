/**
 * The data plane of a MapPool: reads, writes, readMany, flush, prefault and advise, which the
 * worker's native loop serves, and `run` and `close`, which its JavaScript serves. A call waits
 * for its worker on the calling thread within a small budget and on Deno's blocking pool after
 * it (./call_wait.ts). Internal.
 *
 * @module
 */
import { native } from "../ffi/library.ts";
import { Status } from "../ffi/status.ts";
import { GuardmapError } from "../ffi/errors.ts";
import {
  callFailure,
  type FailureSource,
  fileSizeAt,
  readManyFailure,
  type WindowOperation,
} from "../ffi/window.ts";
import { CHANNEL_OP } from "../ffi/abi.ts";
import { budgetFor, bytesDone, stagedCopy, SYNC_BUDGET_US } from "./call_wait.ts";
import { exclusive } from "./call_queue.ts";
import { checkAnswered, control } from "./control.ts";
import type { PoolFileRecord, PoolWorker } from "./pool_worker.ts";
import { type FailureAnswer, Op, readPayload, type RunRequest } from "./protocol.ts";
import type { Supervisor } from "./supervisor.ts";

/** The operations a worker's native loop serves without a transfer of bytes. */
const REQUEST_OPS = {
  flush: CHANNEL_OP.flush,
  prefault: CHANNEL_OP.prefault,
  advise: CHANNEL_OP.advise,
} as const;

/**
 * The calls a `PoolFile` makes, each queued on its worker ({@linkcode exclusive}).
 *
 * @example
 * ```ts ignore
 * import { PoolCalls } from "./dispatch.ts";
 * const calls = new PoolCalls(supervisor);
 * await calls.transfer(file, "read", new Uint8Array(16), 0);
 * ```
 */
export class PoolCalls {
  #supervisor: Supervisor;

  /** Calls on the workers `supervisor` keeps running. */
  constructor(supervisor: Supervisor) {
    this.#supervisor = supervisor;
  }

  /** Bytes of each worker's staging area. */
  get stagingBytes(): number {
    return this.#supervisor.settings.stagingBytes;
  }

  /** Reads or writes through the worker; a worker slower than the budget is awaited off-thread. */
  transfer(
    file: PoolFileRecord,
    kind: "read" | "write",
    bytes: Uint8Array,
    position: number,
  ): Promise<number> {
    return exclusive(this.#supervisor, file.worker, kind, file.path, async () => {
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
        this.#supervisor.settings.callTimeoutMs,
        budgetFor(length),
        worker.detail,
      );
      const finished = this.#finish(worker, first, staged, null);
      const status = typeof finished === "number" ? finished : await finished;
      if (kind === "read") deliver(worker, status, staged, bytes, length);
      if (status !== Status.ok) throw this.#callError(file, status, kind, position, length);
      return length;
    });
  }

  /** Many small reads through the worker: as many per request as its staging area holds. */
  readMany(
    file: PoolFileRecord,
    bytes: Uint8Array,
    list: Float64Array,
    length: number,
  ): Promise<number> {
    return exclusive(this.#supervisor, file.worker, "readMany", file.path, async () => {
      const worker = file.worker;
      const count = list.length;
      const staged = stagedCopy(bytes, false);
      const positions = stagedCopy(list, true);
      const first = native().gm_pool_read_many(
        worker.channel,
        file.handle,
        positions,
        positions.length,
        count,
        length,
        staged,
        staged.byteLength,
        this.#supervisor.settings.callTimeoutMs,
        // Each range also moves its 8-byte position through staging.
        budgetFor(count * (Float64Array.BYTES_PER_ELEMENT + length)),
        worker.detail,
      );
      const finished = this.#finish(worker, first, staged, positions);
      const status = typeof finished === "number" ? finished : await finished;
      deliver(worker, status, staged, bytes, count * length);
      if (status === Status.ok) return count * length;
      throw readManyFailure(file, failureSource(file), status, positions, length);
    });
  }

  /** flush, prefault and advise: one request the worker's native loop serves. */
  request(
    file: PoolFileRecord,
    operation: "flush" | "prefault" | "advise",
    range: [number, number],
    argument: number,
  ): Promise<void> {
    return exclusive(this.#supervisor, file.worker, operation, file.path, async () => {
      const worker = file.worker;
      const [position, length] = range;
      const first = native().gm_channel_call(
        worker.channel,
        REQUEST_OPS[operation],
        file.handle,
        position,
        length,
        argument,
        this.#supervisor.settings.callTimeoutMs,
        SYNC_BUDGET_US,
        worker.detail,
      );
      const finished = this.#finish(worker, first, null, null);
      const status = typeof finished === "number" ? finished : await finished;
      if (status !== Status.ok) throw this.#callError(file, status, operation, position, length);
    });
  }

  /** Runs kernel `name` of module `url` on `file`'s window in its worker (`PoolFile.run`). */
  run<T>(file: PoolFileRecord, url: string, name: string, args: unknown[]): Promise<T> {
    return exclusive(this.#supervisor, file.worker, "run", file.path, async () => {
      await this.#grant(file.worker, url);
      const request: RunRequest = {
        handle: file.handle,
        length: file.byteLength,
        module: url,
        name,
        args,
      };
      const worker = file.worker;
      const timeoutMs = this.#supervisor.settings.runTimeoutMs;
      const status = await control(worker, Op.run, file.handle, request, timeoutMs);
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

  /** Grants `worker` what loading kernel `url` needs, restarting it if that is new. */
  async #grant(worker: PoolWorker, url: string): Promise<void> {
    const supervisor = this.#supervisor;
    // The kernel's module graph, as far as the host may read it (KernelAccess.grantGraph).
    await supervisor.access.grantGraph(url);
    // A worker started before the latest grants lacks them: start it again with them.
    if (worker.accessVersion !== supervisor.access.version) {
      await supervisor.start(worker);
      worker.life!.inCall = true;
      await supervisor.reopen(worker);
    }
  }

  /** Unmaps `file` in its worker. */
  closeFile(file: PoolFileRecord): Promise<void> {
    return exclusive(this.#supervisor, file.worker, "close", file.path, async () => {
      file.worker.files.delete(file);
      const timeoutMs = this.#supervisor.settings.callTimeoutMs;
      await control(file.worker, Op.close, file.handle, undefined, timeoutMs);
    });
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
    if (status !== Status.pending) return checkAnswered(status);
    return native().gm_pool_resume_async(
      worker.channel,
      buffer,
      buffer?.byteLength ?? 0,
      positions,
      positions?.length ?? 0,
      this.#supervisor.settings.callTimeoutMs,
      worker.detail,
    ).then((resumed) => checkAnswered(resumed));
  }

  #callError(
    file: PoolFileRecord,
    status: number,
    operation: WindowOperation,
    position: number,
    length: number,
  ): Error {
    return callFailure(file, failureSource(file), status, operation, position, length);
  }
}

/**
 * Where the details of a failed call on `file` are: its worker's detail record, and the file's
 * size as this process sees it (the map lives in the worker).
 */
function failureSource(file: PoolFileRecord): FailureSource {
  return { detail: file.worker.detailView, fileSize: () => fileSizeAt(file.path) };
}

/**
 * After a read through a staged copy (`staged` is not `bytes`): copies what the worker delivered,
 * all `total` bytes or those done before a failure, into the caller's `bytes`.
 */
function deliver(
  worker: PoolWorker,
  status: number,
  staged: Uint8Array,
  bytes: Uint8Array,
  total: number,
): void {
  if (staged === bytes) return;
  const delivered = status === Status.ok ? total : bytesDone(worker.detailView, total);
  bytes.set(staged.subarray(0, delivered));
}
