/**
 * Checking and resolving the options of `MappedFile.open` and `MapPool.open`, and turning the
 * library's open failures into errors. Internal: not exported from `mod.ts`.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { errorCodeOf, Status } from "./status.ts";
import { GuardmapError } from "./errors.ts";
import type { MapMode, OpenOptions } from "./mapped_file.ts";

/** The library's number for each mode. */
export const MODES: Record<MapMode, number> = { "r": 0, "r+": 1, "w+": 2, "c": 3 };
const OFFSET_MAX = 2n ** 63n - 1n;
/** How many maps a process may have open at once: `slot_count_max` in zig/src/handles.zig. */
const MAP_LIMIT = 4096;

/** Open options, checked: a string path, a known mode, 64-bit offset and optional length. */
export interface ResolvedOpen {
  /** The path as a string. */
  path: string;
  /** The mode. */
  mode: MapMode;
  /** The file offset of the window. */
  offset: bigint;
  /** The window length, or undefined for "to the end of the file". */
  length: bigint | undefined;
  /** How `write` reaches the file. */
  writes: "map" | "pwrite";
}

/**
 * Checks the arguments of an open (throwing `TypeError`/`RangeError`) and Deno's permissions
 * for the path (throwing `Deno.errors.NotCapable`).
 *
 * @example
 * ```ts
 * import { resolveOpen } from "./open_options.ts";
 * const path = await Deno.makeTempFile();
 * console.log(resolveOpen(path, { offset: 10 }).offset); // 10n
 * ```
 */
export function resolveOpen(path: string | URL, options: OpenOptions): ResolvedOpen {
  const filePath = pathString(path);
  const mode = options.mode ?? "r";
  if (!Object.hasOwn(MODES, mode)) {
    throw new TypeError(`mode must be "r", "r+", "w+" or "c", got ${JSON.stringify(mode)}`);
  }
  const offset = byteCount(options.offset ?? 0, "offset");
  const length = options.length === undefined ? undefined : byteCount(options.length, "length");
  if (length === 0n) throw new RangeError("length must be at least 1 byte");
  if (mode === "w+" && length === undefined) {
    throw new TypeError('mode "w+" creates the file and needs a length');
  }
  if (length !== undefined && offset + length > OFFSET_MAX) {
    throw new RangeError(`offset + length (${offset + length}) exceeds the largest file offset`);
  }
  const writes = options.writes ?? "map";
  if (writes !== "map" && writes !== "pwrite") {
    throw new TypeError(`writes must be "map" or "pwrite", got ${JSON.stringify(writes)}`);
  }
  if (writes === "pwrite" && mode !== "r+" && mode !== "w+") {
    throw new TypeError(
      `writes: "pwrite" needs mode "r+" or "w+" (mode "${mode}" ` +
        `${mode === "r" ? "cannot write" : "keeps its writes out of the file"})`,
    );
  }
  if (writes === "pwrite" && options.salvage === true) {
    throw new TypeError(
      'writes: "pwrite" and salvage cannot be combined: a salvaged page would not show what ' +
        "was written to the file",
    );
  }
  checkPermissions(filePath, mode);
  return { path: filePath, mode, offset, length, writes };
}

function pathString(path: string | URL): string {
  if (path instanceof URL) return fileURLToPath(path);
  if (typeof path !== "string" || path.length === 0) {
    throw new TypeError(`path must be a non-empty string or a file: URL, got ${String(path)}`);
  }
  return path;
}

function byteCount(value: number | bigint, name: string): bigint {
  if (typeof value === "bigint") {
    if (value < 0n || value > OFFSET_MAX) {
      throw new RangeError(`${name} must be between 0 and 2^63 - 1 bytes, got ${value}`);
    }
    return value;
  }
  if (typeof value !== "number") {
    throw new TypeError(`${name} must be a number or a bigint, got ${typeof value}`);
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(
      `${name} must be a non-negative integer number of bytes (a bigint above 2^53), got ${value}`,
    );
  }
  return BigInt(value);
}

/** Throws `Deno.errors.NotCapable` unless Deno grants what `mode` needs on `path`. */
export function checkPermissions(path: string, mode: MapMode): void {
  const needed: ("read" | "write")[] = mode === "r+" || mode === "w+"
    ? ["read", "write"]
    : ["read"];
  for (const name of needed) {
    let state = Deno.permissions.querySync({ name, path }).state;
    if (state === "prompt") state = Deno.permissions.requestSync({ name, path }).state;
    if (state !== "granted") {
      throw new Deno.errors.NotCapable(
        `guardmap: mapping "${path}" in mode "${mode}" needs ${name} access; ` +
          `run with --allow-${name}=${path}`,
      );
    }
  }
}

/** The error for a failed open: Deno's own classes where they fit, else GuardmapError. */
export function openError(
  status: number,
  osError: number,
  path: string,
  mode: MapMode,
  offset: bigint,
  length: bigint | undefined,
): Error {
  const where = `"${path}" (mode "${mode}", offset ${offset}` +
    `${length === undefined ? "" : `, length ${length}`})`;
  const withCode = <E extends Error>(error: E): E =>
    Object.assign(error, { code: errorCodeOf(status) });
  switch (status) {
    case Status.not_found:
      return withCode(new Deno.errors.NotFound(`guardmap: cannot map ${where}: no such file`));
    case Status.permission_denied:
      return withCode(
        new Deno.errors.PermissionDenied(
          `guardmap: cannot map ${where}: the OS denied access (errno ${osError})`,
        ),
      );
    case Status.is_directory:
      return withCode(
        new Deno.errors.IsADirectory(`guardmap: cannot map ${where}: it is a directory`),
      );
    case Status.empty_window:
      return new RangeError(
        `guardmap: cannot map ${where}: the window would be empty (the file ends at the offset)`,
      );
    case Status.window_past_end:
      return new RangeError(
        `guardmap: cannot map ${where}: the window reaches past the end of the file; ` +
          `use a smaller length, or mode "w+" to create the file at that size`,
      );
    case Status.map_limit:
      return new GuardmapError(
        `guardmap: cannot map ${where}: this process already has ${MAP_LIMIT} maps open, the ` +
          "most guardmap allows at once; close maps you no longer need (`using` closes them at " +
          "the end of a scope). A map dropped without close() counts until the garbage " +
          "collector finds it, which happens only between tasks, not inside a synchronous loop",
        { code: errorCodeOf(status), status, path, osError },
      );
    case Status.invalid_argument:
    case Status.overflow:
      return new RangeError(`guardmap: cannot map ${where}: invalid offset or length`);
    default:
      return new GuardmapError(
        `guardmap: cannot map ${where}: ${errorCodeOf(status)} (status ${status}, ` +
          `os error ${osError})`,
        { code: errorCodeOf(status), status, path, osError },
      );
  }
}
