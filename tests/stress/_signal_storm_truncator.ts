/// <reference lib="deno.worker" />
/**
 * The Web Worker of signal_storm.ts: truncates the storm's file to `keptBytes` and extends it
 * back to `fileBytes` in a loop, so that guarded reads on the main thread keep hitting pages that
 * are gone (SIGBUS) and pages that are back. Not a script itself (stress runners skip files whose
 * name starts with `_`).
 *
 * @module
 */

/** What the main thread sends to start the worker. */
export interface TruncatorJob {
  path: string;
  fileBytes: number;
  keptBytes: number;
  /** Int32 [0] = stop flag set by the main thread, [1] = truncations done so far. */
  shared: SharedArrayBuffer;
}

self.onmessage = (event: MessageEvent<TruncatorJob>) => {
  const job = event.data;
  const flags = new Int32Array(job.shared);
  // Bounded by the stop flag, which the main thread sets when its time budget is spent.
  while (Atomics.load(flags, 0) === 0) {
    Deno.truncateSync(job.path, job.keptBytes);
    Deno.truncateSync(job.path, job.fileBytes);
    Atomics.add(flags, 1, 1);
  }
  self.postMessage("stopped");
};
