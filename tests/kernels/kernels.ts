/**
 * Kernels for the MapPool tests: each runs inside a worker as `name(view, ...args)`.
 *
 * @module
 */

/** Sums `count` bytes of the window from `start`. */
export function sum(view: Uint8Array, start: number, count: number): number {
  let total = 0;
  for (let i = start; i < start + count; i++) total += view[i];
  return total;
}

/** Returns a copy of a slice of the window, as a typed array (structured clone). */
export function slice(view: Uint8Array, start: number, end: number): Uint8Array {
  return view.slice(start, end);
}

/** Touches `position` of the window directly: unguarded, so a lost page kills the worker. */
export function touch(view: Uint8Array, position: number): number {
  return view[position];
}

/** Dereferences an invalid address through FFI: a segmentation fault in the worker. */
export function segfault(_view: Uint8Array): number {
  const pointer = Deno.UnsafePointer.create(16n);
  return new Deno.UnsafePointerView(pointer!).getUint8();
}

/** Throws: an exception escaping a kernel ends its worker. */
export function fail(_view: Uint8Array, message: string): never {
  throw new Error(message);
}

/** Calls Deno.exit with `code`. */
export function exit(_view: Uint8Array, code: number): never {
  Deno.exit(code);
}

/** Waits `milliseconds`, then answers (to hold a worker busy). */
export async function sleep(_view: Uint8Array, milliseconds: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, milliseconds));
  return milliseconds;
}

/** Transfers the view's buffer away (as a kernel that posts it elsewhere would): it detaches. */
export function giveAway(view: Uint8Array): number {
  const buffer = view.buffer as ArrayBuffer; // a worker's view is never shared memory
  const moved = structuredClone(buffer, { transfer: [buffer] });
  return moved.byteLength;
}
