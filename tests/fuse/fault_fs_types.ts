/**
 * The types of the faultfs test helper (./fault_fs.ts): what can be failed or delayed, the rules,
 * the mounted file system's interface.
 *
 * @module
 */
/** Operations faultfs can fail or delay; `"other"` is every operation not named here. */
export type FaultOperation =
  | "read"
  | "write"
  | "fsync"
  | "flush"
  | "fallocate"
  | "open"
  | "getattr"
  | "truncate"
  | "other"
  | "any";

/** Which operations a rule applies to. */
export interface FaultSelector {
  /** The operations; `"read"` and `"write"` include the kernel's readahead and write-back. */
  operations: FaultOperation | readonly FaultOperation[];
  /** A file relative to the mount's root, such as `"data.bin"`; default: every file. */
  file?: string;
  /** Start of the byte range (read, write, fallocate) that a request must overlap; default 0. */
  offset?: number;
  /** Length of the byte range; default: to the end of the file. */
  length?: number;
  /** The first `after` matching operations pass untouched ("fail after N operations"). */
  after?: number;
  /** Apply the rule at most this many times; default: no limit. */
  times?: number;
}

/** A rule that answers an errno. */
export interface FailRule extends FaultSelector {
  /** An errno name such as `"EIO"` (the default) or `"ENOSPC"`, or its number. */
  errno?: string | number;
  /** Also wait this long before answering, in milliseconds (at most 10000). */
  delayMs?: number;
}

/** A rule that only delays (the operation then succeeds, unless another rule fails it). */
export interface DelayRule extends FaultSelector {
  /** How long to wait, in milliseconds (at most 10000). */
  delayMs: number;
}

/** What the daemon reports about itself. */
export interface FaultFsStatus {
  /** Whether an outage is on. */
  outage: boolean;
  /** How many operations of each kind reached the daemon (the control file not counted). */
  operations: Record<string, number>;
  /** The active rules, one line each, with how often each matched (`seen`) and acted (`hits`). */
  rules: string[];
}

/** A mounted faultfs. Dispose it (`await using`) to unmount and remove its directories. */
export interface FaultFs extends AsyncDisposable, Disposable {
  /** Where the file system is mounted. */
  readonly mountPath: string;
  /** The directory it mirrors: files here appear in the mount, faults never apply here. */
  readonly backingPath: string;
  /** The daemon's log file. */
  readonly logPath: string;
  /** The path of `name` in the mount. */
  path(name: string): string;
  /** The path of `name` in the backing directory. */
  backing(name: string): string;
  /** Adds a rule that makes matching operations answer an errno. */
  fail(rule: FailRule): Promise<void>;
  /** Adds a rule that makes matching operations wait. */
  delay(rule: DelayRule): Promise<void>;
  /** Every operation on every file fails with EIO until {@linkcode FaultFs.heal}. */
  outage(): Promise<void>;
  /** Lifts the outage and removes every rule. */
  heal(): Promise<void>;
  /**
   * Drops the kernel's cached pages of `name`, also those mapped by any process, so the next
   * touch of a mapped page reads through the daemon again (and meets any fault). Dirty pages
   * are written back first.
   */
  invalidate(name: string): Promise<void>;
  /** Sends raw control lines (the grammar is in tests/fuse/README.md). */
  command(text: string): Promise<void>;
  /** Reads the daemon's state. */
  status(): Promise<FaultFsStatus>;
  /** The daemon's log so far. */
  log(): string;
  /** Unmounts, stops the daemon and removes the directories; throws if any step failed. */
  unmount(): Promise<void>;
}

/** Options of {@linkcode mountFaultFs}. */
export interface MountOptions {
  /**
   * The kernel's readahead window for the mount in bytes (how much it reads around a page
   * fault); default: the kernel's, 128 KiB.
   */
  maxReadahead?: number;
  /**
   * Let the kernel cache writes (FUSE's writeback cache): `write(2)` then only dirties the page
   * cache, as on ext4, and a failing WRITE fails the write-back (`flush`), not the `write`.
   * Default false: every write goes to the file system at once.
   */
  writebackCache?: boolean;
  /** Extra libfuse options, such as `["-o", "ro"]`. */
  fuseOptions?: string[];
}
