/**
 * The options of `MapPool`, and their checked and completed form. Internal, but for the
 * {@linkcode MapPoolOptions} type that `mod.ts` exports.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { Status } from "../ffi/status.ts";
import { CONSTANTS } from "../ffi/abi.ts";
import { GuardmapError } from "../ffi/errors.ts";

/** Options of {@linkcode MapPool}. */
export interface MapPoolOptions {
  /**
   * Number of worker processes; default 2. Files are spread over them round-robin, unless
   * `MapPool.open` places one with its `worker` option.
   */
  workers?: number;
  /**
   * Extra paths the workers may read or write with Deno's own APIs: whatever `run` kernels read.
   * Mapped files need no entry here (the host checks its own permissions for them before a
   * worker maps them), and neither do the kernel modules (see `PoolFile.run`).
   */
  permissions?: { read?: (string | URL)[]; write?: (string | URL)[] };
  /** Size of each worker's shared staging area in bytes, a power of two; default 4 MiB. */
  stagingBytes?: number;
  /** How long a read, write, flush, prefault or advise may take; default 30 000 ms. */
  callTimeoutMs?: number;
  /** How long `run` may take; default: no limit. */
  runTimeoutMs?: number;
  /** How long a new worker may take to start; default 10 000 ms. */
  startTimeoutMs?: number;
  /**
   * Restart policy. A worker that dies is restarted at once; a worker that dies before it
   * completed a single call counts as a failed start, and failed starts back off exponentially
   * (`backoffMs`, doubling, at most `backoffMaxMs`). After `maxFailedStarts` in a row the pool
   * gives up, like an open circuit breaker: calls then throw a GuardmapError with code
   * `"POOL_FAILED"` at once. Once `backoffMaxMs` has passed, the next call tries one start of
   * that worker again: if it works, the breaker closes (every worker's count of failed starts
   * is cleared) and that call and the ones after it run as before; if not, that call throws
   * `"POOL_FAILED"` too and the wait of `backoffMaxMs` begins again. Defaults: 5 starts, 50 ms,
   * 2000 ms.
   */
  restart?: { maxFailedStarts?: number; backoffMs?: number; backoffMaxMs?: number };
}

/** {@linkcode MapPoolOptions}, checked, with every default filled in and paths resolved. */
export type PoolSettings = Required<Omit<MapPoolOptions, "permissions" | "restart">> & {
  read: string[];
  write: string[];
  maxFailedStarts: number;
  backoffMs: number;
  backoffMaxMs: number;
};

const DEFAULT_STAGING_BYTES = 4 * 1024 * 1024;
/** The time limit passed to the library for "no limit" (about 285 years). */
const NO_TIMEOUT_MS = 2 ** 53;

/**
 * Checks `options` and fills in the defaults; throws a TypeError or RangeError naming the bad
 * option, or a GuardmapError (`ENOTSUP`) off Linux.
 *
 * @example
 * ```ts
 * import { poolSettings } from "./pool_options.ts";
 * if (Deno.build.os === "linux") console.log(poolSettings({ workers: 3 }).workers); // 3
 * ```
 */
export function poolSettings(options: MapPoolOptions): PoolSettings {
  objectOrUndefined(options, "new MapPool: options");
  objectOrUndefined(options.restart, "new MapPool: restart");
  const workers = options.workers ?? 2;
  if (!Number.isSafeInteger(workers) || workers < 1 || workers > 64) {
    throw new RangeError(`workers must be an integer from 1 to 64, got ${workers}`);
  }
  const stagingBytes = options.stagingBytes ?? DEFAULT_STAGING_BYTES;
  if (
    !Number.isSafeInteger(stagingBytes) || stagingBytes < CONSTANTS.stagingBytesMin ||
    stagingBytes > CONSTANTS.stagingBytesMax ||
    (stagingBytes & (stagingBytes - 1)) !== 0
  ) {
    throw new RangeError(
      `stagingBytes must be a power of two from 64 KiB to 256 MiB, got ${stagingBytes}`,
    );
  }
  if (Deno.build.os !== "linux") {
    throw new GuardmapError("MapPool runs on Linux only for now; use MappedFile", {
      code: "ENOTSUP",
      status: Status.not_supported,
    });
  }
  return {
    workers,
    stagingBytes,
    callTimeoutMs: timeout(options.callTimeoutMs, 30_000, "callTimeoutMs"),
    runTimeoutMs: timeout(options.runTimeoutMs, NO_TIMEOUT_MS, "runTimeoutMs"),
    startTimeoutMs: timeout(options.startTimeoutMs, 10_000, "startTimeoutMs"),
    read: pathList(options.permissions?.read),
    write: pathList(options.permissions?.write),
    maxFailedStarts: count(options.restart?.maxFailedStarts, 5, 1, "restart.maxFailedStarts"),
    backoffMs: count(options.restart?.backoffMs, 50, 0, "restart.backoffMs"),
    backoffMaxMs: count(options.restart?.backoffMaxMs, 2000, 0, "restart.backoffMaxMs"),
  };
}

/** A short description of a wrong value for an error message. */
function describe(value: unknown): string {
  return typeof value === "string"
    ? `the string ${JSON.stringify(value)}`
    : `${typeof value} ${String(value)}`;
}

/** Throws a TypeError naming `name` unless `value` is an object (or undefined). */
function objectOrUndefined(value: unknown, name: string): void {
  if (value === undefined || (typeof value === "object" && value !== null)) return;
  throw new TypeError(`${name} must be an object, got ${describe(value)}`);
}

/** A whole number of at least `min`, or `fallback` when undefined; a RangeError names `name`. */
function count(value: number | undefined, fallback: number, min: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(
      `MapPool ${name} must be a whole number of at least ${min}, got ${describe(value)}`,
    );
  }
  return value;
}

function timeout(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive whole number of milliseconds, got ${value}`);
  }
  return value;
}

function pathList(paths: (string | URL)[] | undefined): string[] {
  return (paths ?? []).map((path) => {
    const text = path instanceof URL ? fileURLToPath(path) : resolve(path);
    if (text.includes(",")) {
      throw new TypeError(`MapPool permission paths cannot contain a comma: ${text}`);
    }
    return text;
  });
}
