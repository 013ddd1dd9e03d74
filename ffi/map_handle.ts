/**
 * The native side of a map held in this process, by its handle: its file's size, its salvaged
 * faults, closing it under a zero-copy view, and releasing it when the program dropped it
 * without closing. `MappedFile` uses all of it; a MapPool worker closes its maps the same way.
 * Internal.
 *
 * @module
 */
import { native } from "./library.ts";
import { Status } from "./status.ts";
import { noteRelease } from "./gc_nudge.ts";
import { FILE_SIZE_BYTES, SALVAGE_FAULTS } from "./abi.ts";
import type { SalvagedFaults } from "./types.ts";

// Reused so that asking for the size allocates nothing. `gm_file_size` writes one u64 in the
// platform's byte order, which a BigUint64Array reads as it is.
const sizeOut = new Uint8Array(FILE_SIZE_BYTES);
const sizeWords = new BigUint64Array(sizeOut.buffer);

/**
 * The status of `gm_file_size` for `handle` and, when it is ok, the size it wrote (else 0).
 *
 * @example
 * ```ts
 * import { fileSizeCall } from "./map_handle.ts";
 * import { Status } from "./status.ts";
 * console.log(fileSizeCall(0).status === Status.bad_handle); // true
 * ```
 */
export function fileSizeCall(handle: number): { status: number; sizeBytes: number } {
  const status = native().gm_file_size(handle, sizeOut);
  return { status, sizeBytes: status === Status.ok ? Number(sizeWords[0]) : 0 };
}

/**
 * The size of the file that `handle` maps, now; undefined when the library cannot tell (a
 * closed handle, a failing `fstat`).
 *
 * @example
 * ```ts
 * import { fileSizeOf } from "./map_handle.ts";
 * console.log(fileSizeOf(0)); // undefined
 * ```
 */
export function fileSizeOf(handle: number): number | undefined {
  const { status, sizeBytes } = fileSizeCall(handle);
  return status === Status.ok ? sizeBytes : undefined;
}

/**
 * The faults salvaged so far on the map `handle` of a window at file offset `windowOffset`
 * (none for a map that does not salvage).
 *
 * @example
 * ```ts
 * import { salvagedFaults } from "./map_handle.ts";
 * console.log(salvagedFaults(0, 0)); // { count: 0, fileOffset: undefined }
 * ```
 */
export function salvagedFaults(handle: number, windowOffset: number): SalvagedFaults {
  const out = new Uint8Array(SALVAGE_FAULTS.sizeBytes);
  const status = native().gm_salvage_faults(handle, out);
  const view = new DataView(out.buffer);
  const count = Number(view.getBigUint64(SALVAGE_FAULTS.count, true));
  if (status !== Status.ok || count === 0) return { count: 0, fileOffset: undefined };
  const first = Number(view.getBigUint64(SALVAGE_FAULTS.firstWindowOffset, true));
  return { count, fileOffset: windowOffset + first };
}

/**
 * Unmaps the map `handle` and closes its file, making sure no JavaScript can reach the pages
 * afterwards through `view`, its zero-copy view (if one was made). Returns the library's status
 * (`Status.busy` while another thread copies through the map: nothing was closed then).
 *
 * @example
 * ```ts
 * import { closeMap } from "./map_handle.ts";
 * import { Status } from "./status.ts";
 * console.log(closeMap(0, undefined) === Status.bad_handle); // true
 * ```
 */
export function closeMap(handle: number, view: ArrayBuffer | undefined): number {
  // A detached view was transferred (structuredClone, postMessage, transfer()): its memory now
  // belongs to another buffer, perhaps in another isolate, that close cannot reach. Its address
  // range stays mapped to zeros: reads give zeros, not a crash.
  if (view !== undefined && view.detached) return native().gm_release(handle);
  // Otherwise detach it: every typed array over it now has length 0, so no JavaScript can touch
  // the pages after they are unmapped.
  view?.transfer(0);
  return native().gm_close(handle);
}

/**
 * A zero-copy buffer over the `byteLength` bytes of the map `handle`, or undefined for a handle
 * that names no open map. Unguarded: see `MappedFile.unsafeView`.
 *
 * @example
 * ```ts
 * import { mapView } from "./map_handle.ts";
 * console.log(mapView(0, 4096)); // undefined
 * ```
 */
export function mapView(handle: number, byteLength: number): ArrayBuffer | undefined {
  const pointer = native().gm_address(handle);
  if (pointer === null) return undefined;
  return Deno.UnsafePointerView.getArrayBuffer(pointer, byteLength);
}

/** What the finalizer of a map that was never closed needs: its handle and its view, if any. */
export interface LeakedMap {
  /** The map's handle. */
  handle: number;
  /** Its zero-copy view, once one was made. */
  view: WeakRef<ArrayBuffer> | undefined;
}

// A map the program dropped without close() is released when the garbage collector finds it
// (between tasks: finalizers never run inside a synchronous loop). Without a zero-copy view it is
// unmapped. With one, the view may outlive the map: while the view's own buffer is reachable the
// map waits for it; once the buffer is gone (or was transferred, so a copy of it may live
// anywhere), the library closes the file but leaves the range mapped to zeros instead of
// unmapping it, so a late access reads zeros and cannot crash.
const leaked = new FinalizationRegistry<LeakedMap>(({ handle, view }) => {
  const buffer = view?.deref();
  if (buffer !== undefined && !buffer.detached) return leakedViews.register(buffer, handle);
  noteRelease(true);
  if (view === undefined) native().gm_close(handle);
  else native().gm_release(handle);
});
const leakedViews = new FinalizationRegistry<number>((handle) => {
  noteRelease(true);
  native().gm_release(handle);
});

/**
 * Releases the map `handle` when `owner` is collected without being closed. Returns what the
 * finalizer will look at: set its `view` when a zero-copy view is made.
 *
 * @example
 * ```ts
 * import { forgetLeak, watchLeak } from "./map_handle.ts";
 * const owner = {};
 * console.log(watchLeak(owner, 0).view); // undefined
 * forgetLeak(owner);
 * ```
 */
export function watchLeak(owner: object, handle: number): LeakedMap {
  const map: LeakedMap = { handle, view: undefined };
  leaked.register(owner, map, owner);
  return map;
}

/**
 * Stops watching `owner` (it was closed).
 *
 * @example
 * ```ts
 * import { forgetLeak } from "./map_handle.ts";
 * forgetLeak({});
 * ```
 */
export function forgetLeak(owner: object): void {
  leaked.unregister(owner);
}
