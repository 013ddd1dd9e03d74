/**
 * The state of guardmap's fault handler, and a way to put it back on top.
 *
 * @module
 */
import { native } from "./library.ts";

/**
 * Who receives SIGBUS/SIGSEGV first:
 * - `"ours"`: guardmap's handler;
 * - `"chained"`: a handler installed later (for example by `Deno.addSignalListener`) that is
 *   expected to forward to guardmap's;
 * - `"default"`: the default action (a guarded fault would kill the process);
 * - `"not_installed"`: the library is loaded but has not installed its handler.
 */
export type FaultGuardState = "not_installed" | "ours" | "chained" | "default";

const STATES: FaultGuardState[] = ["not_installed", "ours", "chained", "default"];

/**
 * Puts guardmap's fault handler back in front of any handler installed after it, and returns
 * the state it is in then (`"ours"` on success).
 *
 * `MappedFile.open` does this on every open. Call it yourself only if your program removes a
 * SIGBUS or SIGSEGV listener (`Deno.removeSignalListener`) while maps opened earlier are still
 * in use: Deno 2.9 then leaves a handler in place that no longer forwards faults, and a guarded
 * copy would die of SIGBUS instead of throwing `MappedIOError`.
 *
 * @example
 * ```ts
 * import { rearmFaultGuard } from "../mod.ts";
 * const listener = () => {};
 * Deno.addSignalListener("SIGBUS", listener);
 * Deno.removeSignalListener("SIGBUS", listener);
 * console.log(rearmFaultGuard()); // "ours"
 * ```
 */
export function rearmFaultGuard(): FaultGuardState {
  const lib = native();
  const status = lib.gm_init();
  if (status !== 0) return "not_installed";
  return STATES[lib.gm_guard_disposition()] ?? "not_installed";
}
