/**
 * The byte view every copy works on, and the check that the caller gave one. Internal.
 *
 * @module
 */

import { checkNumber, describe } from "./arguments.ts";

/** The calls that take a buffer, as named in their errors. */
export type BufferOperation = "read" | "readMany" | "write";

/**
 * `view` itself when it is a `Uint8Array` (no allocation on the hot path), else a `Uint8Array`
 * over the same bytes (its `byteOffset` and `byteLength` honoured). Anything but a typed array
 * or `DataView` is a `TypeError` naming the argument of `operation`: an `ArrayBuffer`, a plain
 * array or a string has no `byteLength` of bytes to copy in place, and treating it as empty
 * would silently copy nothing.
 *
 * @example
 * ```ts
 * import { asBytes } from "./bytes.ts";
 * const words = new Uint16Array([1, 2]);
 * console.log(asBytes(words, "read").byteLength); // 4
 * ```
 */
export function asBytes(view: ArrayBufferView, operation: BufferOperation): Uint8Array {
  if (view instanceof Uint8Array) return view;
  if (!ArrayBuffer.isView(view)) throw notAView(view, operation);
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

function notAView(value: unknown, operation: BufferOperation): TypeError {
  const name = operation === "write" ? "source" : "target";
  const given = value instanceof ArrayBuffer
    ? "an ArrayBuffer (wrap it: new Uint8Array(buffer))"
    : typeof SharedArrayBuffer !== "undefined" && value instanceof SharedArrayBuffer
    ? "a SharedArrayBuffer (wrap it: new Uint8Array(buffer))"
    : Array.isArray(value)
    ? "a plain array (copy it into a typed array: Uint8Array.from(array))"
    : describe(value);
  return new TypeError(
    `${operation}: ${name} must be a typed array (such as a Uint8Array) or a DataView, got ` +
      given,
  );
}

/**
 * Throws a `TypeError` naming the `position` of `operation` unless it is a number (FFI would
 * throw one that names no argument). Its range is checked by the library.
 *
 * @example
 * ```ts
 * import { checkPosition } from "./bytes.ts";
 * checkPosition(4096, "read"); // fine
 * ```
 */
export function checkPosition(position: number, operation: BufferOperation): void {
  checkNumber(position, operation, "position", "a number of bytes into the window");
}
