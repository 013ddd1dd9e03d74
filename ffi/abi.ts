/**
 * The one TypeScript mirror of libguardmap's C ABI: the symbol table, the record layouts (the
 * detail record, the open result, the MapPool channel header), the open flags and the numbers of
 * modes, advice, file kinds and channel operations. No other TypeScript file writes a raw offset
 * or a raw ABI number; they name these.
 *
 * The library describes its own layout (`gm_abi_layout`, built at compile time from the Zig
 * types); `tests/abi_test.ts` compares every field here with that description, so the two sides
 * cannot drift apart silently. Internal: not part of the public API.
 *
 * @module
 */
export { Status } from "./status.ts";

/**
 * The ABI version this module speaks; the library reports its own (`gm_abi_version`), and a
 * library of another version is refused before any other call.
 */
export const ABI_VERSION = 6;

export const SYMBOLS = {
  gm_abi_version: { parameters: [], result: "u32" },
  gm_abi_layout: { parameters: [], result: "pointer" },
  gm_init: { parameters: [], result: "i32" },
  gm_guard_disposition: { parameters: [], result: "i32" },
  gm_page_size: { parameters: [], result: "u32" },
  gm_granularity: { parameters: [], result: "u32" },
  gm_open: {
    parameters: ["buffer", "usize", "u32", "u64", "u64", "u32", "buffer"],
    result: "i32",
  },
  gm_close: { parameters: ["f64"], result: "i32" },
  gm_release: { parameters: ["f64"], result: "i32" },
  gm_reap: { parameters: [], result: "u32" },
  gm_address: { parameters: ["f64"], result: "pointer" },
  gm_file_size: { parameters: ["f64", "buffer"], result: "i32" },
  // No detail buffer: a failed gm_read/gm_write leaves its record for gm_last_detail, so the
  // per-read call carries one buffer, not two (bench/where_the_time_goes.md, "The cost of one
  // call").
  gm_read: { parameters: ["f64", "f64", "buffer", "f64"], result: "i32" },
  gm_last_detail: { parameters: ["buffer"], result: "i32" },
  gm_read_many: {
    parameters: ["f64", "buffer", "f64", "f64", "f64", "buffer", "f64", "buffer"],
    result: "i32",
  },
  gm_write: { parameters: ["f64", "f64", "buffer", "f64"], result: "i32" },
  gm_flush: { parameters: ["f64", "f64", "f64", "buffer"], result: "i32" },
  gm_advise: { parameters: ["f64", "f64", "f64", "u32", "buffer"], result: "i32" },
  gm_prefault: { parameters: ["f64", "f64", "f64", "u32", "buffer"], result: "i32" },
  gm_memcpy: { parameters: ["buffer", "f64", "buffer", "f64", "f64"], result: "i32" },
  gm_salvage_faults: { parameters: ["f64", "buffer"], result: "i32" },
  // MapPool channels (workers/).
  gm_channel_create: { parameters: ["f64", "buffer"], result: "i32" },
  gm_channel_attach: { parameters: ["buffer", "usize", "buffer"], result: "i32" },
  gm_channel_close: { parameters: ["f64"], result: "i32" },
  gm_channel_address: { parameters: ["f64"], result: "pointer" },
  gm_channel_watch: { parameters: ["f64", "i32"], result: "i32" },
  gm_channel_post: {
    parameters: ["f64", "u32", "f64", "f64", "f64", "f64", "u32"],
    result: "i32",
  },
  // On Deno's blocking thread pool: the host's event loop keeps running while a worker runs a
  // kernel or opens a file.
  gm_channel_wait_async: {
    name: "gm_channel_wait",
    parameters: ["f64", "f64", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  // The pool's data calls wait at most their budget (the last f64 before the detail) on the
  // calling thread, then return `pending`; gm_pool_resume_async waits for the rest off it.
  gm_channel_call: {
    parameters: ["f64", "u32", "f64", "f64", "f64", "u32", "f64", "f64", "buffer"],
    result: "i32",
  },
  gm_pool_read: {
    parameters: ["f64", "f64", "f64", "buffer", "f64", "f64", "f64", "buffer"],
    result: "i32",
  },
  gm_pool_write: {
    parameters: ["f64", "f64", "f64", "buffer", "f64", "f64", "f64", "buffer"],
    result: "i32",
  },
  gm_pool_read_many: {
    parameters: [
      "f64",
      "f64",
      "buffer",
      "f64",
      "f64",
      "f64",
      "buffer",
      "f64",
      "f64",
      "f64",
      "buffer",
    ],
    result: "i32",
  },
  gm_pool_resume_async: {
    name: "gm_pool_resume",
    parameters: ["f64", "buffer", "f64", "buffer", "f64", "f64", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  gm_channel_serve: { parameters: ["f64", "i32"], result: "i32" },
  gm_channel_reply: { parameters: ["f64", "i32", "f64"], result: "i32" },
  gm_worker_bind_to_parent: { parameters: [], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded library's functions, as `Deno.dlopen` types them. */
export type Native = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/**
 * Byte offsets of the detail record (zig/src/status.zig `Detail`) that every data call fills on
 * failure: how many bytes were done, where in the window the fault was, the OS error and the
 * signal.
 */
export const DETAIL = {
  sizeBytes: 32,
  bytesDone: 0,
  faultWindowOffset: 8,
  osError: 16,
  signal: 20,
  signalCode: 24,
  reserved: 28,
} as const;

/**
 * Byte offsets of the open result (zig/src/status.zig `OpenResult`). On success `lengthBytes` is
 * the window's length and `fileSizeBytes` the file's size; on a failed open they carry the limit
 * and the available bytes of a `file_too_large`/`no_space` refusal (see `openFailure` in
 * ./open_options.ts). For a MapPool channel, `lengthBytes` is the staging size and
 * `fileSizeBytes` the channel's memory-file descriptor number.
 */
export const OPEN_RESULT = {
  sizeBytes: 32,
  handle: 0,
  lengthBytes: 8,
  fileSizeBytes: 16,
  osError: 24,
  fileKind: 28,
} as const;

/**
 * Byte offsets of what `gm_salvage_faults` writes (two u64): how many pages were salvaged, and
 * the window offset of the lowest faulting address (all ones when there was none).
 */
export const SALVAGE_FAULTS = { sizeBytes: 16, count: 0, firstWindowOffset: 8 } as const;

/** Bytes of what `gm_file_size` writes: the file's size, one u64. */
export const FILE_SIZE_BYTES = 8;

/** Bytes before the staging area in a MapPool channel (zig/src/channel.zig `header_bytes`). */
export const CHANNEL_HEADER_BYTES = 4096;

/** The library's limits and out-record sizes (`constants` of `gm_abi_layout`). */
export const CONSTANTS = {
  channelHeaderBytes: CHANNEL_HEADER_BYTES,
  /** Smallest and largest staging area of a MapPool channel (zig/src/channel.zig). */
  stagingBytesMin: 64 * 1024,
  stagingBytesMax: 256 * 1024 * 1024,
  /** Maps a process may have open at once (zig/src/handles.zig `slot_count_max`). */
  mapCountMax: 4096,
  /** Bytes of a path with its terminator (zig/src/c_path.zig `length_max`). */
  pathBytesMax: 4096,
  salvageFaultsBytes: SALVAGE_FAULTS.sizeBytes,
  fileSizeBytes: FILE_SIZE_BYTES,
} as const;

/** Byte offsets of the MapPool channel header (zig/src/channel.zig `Header`). */
export const CHANNEL_HEADER = {
  sizeBytes: 136,
  magic: 0,
  version: 4,
  stagingBytes: 8,
  requestSequence: 16,
  responseSequence: 20,
  hostSleeping: 24,
  workerSleeping: 28,
  hostPid: 32,
  workerPid: 36,
  op: 40,
  handle: 44,
  position: 48,
  lengthBytes: 56,
  stagingOffset: 64,
  argument: 72,
  handleHigh: 76,
  status: 80,
  reserved1: 84,
  resultBytes: 88,
  detail: 96,
  hostCpu: 128,
  workerCpu: 132,
} as const;

/** Bits of `gm_open`'s flags argument (zig/src/status.zig `OpenFlags`). */
export const OPEN_FLAGS = {
  /** The length argument was given (else the window runs to the end of the file). */
  lengthGiven: 1,
  /** Keep a window that now lies past the end of the file (a MapPool worker's re-open). */
  pastEnd: 2,
  /** Salvage mode: faults read as zeros and are counted. */
  salvage: 4,
  /** `writes: "pwrite"`: writes go through the file descriptor. */
  writesToFile: 8,
} as const;

/** Map modes (zig/src/status.zig `Mode`). */
export const MODE = { read: 0, readWrite: 1, create: 2, copyOnWrite: 3 } as const;

/** Advice numbers (zig/src/status.zig `Advice`). */
export const ADVICE = { normal: 0, sequential: 1, random: 2, willNeed: 3, dontNeed: 4 } as const;

/** What a path names, in `OpenResult.fileKind` (the `S_IFMT` bits of `st_mode` shifted by 12). */
export const FILE_KIND = {
  unknown: 0,
  fifo: 1,
  characterDevice: 2,
  directory: 4,
  blockDevice: 6,
  regular: 8,
  symlink: 10,
  socket: 12,
} as const;

/**
 * Channel operations the worker's native loop serves (zig/src/channel.zig `Op`); numbers from
 * `controlFirst` on go to the worker's JavaScript (workers/protocol.ts).
 */
export const CHANNEL_OP = {
  read: 1,
  write: 2,
  flush: 3,
  prefault: 4,
  advise: 5,
  readMany: 6,
  controlFirst: 16,
} as const;

/** A detail record, decoded. */
export interface DetailRecord {
  bytesDone: number;
  faultWindowOffset: number;
  osError: number;
  signal: number;
  signalCode: number;
}

/**
 * Decodes the detail record `view` holds at its start.
 *
 * @example
 * ```ts
 * import { decodeDetail, DETAIL } from "./abi.ts";
 * const view = new DataView(new ArrayBuffer(DETAIL.sizeBytes));
 * view.setBigUint64(DETAIL.bytesDone, 4096n, true);
 * console.log(decodeDetail(view).bytesDone); // 4096
 * ```
 */
export function decodeDetail(view: DataView): DetailRecord {
  return {
    bytesDone: Number(view.getBigUint64(DETAIL.bytesDone, true)),
    faultWindowOffset: Number(view.getBigUint64(DETAIL.faultWindowOffset, true)),
    osError: view.getInt32(DETAIL.osError, true),
    signal: view.getInt32(DETAIL.signal, true),
    signalCode: view.getInt32(DETAIL.signalCode, true),
  };
}

/** An open result, decoded (see {@linkcode OPEN_RESULT} for what each field means when). */
export interface OpenResultRecord {
  handle: number;
  lengthBytes: bigint;
  fileSizeBytes: bigint;
  osError: number;
  fileKind: number;
}

/**
 * Decodes the open result `view` holds at its start.
 *
 * @example
 * ```ts
 * import { decodeOpenResult, OPEN_RESULT } from "./abi.ts";
 * const view = new DataView(new ArrayBuffer(OPEN_RESULT.sizeBytes));
 * view.setFloat64(OPEN_RESULT.handle, 7, true);
 * console.log(decodeOpenResult(view).handle); // 7
 * ```
 */
export function decodeOpenResult(view: DataView): OpenResultRecord {
  return {
    handle: view.getFloat64(OPEN_RESULT.handle, true),
    lengthBytes: view.getBigUint64(OPEN_RESULT.lengthBytes, true),
    fileSizeBytes: view.getBigUint64(OPEN_RESULT.fileSizeBytes, true),
    osError: view.getInt32(OPEN_RESULT.osError, true),
    fileKind: view.getUint32(OPEN_RESULT.fileKind, true),
  };
}
