/**
 * Call serialisation: one call at a time per worker (its channel holds one request), in the
 * order they were made, each on a live worker; a call whose worker died or went silent rejects
 * with `WorkerCrashedError`. Internal.
 *
 * @module
 */
import { WorkerCrashedError } from "../ffi/errors.ts";
import { yieldIfDue } from "./call_wait.ts";
import { WorkerGone } from "./control.ts";
import type { PoolWorker } from "./pool_worker.ts";
import type { Supervisor } from "./supervisor.ts";

/**
 * Runs `body` on `worker` after the calls queued before it, with a live worker (started by
 * `supervisor` if need be). `operation` and `path` name the call in a `WorkerCrashedError`.
 *
 * @example
 * ```ts ignore
 * import { exclusive } from "./call_queue.ts";
 * const status = await exclusive(supervisor, worker, "read", path, () => 0);
 * ```
 */
export function exclusive<T>(
  supervisor: Supervisor,
  worker: PoolWorker,
  operation: string,
  path: string,
  body: () => T | Promise<T>,
): Promise<T> {
  const call = worker.queue.then(async () => {
    const turn = yieldIfDue();
    if (turn !== undefined) await turn;
    if (supervisor.mustEnsure(worker)) await supervisor.ensureAlive(worker);
    // `run` may replace the process during `body` (a new kernel grant): what happens after
    // it is counted on, and reported from, the process current at that moment.
    const life = worker.life!;
    life.inCall = true;
    try {
      const result = await body();
      worker.life!.completedCalls++;
      return result;
    } catch (error) {
      if (error instanceof WorkerGone) throw await crashed(worker, operation, path, error);
      throw error;
    } finally {
      life.inCall = false;
      worker.life!.inCall = false;
    }
  });
  worker.queue = call.catch(() => {});
  return call;
}

/** The error for a call whose worker died or stopped answering. */
async function crashed(
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
