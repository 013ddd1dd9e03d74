/**
 * Launching a MapPool worker process: its command line (the narrow permissions it runs with) and
 * the process itself, from spawn to exit, with the tail of its stderr for error messages.
 * Internal.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { workerLibrary } from "../ffi/library.ts";
import type { KernelAccess } from "./kernel_access.ts";
import type { PoolSettings } from "./pool_options.ts";

const STDERR_TAIL_BYTES = 4096;

/**
 * The `deno` arguments of a worker that opens the channel at `channelPath`: `--allow-ffi`,
 * read access to guardmap's own directory, the verified library, `permissions.read` and the
 * kernels granted so far (`access`), write access to `permissions.write`, and nothing else.
 *
 * @example
 * ```ts
 * import { workerArgs } from "./worker_process.ts";
 * import { KernelAccess } from "./kernel_access.ts";
 * import { poolSettings } from "./pool_options.ts";
 * if (Deno.build.os === "linux") {
 *   const args = workerArgs(poolSettings({}), new KernelAccess([], []), "/proc/1/fd/3");
 *   console.log(args.includes("--allow-ffi")); // true
 * }
 * ```
 */
export function workerArgs(
  settings: PoolSettings,
  access: KernelAccess,
  channelPath: string,
): string[] {
  const entry = new URL("./worker.ts", import.meta.url);
  const root = new URL("..", import.meta.url);
  const read = [
    ...(root.protocol === "file:" ? [fileURLToPath(root)] : []),
    // The cached library, which the worker verifies before loading it.
    ...workerLibrary().read,
    ...settings.read,
    ...access.reads,
  ];
  const args = [
    "run",
    "--quiet",
    "--no-prompt",
    // The lock file Deno would find is guardmap's own (next to worker.ts) or the current
    // directory's: importing a kernel must not write its modules into either.
    "--no-lock",
    "--allow-ffi",
    `--allow-env=GUARDMAP_LIB,GUARDMAP_LIB_SHA256`,
  ];
  if (read.length > 0) args.push(`--allow-read=${read.join(",")}`);
  if (settings.write.length > 0) args.push(`--allow-write=${settings.write.join(",")}`);
  args.push(...access.importFlags());
  args.push(
    entry.protocol === "file:" ? fileURLToPath(entry) : entry.href,
    channelPath,
    `${Deno.pid}`,
  );
  return args;
}

/**
 * One worker process, from spawn to exit.
 *
 * @example
 * ```ts ignore
 * import { Life } from "./worker_process.ts";
 * const life = new Life(["eval", "console.error('hi')"]);
 * console.log((await life.exitedWithin(5000))?.code, life.stderrTail); // 0 "hi\n"
 * ```
 */
export class Life {
  /** The process id. */
  readonly pid: number;
  /** Settles with the exit status. */
  readonly exited: Promise<Deno.CommandStatus>;
  /** False once the process exited or is known to be dying. */
  alive = false;
  /** A call is running on this process. */
  inCall = false;
  /** How many calls completed on this process. */
  completedCalls = 0;
  /** The last 4 KiB of the process's stderr. */
  stderrTail = "";
  #child: Deno.ChildProcess;
  #status: Deno.CommandStatus | undefined;
  #pump: Promise<void>;

  /** Spawns `deno` with `args` (see {@linkcode workerArgs}). */
  constructor(args: string[]) {
    const child = new Deno.Command(Deno.execPath(), {
      args,
      // NO_COLOR: the stderr tail goes into error messages, without escape codes.
      // The host's library, verified and loaded as it is (./ffi/library.ts: workerLibrary).
      env: { ...workerLibrary().env, NO_COLOR: "1" },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.pid = child.pid;
    this.#pump = this.#collectStderr(child.stderr);
    this.exited = child.status.then((status) => {
      this.#status = status;
      return status;
    });
  }

  async #collectStderr(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      this.stderrTail = (this.stderrTail + decoder.decode(chunk, { stream: true }))
        .slice(-STDERR_TAIL_BYTES);
    }
  }

  /** Sends SIGKILL unless the process has exited. */
  kill(): void {
    if (this.#status !== undefined) return;
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // It exited between the check and the kill.
    }
  }

  /** The exit status, once the process has exited and its stderr is read; undefined if late. */
  async exitedWithin(milliseconds: number): Promise<Deno.CommandStatus | undefined> {
    const status = await within(this.exited, milliseconds);
    if (status !== undefined) await within(this.#pump, milliseconds);
    return status;
  }
}

/**
 * Resolves with `promise`'s value, or with undefined after `milliseconds`.
 *
 * @example
 * ```ts
 * import { within } from "./worker_process.ts";
 * console.log(await within(new Promise(() => {}), 10)); // undefined
 * ```
 */
export async function within<T>(
  promise: Promise<T>,
  milliseconds: number,
): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), milliseconds);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Never called. The pool starts ./worker.ts as a separate process by URL (`workerArgs`), which
 * puts it in no module graph: this literal import does, so `deno cache` and `deno compile` of a
 * program that uses MapPool include the worker's modules, and an offline (`--cached-only`)
 * program can start workers. Calling it would run a worker's top-level code in this process.
 */
// deno-lint-ignore no-unused-vars
function workerModuleInGraph(): Promise<unknown> {
  return import("./worker.ts");
}
