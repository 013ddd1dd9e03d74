/**
 * The errors guardmap throws. Failures of a mapped file are {@linkcode GuardmapError}s; an I/O
 * fault while touching mapped pages is the subclass {@linkcode MappedIOError}; a FIFO, socket or
 * device is a {@linkcode NotRegularFileError}, a `"w+"` past a size limit a
 * {@linkcode FileTooLargeError}. Opening a missing file, a directory, a path through a file or
 * through a symbolic-link loop, or a path without permission throws Deno's own
 * `Deno.errors.NotFound`, `Deno.errors.IsADirectory`, `Deno.errors.NotADirectory`,
 * `Deno.errors.FilesystemLoop`, `Deno.errors.PermissionDenied` or `Deno.errors.NotCapable`, as
 * `Deno.open` does, each with a `code` such as `"ELOOP"`; bad arguments throw `TypeError` or
 * `RangeError`.
 *
 * @module
 */
import { Status } from "./status.ts";

/** Details common to every {@linkcode GuardmapError}. */
export interface GuardmapErrorOptions {
  /** A short code such as `"EIO"`, `"ENOSPC"` or `"WINDOW_PAST_END"`. */
  code: string;
  /** The native library's status number (see `Status` in `ffi/status.ts`). */
  status: number;
  /** The path of the mapped file, as given to `MappedFile.open`. */
  path?: string;
  /** The OS error number behind the failure (errno, or a Win32 error), 0 when none. */
  osError?: number;
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * A failure reported by guardmap's native library, with a stable `code`.
 *
 * @example Tell a full disk from other failures
 * ```ts
 * import { GuardmapError } from "./errors.ts";
 * const error = new GuardmapError("no space", { code: "ENOSPC", status: 9 });
 * console.log(error instanceof GuardmapError && error.code === "ENOSPC"); // true
 * ```
 */
export class GuardmapError extends Error {
  /** A short code such as `"EIO"`, `"ENOSPC"` or `"WINDOW_PAST_END"`. */
  readonly code: string;
  /** The native library's status number. */
  readonly status: number;
  /** The path of the mapped file, when the failure concerns one. */
  readonly path: string | undefined;
  /** The OS error number (errno or Win32 error), 0 when none applies. */
  readonly osError: number;

  /** Creates an error; guardmap's own code does this, users rarely need to. */
  constructor(message: string, options: GuardmapErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GuardmapError";
    this.code = options.code;
    this.status = options.status;
    this.path = options.path;
    this.osError = options.osError ?? 0;
  }
}

/** What the mapped file was doing when an I/O fault happened. */
export type MappedOperation = "read" | "write" | "flush" | "prefault" | "check";

/** Details of a {@linkcode MappedIOError}. */
export interface MappedIOErrorOptions extends GuardmapErrorOptions {
  /** What the map was doing when the fault happened. */
  operation: MappedOperation;
  /** Offset in the window of the first byte that was not transferred. */
  position: number;
  /** The same place in file coordinates: `map.offset + position`. */
  fileOffset: number;
  /** Bytes transferred before the fault. */
  bytesTransferred: number;
  /** `"truncated"` when the file now ends at or before `fileOffset`, otherwise `"io"`. */
  reason: "truncated" | "io";
  /** The file's size when the fault was examined, if it could be read. */
  fileSize?: number;
  /** The signal the kernel raised (`"SIGBUS"`, `"SIGSEGV"`), or the Windows exception. */
  signal?: string;
  /** For `MappedFile.readMany`: the index of the range the fault hit. */
  rangeIndex?: number;
}

/**
 * An I/O error on mapped memory, caught by guardmap's guarded copy instead of killing the
 * process: a file truncated under the map, a disk or network file system answering EIO, a full
 * disk. The bytes before `position` were transferred; the map stays usable.
 *
 * @example Read what is still readable after the file was truncated under the map
 * ```ts
 * import { MappedFile, MappedIOError } from "../mod.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array(65536).fill(1));
 * using map = MappedFile.open(path);
 * await Deno.truncate(path, 12288);
 * const target = new Uint8Array(65536);
 * try {
 *   map.read(target, 0);
 * } catch (error) {
 *   if (!(error instanceof MappedIOError)) throw error;
 *   console.log(error.reason, error.bytesTransferred); // "truncated" 12288
 * }
 * ```
 */
export class MappedIOError extends GuardmapError {
  /** What the map was doing: `"read"`, `"write"`, `"flush"`, `"prefault"` or `"check"`. */
  readonly operation: MappedOperation;
  /** Offset in the window of the first byte that was not transferred. */
  readonly position: number;
  /** The same place in file coordinates: `map.offset + position`. */
  readonly fileOffset: number;
  /**
   * Bytes transferred before the fault. For a truncated file this counts only bytes that are
   * still in the file; the target may also hold zeros the kernel served for the rest of the
   * page that contains the new end.
   */
  readonly bytesTransferred: number;
  /** `"truncated"` when the file now ends at or before `fileOffset`, otherwise `"io"`. */
  readonly reason: "truncated" | "io";
  /** The file's size when the fault was examined, if it could be read. */
  readonly fileSize: number | undefined;
  /** The signal the kernel raised, or the Windows exception, if any. */
  readonly signal: string | undefined;
  /**
   * For `MappedFile.readMany`: the index of the range the fault hit (`bytesTransferred` then
   * counts the ranges before it too). Undefined for every other call.
   */
  readonly rangeIndex: number | undefined;

  /** Creates an error; guardmap's own code does this, users rarely need to. */
  constructor(message: string, options: MappedIOErrorOptions) {
    super(message, options);
    this.name = "MappedIOError";
    this.operation = options.operation;
    this.position = options.position;
    this.fileOffset = options.fileOffset;
    this.bytesTransferred = options.bytesTransferred;
    this.reason = options.reason;
    this.fileSize = options.fileSize;
    this.signal = options.signal;
    this.rangeIndex = options.rangeIndex;
  }
}

/**
 * Thrown by any operation on a `MappedFile` after `close()`. Nothing was touched.
 *
 * @example
 * ```ts
 * import { MapClosedError } from "./errors.ts";
 * const error = new MapClosedError("read", "/tmp/data.bin");
 * console.log(error.code); // "ECLOSED"
 * ```
 */
export class MapClosedError extends GuardmapError {
  /** Creates the error for `operation` on the map of `path`. */
  constructor(operation: string, path: string) {
    super(
      `cannot ${operation}: the map of "${path}" is closed; open it again with MappedFile.open()`,
      { code: "ECLOSED", status: 15, path },
    );
    this.name = "MapClosedError";
  }
}

/** Details of a {@linkcode WorkerCrashedError}. */
export interface WorkerCrashedErrorOptions {
  /** The call that was running when the worker died, such as `"read"` or `"run"`. */
  operation: string;
  /** The path of the file the call was on. */
  path?: string;
  /** The signal that ended the worker (`"SIGKILL"`, `"SIGBUS"`, `"SIGSEGV"`), if any. */
  signal: Deno.Signal | null;
  /** The worker's exit code (128 + signal number when a signal ended it). */
  exitCode: number | null;
  /** Why: the worker died, or it did not answer in time and was killed. */
  reason: "crashed" | "timed_out";
  /** The last lines the worker wrote to stderr (an uncaught exception's message, say). */
  stderr: string;
}

/**
 * A `MapPool` worker process died (or stopped answering and was killed) while running a call.
 * The host is unaffected; the pool has restarted the worker and re-opened its files, so the
 * next call on the same handle works.
 *
 * @example
 * ```ts
 * import { WorkerCrashedError } from "./errors.ts";
 * const error = new WorkerCrashedError({
 *   operation: "read", signal: "SIGKILL", exitCode: 137, reason: "crashed", stderr: "",
 * });
 * console.log(error.code, error.signal); // "WORKER_CRASHED" "SIGKILL"
 * ```
 */
export class WorkerCrashedError extends GuardmapError {
  /** The call that was running when the worker died. */
  readonly operation: string;
  /** The signal that ended the worker, if any. */
  readonly signal: Deno.Signal | null;
  /** The worker's exit code. */
  readonly exitCode: number | null;
  /** `"crashed"`, or `"timed_out"` when the pool killed a worker that stopped answering. */
  readonly reason: "crashed" | "timed_out";
  /** The last lines the worker wrote to stderr. */
  readonly stderr: string;

  /** Creates the error; guardmap's own code does this, users rarely need to. */
  constructor(options: WorkerCrashedErrorOptions) {
    const how = options.reason === "timed_out"
      ? "stopped answering and was killed"
      : options.signal
      ? `was killed by ${options.signal}`
      : `exited with code ${options.exitCode}`;
    const where = options.path === undefined ? "" : ` on "${options.path}"`;
    const tail = options.stderr.trim() === "" ? "" : `\nworker stderr:\n${options.stderr.trim()}`;
    super(
      `the MapPool worker running ${options.operation}${where} ${how}; the pool restarted it ` +
        `and the next call will run on the new worker${tail}`,
      { code: "WORKER_CRASHED", status: Status.worker_gone, path: options.path },
    );
    this.name = "WorkerCrashedError";
    this.operation = options.operation;
    this.signal = options.signal;
    this.exitCode = options.exitCode;
    this.reason = options.reason;
    this.stderr = options.stderr;
  }
}

/** What a path names when it is not a regular file. */
export type NotRegularFileKind =
  | "FIFO"
  | "character device"
  | "block device"
  | "directory"
  | "symbolic link"
  | "socket"
  | "special file";

/** Details of a {@linkcode NotRegularFileError}. */
export interface NotRegularFileErrorOptions extends GuardmapErrorOptions {
  /** What the path names. */
  kind: NotRegularFileKind;
}

/**
 * The path names something other than a regular file: a FIFO, a socket, a device. Only regular
 * files can be mapped; guardmap looks at the kind before opening, so a FIFO never makes an open
 * wait for a writer, and a device's driver is never asked to open. Block devices are refused
 * too: their size is not a file size and truncating them means nothing. `code` is
 * `"NOT_REGULAR_FILE"`.
 *
 * @example
 * ```ts
 * import { MappedFile, NotRegularFileError } from "../mod.ts";
 * try {
 *   MappedFile.open("/dev/null");
 * } catch (error) {
 *   if (error instanceof NotRegularFileError) console.log(error.kind); // "character device"
 * }
 * ```
 */
export class NotRegularFileError extends GuardmapError {
  /** What the path names. */
  readonly kind: NotRegularFileKind;

  /** Creates the error; guardmap's own code does this, users rarely need to. */
  constructor(message: string, options: NotRegularFileErrorOptions) {
    super(message, options);
    this.name = "NotRegularFileError";
    this.kind = options.kind;
  }
}

/** Details of a {@linkcode FileTooLargeError}. */
export interface FileTooLargeErrorOptions extends GuardmapErrorOptions {
  /** The largest size allowed in bytes, when it is known. */
  limitBytes: bigint | undefined;
  /** Whose limit: the file system's largest file, or the process's RLIMIT_FSIZE. */
  limit: "file system" | "process";
}

/**
 * Mode `"w+"` asked for a file larger than allowed: past the file system's largest file
 * (`code` `"EFBIG"`) or past the process's file-size limit (`code` `"RLIMIT_FSIZE"`, `ulimit -f`),
 * where growing the file would kill the process with SIGXFSZ. Found before the file is
 * touched: the file keeps its content and size.
 *
 * @example
 * ```ts
 * import { FileTooLargeError } from "../mod.ts";
 * const error = new FileTooLargeError("too large", {
 *   code: "EFBIG", status: 23, limitBytes: 2n ** 44n, limit: "file system",
 * });
 * console.log(error.limitBytes); // 17592186044416n
 * ```
 */
export class FileTooLargeError extends GuardmapError {
  /** The largest size allowed in bytes, when it is known. */
  readonly limitBytes: bigint | undefined;
  /** Whose limit: `"file system"` (EFBIG) or `"process"` (RLIMIT_FSIZE). */
  readonly limit: "file system" | "process";

  /** Creates the error; guardmap's own code does this, users rarely need to. */
  constructor(message: string, options: FileTooLargeErrorOptions) {
    super(message, options);
    this.name = "FileTooLargeError";
    this.limitBytes = options.limitBytes;
    this.limit = options.limit;
  }
}
