/**
 * The native library's stable status codes, mirrored from `zig/src/status.zig`.
 * `tests/abi_test.ts` checks that both tables agree.
 *
 * @module
 */

/**
 * Status codes returned by every libguardmap function. The numbers are part of the ABI and
 * never change meaning.
 *
 * @example Compare a raw status with a named one
 * ```ts
 * import { Status } from "./status.ts";
 * console.log(Status.io === 10); // true
 * ```
 */
export const Status: {
  readonly ok: 0;
  readonly invalid_argument: 1;
  readonly out_of_range: 2;
  readonly overflow: 3;
  readonly not_found: 4;
  readonly permission_denied: 5;
  readonly is_directory: 6;
  readonly empty_window: 7;
  readonly window_past_end: 8;
  readonly no_space: 9;
  readonly io: 10;
  readonly bad_address: 11;
  readonly read_only: 12;
  readonly no_memory: 13;
  readonly too_many_open: 14;
  readonly bad_handle: 15;
  readonly busy: 16;
  readonly not_supported: 17;
  readonly not_regular_file: 18;
  readonly handler_not_installed: 19;
  readonly worker_gone: 20;
  readonly timed_out: 21;
  readonly name_too_long: 22;
  readonly file_too_large: 23;
  readonly file_size_limit: 24;
  readonly symlink_loop: 25;
  readonly file_busy: 26;
  readonly not_directory: 27;
  readonly map_limit: 30;
  readonly pending: 35;
  readonly unexpected: 99;
} = {
  ok: 0,
  invalid_argument: 1,
  out_of_range: 2,
  overflow: 3,
  not_found: 4,
  permission_denied: 5,
  is_directory: 6,
  empty_window: 7,
  window_past_end: 8,
  no_space: 9,
  io: 10,
  bad_address: 11,
  read_only: 12,
  no_memory: 13,
  too_many_open: 14,
  bad_handle: 15,
  busy: 16,
  not_supported: 17,
  not_regular_file: 18,
  handler_not_installed: 19,
  worker_gone: 20,
  timed_out: 21,
  name_too_long: 22,
  file_too_large: 23,
  file_size_limit: 24,
  symlink_loop: 25,
  file_busy: 26,
  not_directory: 27,
  map_limit: 30,
  pending: 35,
  unexpected: 99,
};

/** The name of a status code in {@linkcode Status}, such as `"io"`. */
export type StatusName = keyof typeof Status;

/**
 * The `code` that errors carry for each status: POSIX names where one fits, descriptive names
 * where none does.
 *
 * @example
 * ```ts
 * import { Status, errorCodeOf } from "./status.ts";
 * console.log(errorCodeOf(Status.io)); // "EIO"
 * ```
 */
export function errorCodeOf(status: number): string {
  return ERROR_CODES[status] ?? `UNKNOWN_STATUS_${status}`;
}

const ERROR_CODES: Record<number, string> = {
  [Status.ok]: "OK",
  [Status.invalid_argument]: "EINVAL",
  [Status.out_of_range]: "ERANGE",
  [Status.overflow]: "EOVERFLOW",
  [Status.not_found]: "ENOENT",
  [Status.permission_denied]: "EACCES",
  [Status.is_directory]: "EISDIR",
  [Status.empty_window]: "EMPTY_WINDOW",
  [Status.window_past_end]: "WINDOW_PAST_END",
  [Status.no_space]: "ENOSPC",
  [Status.io]: "EIO",
  [Status.bad_address]: "EFAULT",
  [Status.read_only]: "READ_ONLY_MAP",
  [Status.no_memory]: "ENOMEM",
  [Status.too_many_open]: "EMFILE",
  [Status.bad_handle]: "EBADF",
  [Status.busy]: "EBUSY",
  [Status.not_supported]: "ENOTSUP",
  [Status.not_regular_file]: "NOT_REGULAR_FILE",
  [Status.handler_not_installed]: "NO_FAULT_HANDLER",
  [Status.worker_gone]: "WORKER_GONE",
  [Status.timed_out]: "ETIMEDOUT",
  [Status.name_too_long]: "ENAMETOOLONG",
  [Status.file_too_large]: "EFBIG",
  [Status.file_size_limit]: "RLIMIT_FSIZE",
  [Status.symlink_loop]: "ELOOP",
  [Status.file_busy]: "ETXTBSY",
  [Status.not_directory]: "ENOTDIR",
  [Status.map_limit]: "MAP_LIMIT",
  [Status.pending]: "PENDING",
  [Status.unexpected]: "UNEXPECTED",
};
