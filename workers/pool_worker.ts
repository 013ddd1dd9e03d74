/**
 * One worker slot of a MapPool: the current process, its channel, the calls queued for it and
 * the files it holds open. Internal.
 *
 * @module
 */
import { DETAIL } from "../ffi/abi.ts";
import type { ResolvedOpen } from "../ffi/open_options.ts";
import type { MapMode } from "../ffi/types.ts";
import { type ChannelEnd, closeChannel, resultBytes } from "./channel.ts";
import type { OpenAnswer } from "./protocol.ts";
import { Life } from "./worker_process.ts";

/**
 * A file open in a worker, as the supervisor and the calls see it: `PoolFile`'s inside.
 *
 * @example
 * ```ts ignore
 * import { PoolFileRecord, PoolWorker } from "./pool_worker.ts";
 * const record = new PoolFileRecord(new PoolWorker(0), resolveOpen(path, {}), answer);
 * ```
 */
export class PoolFileRecord {
  // The window, as the PoolFile interface documents it.
  readonly path: string;
  readonly mode: MapMode;
  readonly offset: number;
  readonly byteLength: number;
  /** The open as asked for, to open the file again in a new process. */
  readonly resolved: ResolvedOpen;
  /** The slot the file lives in. */
  readonly worker: PoolWorker;
  /** The map handle in the worker's current process. */
  handle: number;
  // Private, not protected: a protected field would be an own property anyone could set.
  #brokenBy: Error | undefined;

  /** The file `answer` says `worker` opened for `resolved`. */
  constructor(worker: PoolWorker, resolved: ResolvedOpen, answer: OpenAnswer) {
    this.worker = worker;
    this.resolved = resolved;
    this.path = resolved.path;
    this.mode = resolved.mode;
    this.offset = Number(resolved.offset);
    this.byteLength = answer.length;
    this.handle = answer.handle;
  }

  /** The file was opened again in a new process. */
  reopened(answer: OpenAnswer): void {
    this.handle = answer.handle;
  }

  /** The file cannot be used any more: its calls throw `error`. */
  broken(error: Error): void {
    this.#brokenBy = error;
  }

  /** The error the file's calls throw once it cannot be used any more, else undefined. */
  brokenBy(): Error | undefined {
    return this.#brokenBy;
  }
}

/**
 * One worker slot: the current process, its channel, and the calls queued for it.
 *
 * @example
 * ```ts
 * import { PoolWorker } from "./pool_worker.ts";
 * const worker = new PoolWorker(0);
 * console.log(worker.alive, worker.channel); // false 0
 * ```
 */
export class PoolWorker {
  /** The slot's number, in messages. */
  readonly index: number;
  /** How many processes were started in this slot. */
  generation = 0;
  /** The library's channel handle; 0 when none is open. */
  channel = 0;
  /** The channel's staging area. */
  staging: Uint8Array = new Uint8Array(0);
  #header: DataView = new DataView(new ArrayBuffer(0));
  /** The detail record of this slot's calls. */
  detail: Uint8Array = new Uint8Array(DETAIL.sizeBytes);
  /** {@linkcode PoolWorker.detail}, as a DataView. */
  detailView: DataView = new DataView(this.detail.buffer);
  /** The files open in this slot. */
  files: Set<PoolFileRecord> = new Set();
  /** The last call queued: the next one runs after it. */
  queue: Promise<unknown> = Promise.resolve();
  /** A start in progress. */
  starting: Promise<void> | undefined;
  /** Failed starts in a row. */
  failedStarts = 0;
  /** Why the last start failed. */
  lastStartError = "";
  /** The kernel grants (`KernelAccess.version`) this worker's process was started with. */
  accessVersion = 0;
  /** The current process; undefined before the first start. */
  life: Life | undefined;

  /** An empty slot; its process starts on first use. */
  constructor(index: number) {
    this.index = index;
  }

  /** Whether the current process is running and answering. */
  get alive(): boolean {
    return this.life?.alive ?? false;
  }

  /** Takes `end` as this slot's channel. */
  attachChannel(end: ChannelEnd): void {
    this.channel = end.channel;
    this.#header = end.header;
    this.staging = end.staging;
  }

  /** The bytes of the last control answer in staging. */
  resultBytes(): number {
    return resultBytes(this.#header);
  }

  /** Starts a process with `deno` arguments `args`. */
  spawn(args: string[]): void {
    this.life = new Life(args);
  }

  /** Closes the channel, if one is open. */
  async closeChannel(): Promise<void> {
    if (this.channel === 0) return;
    await closeChannel(this.channel);
    this.channel = 0;
    this.staging = new Uint8Array(0);
  }
}
