/**
 * Control requests from the host to a worker (`Op` of ./protocol.ts): posting one and waiting
 * for its answer, and the open request, which both a new file and a restarted worker send.
 * Internal.
 *
 * @module
 */
import { native } from "../ffi/library.ts";
import { Status } from "../ffi/status.ts";
import { MODES, openError, type ResolvedOpen } from "../ffi/open_options.ts";
import { Op, type OpenAnswer, type OpenRequest, readPayload, writePayload } from "./protocol.ts";
import type { PoolWorker } from "./pool_worker.ts";

/** Thrown inside a call when the worker died or timed out; turned into WorkerCrashedError. */
export class WorkerGone extends Error {
  /** Whether the worker was still running but did not answer in time. */
  readonly timedOut: boolean;

  /** A worker gone (`timedOut` false) or silent past its time limit (true). */
  constructor(timedOut: boolean) {
    super(timedOut ? "worker timed out" : "worker gone");
    this.timedOut = timedOut;
  }
}

/**
 * `status`, unless it is one of the two that mean the worker is no longer answering: then
 * throws {@linkcode WorkerGone}.
 *
 * @example
 * ```ts
 * import { checkAnswered } from "./control.ts";
 * console.log(checkAnswered(0)); // 0
 * ```
 */
export function checkAnswered(status: number): number {
  if (status === Status.worker_gone) throw new WorkerGone(false);
  if (status === Status.timed_out) throw new WorkerGone(true);
  return status;
}

/**
 * Posts control request `op` for map `handle` with `payload` (in staging) to `worker` and waits
 * for it off the event loop, at most `timeoutMs`. Returns the worker's status.
 *
 * @example
 * ```ts ignore
 * import { control } from "./control.ts";
 * import { Op } from "./protocol.ts";
 * const status = await control(worker, Op.ping, 0, undefined, 1000);
 * ```
 */
export async function control(
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
  return checkAnswered(await lib.gm_channel_wait_async(worker.channel, timeoutMs, worker.detail));
}

/**
 * Opens `resolved` in `worker`, or opens it again after a restart with the window length it had
 * (`reopenLength`). Throws the error `MappedFile.open` would throw.
 *
 * @example
 * ```ts ignore
 * import { openOn } from "./control.ts";
 * const answer = await openOn(worker, resolveOpen(path, {}), 10_000);
 * ```
 */
export async function openOn(
  worker: PoolWorker,
  resolved: ResolvedOpen,
  timeoutMs: number,
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
  const status = await control(worker, Op.open, 0, request, timeoutMs);
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
