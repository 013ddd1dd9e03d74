/**
 * A MapPool channel as each side maps it: the shared header and the staging area behind it
 * (zig/src/channel.zig). The host creates the channel and the worker attaches to it; both read
 * the header's fields here, by their names in `ffi/abi.ts`. Internal.
 *
 * @module
 */
import { native } from "../ffi/library.ts";
import { Status } from "../ffi/status.ts";
import { GuardmapError } from "../ffi/errors.ts";
import { CHANNEL_HEADER, CHANNEL_HEADER_BYTES, decodeOpenResult, OPEN_RESULT } from "../ffi/abi.ts";

/** One end of a channel: the library's channel handle and views of its shared memory. */
export interface ChannelEnd {
  /** The library's handle of the channel. */
  channel: number;
  /** The header: futex words, the request and the response. */
  header: DataView;
  /** The staging area that payloads and bytes travel through. */
  staging: Uint8Array;
}

/** A channel the host created, and the path its worker opens it by. */
export interface CreatedChannel {
  end: ChannelEnd;
  /** `/proc/<host pid>/fd/<n>`: the channel's nameless memory file, through this process. */
  path: string;
}

/**
 * Host: creates a channel with `stagingBytes` of staging for the worker `owner` names (in errors).
 *
 * @example
 * ```ts ignore
 * import { createChannel } from "./channel.ts";
 * const { end, path } = createChannel(65536, "worker 0");
 * console.log(path.startsWith("/proc/"), end.staging.byteLength); // true 65536
 * ```
 */
export function createChannel(stagingBytes: number, owner: string): CreatedChannel {
  const out = new Uint8Array(OPEN_RESULT.sizeBytes);
  const created = native().gm_channel_create(stagingBytes, out);
  const result = decodeOpenResult(new DataView(out.buffer));
  if (created !== Status.ok) {
    throw new GuardmapError(
      `cannot create the shared memory of ${owner} (status ${created}, errno ${result.osError})`,
      { code: "CHANNEL", status: created },
    );
  }
  // The memory file has no name, so nothing is left behind whenever this process dies: the
  // worker opens it through this process's descriptor table.
  return {
    end: mapChannel(result.handle, stagingBytes),
    path: `/proc/${Deno.pid}/fd/${Number(result.fileSizeBytes)}`,
  };
}

/**
 * Worker: attaches to the channel at `path`; returns the library's status when it cannot.
 *
 * @example
 * ```ts ignore
 * import { attachChannel } from "./channel.ts";
 * const end = attachChannel(Deno.args[0]);
 * if (typeof end === "number") Deno.exit(3);
 * ```
 */
export function attachChannel(path: string): ChannelEnd | number {
  const out = new Uint8Array(OPEN_RESULT.sizeBytes);
  const bytes = new TextEncoder().encode(path);
  const status = native().gm_channel_attach(bytes, BigInt(bytes.byteLength), out);
  if (status !== Status.ok) return status;
  const result = decodeOpenResult(new DataView(out.buffer));
  return mapChannel(result.handle, Number(result.lengthBytes));
}

function mapChannel(channel: number, stagingBytes: number): ChannelEnd {
  const address = native().gm_channel_address(channel);
  if (address === null) {
    // Not expected right after a create or attach; the channel is closed here all the same, so
    // that a start that fails at this point leaves no channel open.
    native().gm_channel_close(channel);
    throw new GuardmapError(`the library has no memory for channel ${channel}`, {
      code: "CHANNEL",
      status: Status.bad_handle,
    });
  }
  const region = Deno.UnsafePointerView.getArrayBuffer(
    address,
    CHANNEL_HEADER_BYTES + stagingBytes,
  );
  return {
    channel,
    header: new DataView(region, 0, CHANNEL_HEADER_BYTES),
    staging: new Uint8Array(region, CHANNEL_HEADER_BYTES, stagingBytes),
  };
}

/**
 * Host: closes the channel (its mapping and the pidfd of its worker).
 *
 * @example
 * ```ts ignore
 * import { closeChannel, createChannel } from "./channel.ts";
 * await closeChannel(createChannel(65536, "worker 0").end.channel);
 * ```
 */
export async function closeChannel(channel: number): Promise<void> {
  const lib = native();
  // A wait on Deno's blocking pool may still hold the channel for up to 5 ms after the worker
  // died: retry a bounded number of times.
  for (let attempt = 0; attempt < 100; attempt++) {
    const status = lib.gm_channel_close(channel);
    if (status !== Status.busy) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * The request's `length_bytes`: for a control request, the bytes of its payload in staging.
 *
 * @example
 * ```ts
 * import { requestLength } from "./channel.ts";
 * import { CHANNEL_HEADER, CHANNEL_HEADER_BYTES } from "../ffi/abi.ts";
 * const header = new DataView(new ArrayBuffer(CHANNEL_HEADER_BYTES));
 * header.setBigUint64(CHANNEL_HEADER.lengthBytes, 12n, true);
 * console.log(requestLength(header)); // 12
 * ```
 */
export function requestLength(header: DataView): number {
  return Number(header.getBigUint64(CHANNEL_HEADER.lengthBytes, true));
}

/**
 * The request's map handle: bits 0-31 in `handle`, bits 32-52 in `handleHigh`.
 *
 * @example
 * ```ts
 * import { requestHandle } from "./channel.ts";
 * import { CHANNEL_HEADER, CHANNEL_HEADER_BYTES } from "../ffi/abi.ts";
 * const header = new DataView(new ArrayBuffer(CHANNEL_HEADER_BYTES));
 * header.setUint32(CHANNEL_HEADER.handle, 1, true);
 * header.setUint32(CHANNEL_HEADER.handleHigh, 2, true);
 * console.log(requestHandle(header)); // 8589934593
 * ```
 */
export function requestHandle(header: DataView): number {
  return header.getUint32(CHANNEL_HEADER.handle, true) +
    header.getUint32(CHANNEL_HEADER.handleHigh, true) * 2 ** 32;
}

/**
 * The response's `result_bytes`: for a control request, the bytes of its answer in staging.
 *
 * @example
 * ```ts
 * import { resultBytes } from "./channel.ts";
 * import { CHANNEL_HEADER, CHANNEL_HEADER_BYTES } from "../ffi/abi.ts";
 * const header = new DataView(new ArrayBuffer(CHANNEL_HEADER_BYTES));
 * header.setBigUint64(CHANNEL_HEADER.resultBytes, 7n, true);
 * console.log(resultBytes(header)); // 7
 * ```
 */
export function resultBytes(header: DataView): number {
  return Number(header.getBigUint64(CHANNEL_HEADER.resultBytes, true));
}
