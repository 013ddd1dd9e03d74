/**
 * Asks V8 for a garbage collection when this isolate holds many maps, so that maps dropped
 * without `close()` are found (and their finalizers run at the next task) before the process's
 * 4096 slots run out. Internal.
 *
 * Why: a dropped `MappedFile` is a few hundred bytes of JavaScript heap, so V8 sees no reason to
 * collect; measured with Deno 2.9.6, a loop that opened maps without closing them and yielded to
 * the event loop every 100 opens still had about 9,000 uncollected maps at its peak, and 2,500 to
 * 3,000 of 100,000 opens failed at the cap. V8 counts an ArrayBuffer's length as external memory
 * and answers 64 MiB of it with a collection; a zero-filled buffer that is never touched costs no
 * resident memory. With one such buffer every 256 opens, the peak fell to about 1,400.
 *
 * The nudge starts only past `NUDGE_FLOOR` maps that this isolate opened and has not released;
 * when a nudge was followed by no finalization (the maps are really in use, or the program never
 * yields, so no finalizer can run), the interval doubles, so a program that keeps many maps open
 * on purpose pays almost nothing.
 *
 * @module
 */

/** Maps of this isolate opened and not yet closed or finalized. */
let liveMaps = 0;
let finalizedSinceNudge = 0;
let interval = 256;
let opensUntilNudge = 256;

const NUDGE_FLOOR = 1024;
const INTERVAL_MIN = 256;
const INTERVAL_MAX = 65536;
const NUDGE_BYTES = 64 * 2 ** 20;

/**
 * Records an attempt to open a map (`opened`: it succeeded) and nudges the collector when due.
 *
 * @example
 * ```ts
 * import { noteOpen } from "./gc_nudge.ts";
 * noteOpen(true);
 * ```
 */
export function noteOpen(opened: boolean): void {
  if (opened) liveMaps++;
  if (liveMaps < NUDGE_FLOOR) return;
  opensUntilNudge--;
  if (opensUntilNudge > 0) return;
  interval = finalizedSinceNudge > 0 ? INTERVAL_MIN : Math.min(interval * 2, INTERVAL_MAX);
  opensUntilNudge = interval;
  finalizedSinceNudge = 0;
  // Allocated and dropped at once: only its accounting matters. Where memory is short (strict
  // overcommit, a container limit) the allocation may fail: the nudge is skipped then, never
  // thrown into the open that called it (its map is already open).
  try {
    new ArrayBuffer(NUDGE_BYTES);
  } catch {
    // Nothing to undo.
  }
}

/**
 * Records that a map was released, by `close()` or (`finalized`) by its finalizer.
 *
 * @example
 * ```ts
 * import { noteOpen, noteRelease } from "./gc_nudge.ts";
 * noteOpen(true);
 * noteRelease(false);
 * ```
 */
export function noteRelease(finalized: boolean): void {
  liveMaps = Math.max(0, liveMaps - 1);
  if (finalized) finalizedSinceNudge++;
}
