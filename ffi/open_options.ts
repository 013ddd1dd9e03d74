/**
 * Checking and resolving the options of `MappedFile.open` and `MapPool.open`, and turning the
 * library's open failures into errors. Internal: not exported from `mod.ts`.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { errorCodeOf, Status } from "./status.ts";
import {
  FileTooLargeError,
  GuardmapError,
  NotRegularFileError,
  type NotRegularFileKind,
} from "./errors.ts";
import type { MapMode, OpenOptions } from "./types.ts";
import { describe } from "./arguments.ts";
import { CONSTANTS, FILE_KIND, MODE, type OpenResultRecord } from "./abi.ts";

/** The library's number for each mode. */
export const MODES: Record<MapMode, number> = {
  "r": MODE.read,
  "r+": MODE.readWrite,
  "w+": MODE.create,
  "c": MODE.copyOnWrite,
};
const OFFSET_MAX = 2n ** 63n - 1n;
/** How many maps a process may have open at once. */
const MAP_LIMIT = CONSTANTS.mapCountMax;

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
  /** How `write` reaches the file: `"auto"` is resolved (see {@linkcode resolveWrites}). */
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
  checkOptions(options);
  // `undefined` only: null is not "the default" but a mistake, refused below like any other.
  const mode = options.mode === undefined ? "r" : options.mode;
  if (typeof mode !== "string" || !Object.hasOwn(MODES, mode)) {
    throw new TypeError(`options.mode must be "r", "r+", "w+" or "c", got ${describe(mode)}`);
  }
  const offset = byteCount(options.offset === undefined ? 0 : options.offset, "offset");
  const length = options.length === undefined ? undefined : byteCount(options.length, "length");
  if (length === 0n) throw new RangeError("length must be at least 1 byte");
  if (mode === "w+" && length === undefined) {
    throw new TypeError('mode "w+" creates the file and needs a length');
  }
  if (length !== undefined && offset + length > OFFSET_MAX) {
    throw new RangeError(`offset + length (${offset + length}) exceeds the largest file offset`);
  }
  if (options.salvage !== undefined && typeof options.salvage !== "boolean") {
    throw new TypeError(`options.salvage must be true or false, got ${describe(options.salvage)}`);
  }
  const writes = resolveWrites(options.writes, mode, options.salvage === true, Deno.build.os);
  checkPermissions(filePath, mode);
  return { path: filePath, mode, offset, length, writes };
}

/**
 * How `write` reaches the file, from the `writes` option (`undefined` is `"auto"`): `"auto"` is
 * `"pwrite"` where a write through the descriptor is possible (modes `"r+"` and `"w+"`, Linux,
 * no salvage) and `"map"` elsewhere; `"pwrite"` where it is not possible is a `TypeError`.
 *
 * @example
 * ```ts
 * import { resolveWrites } from "./open_options.ts";
 * console.log(resolveWrites(undefined, "r+", false, "linux")); // "pwrite"
 * console.log(resolveWrites(undefined, "c", false, "linux")); // "map"
 * console.log(resolveWrites("map", "r+", false, "linux")); // "map"
 * ```
 */
export function resolveWrites(
  writes: unknown,
  mode: MapMode,
  salvage: boolean,
  os: typeof Deno.build.os,
): "map" | "pwrite" {
  const chosen = writes === undefined ? "auto" : writes;
  if (chosen !== "auto" && chosen !== "map" && chosen !== "pwrite") {
    throw new TypeError(
      `options.writes must be "auto", "map" or "pwrite", got ${describe(writes)}`,
    );
  }
  if (chosen === "map") return "map";
  // Mode "c" must stay in the map (its writes never reach the file), a salvaged page is
  // anonymous memory that would not show bytes written to the file, and the library writes
  // through the descriptor on Linux only.
  const refusal = mode === "r"
    ? 'mode "r" cannot write'
    : mode === "c"
    ? 'mode "c" keeps its writes out of the file'
    : salvage
    ? "salvage cannot be combined with it: a salvaged page would not show what was written to " +
      "the file"
    : os !== "linux"
    ? `it is supported on Linux only, not on ${os}`
    : undefined;
  if (refusal === undefined) return "pwrite";
  if (chosen === "auto") return "map";
  throw new TypeError(
    `writes: "pwrite" needs mode "r+" or "w+" on Linux without salvage: ${refusal}; ` +
      'leave writes out (or "auto") to write through the map where the descriptor cannot be used',
  );
}

const OPTION_NAMES = ["mode", "offset", "length", "salvage", "writes"];

/** The options must be an object of known keys: a typo or a bare mode must not open "r". */
function checkOptions(options: unknown): asserts options is OpenOptions {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    const hint = typeof options === "string" && Object.hasOwn(MODES, options)
      ? `; to give the mode, write { mode: ${JSON.stringify(options)} }`
      : "";
    throw new TypeError(
      `options must be an object such as { mode: "r+" }, got ${describe(options)}${hint}`,
    );
  }
  for (const key of Object.keys(options)) {
    if (!OPTION_NAMES.includes(key)) {
      throw new TypeError(
        `options has an unknown key ${JSON.stringify(key)}; the keys are ${
          OPTION_NAMES.join(", ")
        }`,
      );
    }
  }
}

function pathString(path: string | URL): string {
  if (path instanceof URL) return fileURLToPath(path);
  if (typeof path !== "string" || path.length === 0) {
    throw new TypeError(`path must be a non-empty string or a file: URL, got ${describe(path)}`);
  }
  const nul = path.indexOf("\0");
  if (nul !== -1) {
    throw new TypeError(
      `path must not contain a NUL character (found at index ${nul} of ${
        JSON.stringify(shortPath(path))
      }); the OS would end the path there`,
    );
  }
  return path;
}

/** A path short enough for a message: long ones keep their start and end. */
export function shortPath(path: string): string {
  return path.length <= 200 ? path : `${path.slice(0, 100)}...${path.slice(-60)}`;
}

function byteCount(value: number | bigint, name: string): bigint {
  if (typeof value === "bigint") {
    if (value < 0n || value > OFFSET_MAX) {
      throw new RangeError(`${name} must be between 0 and 2^63 - 1 bytes, got ${value}`);
    }
    return value;
  }
  if (typeof value !== "number") {
    throw new TypeError(`options.${name} must be a number or a bigint, got ${describe(value)}`);
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

/** What the library's open result (`OPEN_RESULT` in ./abi.ts) says about a failed open. */
export interface OpenFailure {
  /** errno or Win32 error of the failing call; 0 when a check refused the open first. */
  osError: number;
  /** For `not_regular_file`: the kind of file, S_IFMT >> 12 as on Linux. */
  fileKind: number;
  /** For `file_too_large`/`file_size_limit`: the limit; for `no_space`: the bytes needed. */
  limitBytes: bigint;
  /** For `no_space` found by the space check: the bytes the file system could give. */
  availableBytes: bigint;
}

/**
 * The failure fields of gm_open's result record, decoded.
 *
 * @example
 * ```ts
 * import { openFailure } from "./open_options.ts";
 * import { decodeOpenResult, OPEN_RESULT } from "./abi.ts";
 * const record = decodeOpenResult(new DataView(new ArrayBuffer(OPEN_RESULT.sizeBytes)));
 * console.log(openFailure(record).osError); // 0
 * ```
 */
export function openFailure(result: OpenResultRecord): OpenFailure {
  return {
    osError: result.osError,
    fileKind: result.fileKind,
    limitBytes: result.lengthBytes,
    availableBytes: result.fileSizeBytes,
  };
}

/** The failures Deno has an error class for, as `Deno.open` reports them. */
const DENO_ERRORS: Record<number, [new (message: string) => Error, (osError: number) => string]> = {
  [Status.not_found]: [Deno.errors.NotFound, () => "no such file"],
  [Status.not_directory]: [
    Deno.errors.NotADirectory,
    () => "a component of the path is a file, not a directory (ENOTDIR); check the path",
  ],
  [Status.permission_denied]: [
    Deno.errors.PermissionDenied,
    (osError) => `the OS denied access (errno ${osError})`,
  ],
  [Status.is_directory]: [Deno.errors.IsADirectory, () => "it is a directory"],
  [Status.symlink_loop]: [
    Deno.errors.FilesystemLoop,
    () =>
      "too many levels of symbolic links (ELOOP); a link along the path points back at itself " +
      "or the chain is longer than 40: fix the links",
  ],
};

const FILE_KINDS: Record<number, NotRegularFileKind> = {
  [FILE_KIND.fifo]: "FIFO",
  [FILE_KIND.characterDevice]: "character device",
  [FILE_KIND.directory]: "directory",
  [FILE_KIND.blockDevice]: "block device",
  [FILE_KIND.symlink]: "symbolic link",
  [FILE_KIND.socket]: "socket",
};

/**
 * The error for a failed open: Deno's own classes where they fit, else GuardmapError or one of
 * its subclasses. `failure` may be a bare OS error number (a worker of an older protocol).
 */
export function openError(
  status: number,
  failure: OpenFailure | number,
  path: string,
  mode: MapMode,
  offset: bigint,
  length: bigint | undefined,
): Error {
  const found: OpenFailure = typeof failure === "number"
    ? { osError: failure, fileKind: 0, limitBytes: 0n, availableBytes: 0n }
    : failure;
  const where = `"${shortPath(path)}" (mode "${mode}", offset ${offset}` +
    `${length === undefined ? "" : `, length ${length}`})`;
  const code = errorCodeOf(status);
  const withCode = <E extends Error>(error: E): E => Object.assign(error, { code });
  const guardmap = (message: string) =>
    new GuardmapError(`guardmap: cannot map ${where}: ${message}`, {
      code,
      status,
      path,
      osError: found.osError,
    });
  const denoError = DENO_ERRORS[status];
  if (denoError !== undefined) {
    const [ErrorClass, reason] = denoError;
    return withCode(new ErrorClass(`guardmap: cannot map ${where}: ${reason(found.osError)}`));
  }
  const refused = windowRefusal(status, where, code, found.osError);
  if (refused !== undefined) return refused;
  const reason = FIXED_REASONS[status];
  if (reason !== undefined) return guardmap(reason);
  switch (status) {
    case Status.name_too_long:
      return guardmap(nameTooLong(path));
    case Status.not_regular_file: {
      const kind = FILE_KINDS[found.fileKind] ?? "special file";
      return new NotRegularFileError(
        `guardmap: cannot map ${where}: not a regular file: ${kind}; only regular files can ` +
          "be mapped (copy the data into a file first)",
        { code, status, path, osError: found.osError, kind },
      );
    }
    case Status.file_too_large:
    case Status.file_size_limit:
      return fileTooLarge(status, found, path, where, offset + (length ?? 0n));
    case Status.no_space:
      return guardmap(noSpace(found));
    default:
      return guardmap(`${code} (status ${status}, os error ${found.osError})`);
  }
}

/** Open failures whose explanation depends on nothing but the status. */
const FIXED_REASONS: Record<number, string> = {
  [Status.file_busy]:
    "the file is a running program or an active swap file (ETXTBSY) and cannot be opened " +
    'for writing; map it with mode "r" or "c", or stop what uses it',
  [Status.map_limit]:
    `this process already has ${MAP_LIMIT} maps open, the most guardmap allows at once; ` +
    "close maps you no longer need (`using` closes them at the end of a scope). A map " +
    "dropped without close() counts until the garbage collector finds it, which happens " +
    "only between tasks, not inside a synchronous loop",
};

/** The `RangeError` of an open refused for its window, or undefined for another failure. */
function windowRefusal(
  status: number,
  where: string,
  code: string,
  osError: number,
): RangeError | undefined {
  switch (status) {
    case Status.empty_window:
      return new RangeError(
        `guardmap: cannot map ${where}: the window would be empty (the file ends at the ` +
          "offset; files in /proc and /sys report a size of 0 and cannot be mapped)",
      );
    case Status.window_past_end:
      return new RangeError(
        `guardmap: cannot map ${where}: the window reaches past the end of the file; ` +
          `use a smaller length, or mode "w+" to create the file at that size`,
      );
    case Status.invalid_argument:
    case Status.overflow:
      return new RangeError(
        `guardmap: cannot map ${where}: the library refused the offset or length ` +
          `(${code}, os error ${osError})`,
      );
  }
  return undefined;
}

function nameTooLong(path: string): string {
  const encoder = new TextEncoder();
  const pathBytes = encoder.encode(path).byteLength;
  if (pathBytes >= 4096) {
    return `the path is too long (ENAMETOOLONG): ${pathBytes} bytes, and Linux allows at most ` +
      "4,095; use a shorter path (or change into a directory near the file first)";
  }
  const longest = path.split("/").reduce(
    (best, name) =>
      encoder.encode(name).byteLength > best.bytes
        ? { name, bytes: encoder.encode(name).byteLength }
        : best,
    { name: "", bytes: 0 },
  );
  return `a name in the path is too long (ENAMETOOLONG): "${shortPath(longest.name)}" is ` +
    `${longest.bytes} bytes, and most file systems allow at most 255; use a shorter name`;
}

function fileTooLarge(
  status: number,
  found: OpenFailure,
  path: string,
  where: string,
  end: bigint,
): FileTooLargeError {
  const limit = found.limitBytes === 0n ? undefined : found.limitBytes;
  const rlimit = status === Status.file_size_limit;
  const message = rlimit
    ? `the window would end at byte ${end}, past this process's file-size limit ` +
      `(RLIMIT_FSIZE, ${limit} bytes; see ulimit -f), where growing the file would kill the ` +
      "process with SIGXFSZ. Raise the limit or map a smaller window; the file was not changed"
    : `the window would end at byte ${end}, past the largest file this file system allows` +
      `${limit === undefined ? "" : ` (${limit} bytes)`} (EFBIG). Map a smaller window or use ` +
      "another file system; the file was not changed";
  return new FileTooLargeError(`guardmap: cannot map ${where}: ${message}`, {
    code: errorCodeOf(status),
    status,
    path,
    osError: found.osError,
    limitBytes: limit,
    limit: rlimit ? "process" : "file system",
  });
}

function noSpace(found: OpenFailure): string {
  if (found.osError === 0 && found.limitBytes > 0n) {
    return `not enough space on the device (ENOSPC): the window needs ${found.limitBytes} ` +
      `bytes and the file system can give ${found.availableBytes} (its free space plus the ` +
      "old file's blocks). The file was not changed; free some space or map a smaller window";
  }
  const quota = found.osError === 122;
  if (found.limitBytes === 0n) {
    return `${quota ? "the disk quota is exhausted (EDQUOT)" : "no space left on the device"}` +
      ` (os error ${found.osError}); free some space`;
  }
  return `${
    quota ? "the disk quota is exhausted (EDQUOT)" : "no space left on the device (ENOSPC)"
  } while reserving the window's ${found.limitBytes} bytes, although the space check had found room (another ` +
    "writer, a quota or the file system's own metadata took it). The file was truncated to 0 " +
    "bytes, which gave back every block the attempt took: its old content is gone. A file " +
    "this open created was removed";
}
