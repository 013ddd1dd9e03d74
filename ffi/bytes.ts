/**
 * The byte view every copy works on. Internal.
 *
 * @module
 */

/**
 * `view` itself when it is a `Uint8Array` (no allocation on the hot path), else a `Uint8Array`
 * over the same bytes (its `byteOffset` and `byteLength` honoured).
 *
 * @example
 * ```ts
 * import { asBytes } from "./bytes.ts";
 * const words = new Uint16Array([1, 2]);
 * console.log(asBytes(words).byteLength); // 4
 * ```
 */
export function asBytes(view: ArrayBufferView): Uint8Array {
  return view instanceof Uint8Array
    ? view
    : new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}
