/**
 * Finds, builds if necessary, and loads libguardmap with `Deno.dlopen`.
 *
 * The library is looked for in this order:
 * 1. the path in the environment variable `GUARDMAP_LIB` (read only when `--allow-env` grants it);
 * 2. the project's own build output, `zig/zig-out/lib/` next to this module;
 * 3. if neither loads and a Zig compiler is at hand (`GUARDMAP_ZIG`, the project's `.tools/`, or
 *    `zig` on PATH) and `--allow-run` is granted, it is built there with
 *    `zig build -Doptimize=ReleaseSafe` and loaded.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { GuardmapError } from "./errors.ts";

/** The ABI version this module speaks; `zig/src/root.zig` exports the library's own. */
export const ABI_VERSION = 2;

const symbols = {
  gm_abi_version: { parameters: [], result: "u32" },
  gm_init: { parameters: [], result: "i32" },
  gm_guard_disposition: { parameters: [], result: "i32" },
  gm_page_size: { parameters: [], result: "u32" },
  gm_granularity: { parameters: [], result: "u32" },
  gm_open: {
    parameters: ["buffer", "usize", "u32", "u64", "u64", "u32", "buffer"],
    result: "i32",
  },
  gm_close: { parameters: ["u32"], result: "i32" },
  gm_address: { parameters: ["u32"], result: "pointer" },
  gm_file_size: { parameters: ["u32", "buffer"], result: "i32" },
  gm_read: { parameters: ["u32", "f64", "buffer", "f64", "buffer"], result: "i32" },
  gm_read_many: {
    parameters: ["u32", "buffer", "f64", "f64", "buffer", "f64", "buffer"],
    result: "i32",
  },
  gm_write: { parameters: ["u32", "f64", "buffer", "f64", "buffer"], result: "i32" },
  gm_flush: { parameters: ["u32", "f64", "f64", "buffer"], result: "i32" },
  gm_advise: { parameters: ["u32", "f64", "f64", "u32", "buffer"], result: "i32" },
  gm_prefault: { parameters: ["u32", "f64", "f64", "u32", "buffer"], result: "i32" },
  gm_memcpy: { parameters: ["buffer", "buffer", "f64"], result: "i32" },
  gm_salvage_faults: { parameters: ["u32", "buffer"], result: "i32" },
  // MapPool channels (workers/).
  gm_channel_create: { parameters: ["f64", "buffer"], result: "i32" },
  gm_channel_attach: { parameters: ["buffer", "usize", "buffer"], result: "i32" },
  gm_channel_close: { parameters: ["u32"], result: "i32" },
  gm_channel_address: { parameters: ["u32"], result: "pointer" },
  gm_channel_watch: { parameters: ["u32", "i32"], result: "i32" },
  gm_channel_post: {
    parameters: ["u32", "u32", "u32", "f64", "f64", "f64", "u32"],
    result: "i32",
  },
  // On Deno's blocking thread pool: the host's event loop keeps running while a worker runs a
  // kernel or opens a file.
  gm_channel_wait_async: {
    name: "gm_channel_wait",
    parameters: ["u32", "f64", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  // The pool's data calls wait at most their budget (the last f64 before the detail) on the
  // calling thread, then return `pending`; gm_pool_resume_async waits for the rest off it.
  gm_channel_call: {
    parameters: ["u32", "u32", "u32", "f64", "f64", "u32", "f64", "f64", "buffer"],
    result: "i32",
  },
  gm_pool_read: {
    parameters: ["u32", "u32", "f64", "buffer", "f64", "f64", "f64", "buffer"],
    result: "i32",
  },
  gm_pool_write: {
    parameters: ["u32", "u32", "f64", "buffer", "f64", "f64", "f64", "buffer"],
    result: "i32",
  },
  gm_pool_read_many: {
    parameters: ["u32", "u32", "buffer", "f64", "f64", "buffer", "f64", "f64", "f64", "buffer"],
    result: "i32",
  },
  gm_pool_resume_async: {
    name: "gm_pool_resume",
    parameters: ["u32", "buffer", "f64", "buffer", "f64", "f64", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  gm_channel_serve: { parameters: ["u32", "i32"], result: "i32" },
  gm_channel_reply: { parameters: ["u32", "i32", "f64"], result: "i32" },
  gm_worker_bind_to_parent: { parameters: [], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded library's functions, as `Deno.dlopen` types them. */
export type Native = Deno.DynamicLibrary<typeof symbols>["symbols"];

let loaded: Native | undefined;
let loadedPath: string | undefined;

/**
 * Loads libguardmap once per process (or Web Worker) and installs its fault handler.
 *
 * @example
 * ```ts
 * import { native } from "./library.ts";
 * console.log(native().gm_page_size()); // 4096 on x86_64 Linux
 * ```
 */
export function native(): Native {
  if (loaded !== undefined) return loaded;
  const attempts: string[] = [];
  for (const candidate of candidates()) {
    const library = tryOpen(candidate, attempts);
    if (library !== undefined) return accept(library, candidate);
  }
  const built = buildWithZig(attempts);
  if (built !== undefined) {
    const library = tryOpen(built, attempts);
    if (library !== undefined) return accept(library, built);
  }
  throw new GuardmapError(
    "guardmap: the native library libguardmap could not be loaded.\n" +
      attempts.map((line) => `  - ${line}`).join("\n") +
      "\nBuild it with `tools/dev build` (or `cd zig && zig build -Doptimize=ReleaseSafe`), " +
      "or set GUARDMAP_LIB to the path of a built library and grant --allow-env.",
    { code: "NO_LIBRARY", status: -1 },
  );
}

/**
 * The path libguardmap was loaded from, or `undefined` before it is loaded.
 *
 * @example
 * ```ts
 * import { libraryPath, native } from "./library.ts";
 * native();
 * console.log(libraryPath()?.endsWith("libguardmap.so")); // true on Linux
 * ```
 */
export function libraryPath(): string | undefined {
  return loadedPath;
}

function accept(library: Deno.DynamicLibrary<typeof symbols>, path: string): Native {
  const version = library.symbols.gm_abi_version();
  if (version !== ABI_VERSION) {
    library.close();
    throw new GuardmapError(
      `guardmap: ${path} speaks ABI version ${version}, this module needs ${ABI_VERSION}. ` +
        "Rebuild the library with `tools/dev build`.",
      { code: "ABI_MISMATCH", status: -1 },
    );
  }
  const status = library.symbols.gm_init();
  if (status !== 0) {
    library.close();
    throw new GuardmapError(
      `guardmap: ${path} could not install its SIGBUS/SIGSEGV handler (status ${status}).`,
      { code: "NO_FAULT_HANDLER", status },
    );
  }
  loaded = library.symbols;
  loadedPath = path;
  keepGuardInFront(loaded);
  return loaded;
}

/**
 * Wraps `Deno.addSignalListener` so that adding a SIGBUS or SIGSEGV listener puts guardmap's
 * handler back in front at once. Deno installs its own handler for a signal when the first
 * listener is added; that handler forwards each fault to ours but also queues the signal for
 * Deno's signal thread, which kills the process (emulating the default action) if, when it gets
 * to it, no listener is registered any more. With ours in front, guarded faults never reach it.
 */
function keepGuardInFront(lib: Native): void {
  const add = Deno.addSignalListener;
  Deno.addSignalListener = function addSignalListener(signal, handler): void {
    add.call(Deno, signal, handler);
    if (signal === "SIGBUS" || signal === "SIGSEGV") lib.gm_init();
  };
}

function tryOpen(
  path: string,
  attempts: string[],
): Deno.DynamicLibrary<typeof symbols> | undefined {
  try {
    return Deno.dlopen(path, symbols);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) throw error;
    attempts.push(`${path}: ${error instanceof Error ? error.message.split("\n")[0] : error}`);
    return undefined;
  }
}

function libraryFileName(): string {
  switch (Deno.build.os) {
    case "windows":
      return "guardmap.dll";
    case "darwin":
      return "libguardmap.dylib";
    default:
      return "libguardmap.so";
  }
}

/** The project's root directory when this module is loaded from a local file. */
function projectRoot(): string | undefined {
  const url = new URL("..", import.meta.url);
  return url.protocol === "file:" ? fileURLToPath(url) : undefined;
}

function envVar(name: string): string | undefined {
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    return undefined;
  }
  return Deno.env.get(name) || undefined;
}

function candidates(): string[] {
  const found: string[] = [];
  const fromEnv = envVar("GUARDMAP_LIB");
  if (fromEnv !== undefined) found.push(fromEnv);
  const root = projectRoot();
  if (root !== undefined) {
    const dir = Deno.build.os === "windows" ? "bin" : "lib";
    found.push(join(root, "zig", "zig-out", dir, libraryFileName()));
  }
  return found;
}

function zigCompiler(root: string): string | undefined {
  const fromEnv = envVar("GUARDMAP_ZIG");
  if (fromEnv !== undefined) return fromEnv;
  const local = join(root, ".tools", "zig", "ziglang", "zig");
  try {
    if (Deno.statSync(local).isFile) return local;
  } catch {
    // Not installed by tools/dev, or no read permission: try PATH.
  }
  return "zig";
}

function buildWithZig(attempts: string[]): string | undefined {
  const root = projectRoot();
  if (root === undefined) {
    attempts.push("building from source needs a local checkout (this module was loaded remotely)");
    return undefined;
  }
  if (Deno.permissions.querySync({ name: "run" }).state !== "granted") {
    attempts.push("not built automatically: building it needs --allow-run");
    return undefined;
  }
  const zig = zigCompiler(root);
  if (zig === undefined) return undefined;
  try {
    const output = new Deno.Command(zig, {
      args: ["build", "-Doptimize=ReleaseSafe"],
      cwd: join(root, "zig"),
      stdout: "inherit",
      stderr: "inherit",
    }).outputSync();
    if (!output.success) {
      attempts.push(`\`${zig} build\` in ${join(root, "zig")} failed (exit ${output.code})`);
      return undefined;
    }
  } catch (error) {
    attempts.push(`could not run ${zig}: ${error instanceof Error ? error.message : error}`);
    return undefined;
  }
  return candidates().at(-1);
}
