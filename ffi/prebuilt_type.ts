/**
 * The shape of what every generated module `ffi/prebuilt/<arch>_<os>.ts` exports. A module of
 * its own: the generated modules import it, and ./library_prebuilt.ts imports them. Internal.
 *
 * @module
 */

/** A library embedded by `tools/dev package`: the shape of every generated module's export. */
export interface Prebuilt {
  /** The Zig target it was built for, e.g. `x86_64-linux-gnu`. */
  readonly target: string;
  /** The library's file name in `zig-out`, e.g. `libguardmap.so`. */
  readonly fileName: string;
  /** The library's size in bytes, decompressed. */
  readonly byteLength: number;
  /** The library's SHA-256, lower-case hex. */
  readonly sha256: string;
  /** The library, gzip-compressed, then base64-encoded. */
  readonly gzipBase64: string;
}
