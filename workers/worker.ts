/**
 * A MapPool worker process. Started by the pool as
 * `deno run <narrow permissions> workers/worker.ts /proc/<host pid>/fd/<n> <host pid>` (the
 * channel's nameless memory file, opened through the host's descriptor), with the
 * library's path in GUARDMAP_LIB. It maps the files the host asks for and serves reads and
 * writes natively (zig/src/channel.zig) until a request needs JavaScript: open, close, run a
 * kernel, ping, exit.
 *
 * Anything that goes wrong beyond recovery here (a kernel touching a lost page, a segfault, an
 * uncaught exception, `Deno.exit`) ends this process only; the host restarts it.
 *
 * @module
 */
import { native } from "../ffi/library.ts";
import { Status } from "../ffi/status.ts";
import { openFailure } from "../ffi/open_options.ts";
import { openNative } from "../ffi/window.ts";
import { closeMap, mapView } from "../ffi/map_handle.ts";
import { attachChannel, requestHandle, requestLength } from "./channel.ts";
import {
  Op,
  type OpenAnswer,
  type OpenRequest,
  readPayload,
  type RunRequest,
  writePayload,
} from "./protocol.ts";

const [channelPath, hostPid] = Deno.args;
if (channelPath === undefined || hostPid === undefined) {
  console.error("usage: worker.ts <channel path> <host pid> (started by MapPool)");
  Deno.exit(2);
}

const lib = native();
// Die with the host: the kernel sends SIGKILL when the parent exits, and the serve loop also
// notices a changed parent within 100 ms.
lib.gm_worker_bind_to_parent();
// A host that died before that call sent no signal: this process was re-parented already.
if (Deno.ppid !== Number(hostPid)) Deno.exit(0);

const attached = attachChannel(channelPath);
if (typeof attached === "number") {
  console.error(`guardmap worker: cannot attach to ${channelPath} (status ${attached})`);
  Deno.exit(3);
}
const { channel, header, staging } = attached;

/** Zero-copy views of the open maps, for kernels. */
const views = new Map<number, ArrayBuffer>();

function reply(status: number, value?: unknown): void {
  const length = value === undefined ? 0 : writePayload(staging, value);
  lib.gm_channel_reply(channel, status, length);
}

function requestPayload<T>(): T {
  return readPayload<T>(staging, requestLength(header));
}

function open(): void {
  const request = requestPayload<OpenRequest>();
  // An OpenRequest has no `salvage`: salvage is for maps in the host's own process.
  const { status, result } = openNative(request);
  const answer: OpenAnswer = {
    handle: result.handle,
    length: Number(result.lengthBytes),
    osError: result.osError,
    failure: status === Status.ok ? undefined : openFailure(result),
  };
  reply(status, answer);
}

function close(): void {
  const handle = requestHandle(header);
  const view = views.get(handle);
  views.delete(handle);
  // A view a kernel transferred away keeps its range mapped to zeros; any other is detached
  // first, so no kernel's leftover view can reach the unmapped pages.
  reply(closeMap(handle, view));
}

async function run(): Promise<void> {
  const request = requestPayload<RunRequest>();
  let kernel: (view: Uint8Array, ...args: unknown[]) => unknown;
  try {
    const module = await import(request.module);
    kernel = module[request.name];
    if (typeof kernel !== "function") {
      reply(Status.not_found, {
        message: `${request.module} has no exported function "${request.name}"`,
      });
      return;
    }
  } catch (error) {
    reply(Status.not_found, {
      message: `cannot load ${request.module}: ${error instanceof Error ? error.message : error}`,
    });
    return;
  }
  let buffer = views.get(request.handle);
  if (buffer === undefined) {
    buffer = mapView(request.handle, request.length);
    if (buffer === undefined) return reply(Status.bad_handle);
    views.set(request.handle, buffer);
  }
  // Not caught: an exception escaping a kernel ends this worker, like any other crash, and the
  // host reports it as WorkerCrashedError with the message from stderr.
  const result = await kernel(new Uint8Array(buffer), ...request.args);
  try {
    reply(Status.ok, result);
  } catch (error) {
    reply(Status.out_of_range, { message: error instanceof Error ? error.message : String(error) });
  }
}

const parent = Number(hostPid);
// Serves until the host says exit or is gone: a server loop, unbounded by design.
while (true) {
  const op = lib.gm_channel_serve(channel, parent);
  if (op <= 0) Deno.exit(0); // The host is gone (or the channel is): nothing left to serve.
  switch (op) {
    case Op.open:
      open();
      break;
    case Op.close:
      close();
      break;
    case Op.run:
      await run();
      break;
    case Op.ping:
      reply(Status.ok);
      break;
    case Op.exit:
      reply(Status.ok);
      Deno.exit(0);
      break;
    default:
      reply(Status.invalid_argument);
  }
}
