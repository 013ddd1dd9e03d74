/**
 * Finds, builds if necessary, and loads libguardmap with `Deno.dlopen`.
 *
 * The library is looked for in this order:
 * 1. the path in the environment variable `GUARDMAP_LIB` (read only when `--allow-env` grants it;
 *    when `GUARDMAP_LIB_SHA256` is set too, as MapPool does for its workers, the file must match);
 * 2. the project's own build output, `zig/zig-out/lib/` next to this module;
 * 3. the prebuilt library for this platform that `tools/dev package` embedded in the package
 *    (./library_prebuilt.ts), through the verified cache of ./library_cache.ts (on Linux, from
 *    the process's one sealed memory file, ./library_memory_file.ts, when no cache can be used);
 * 4. if none loads and a Zig compiler is at hand (`GUARDMAP_ZIG`, the project's `.tools/`, or
 *    `zig` on PATH) and `--allow-run` is granted, it is built there with
 *    `zig build -Doptimize=ReleaseSafe` and loaded.
 *
 * A file checked against a SHA-256 (1 with a hash, 3) is loaded, on Linux, through the very
 * descriptor it was read from (`/proc/self/fd/N`), so nothing renamed over its path meanwhile is
 * loaded instead. All of this happens once per process (or Web Worker), in the first
 * {@linkcode native} call.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { GuardmapError } from "./errors.ts";
import { embeddedLibrary } from "./library_prebuilt.ts";
import {
  cachedFileName,
  cachedLibrary,
  CacheUnavailable,
  openVerified,
  type VerifiedFile,
} from "./library_cache.ts";
import { memoryFile } from "./library_memory_file.ts";
import { ABI_VERSION, type Native, SYMBOLS as symbols } from "./abi.ts";

export type { Native } from "./abi.ts";

/** Where the loaded library came from and, for the prebuilt one, what the load found. */
export interface LibraryInfo {
  /**
   * The library's file: the cache file, `GUARDMAP_LIB`, the local build, or `/proc/self/fd/N` for
   * a memory file. A file checked against a SHA-256 is given to `dlopen`, on Linux, as
   * `/proc/self/fd/N` of the descriptor its bytes were read from (closed once loaded).
   */
  path: string;
  /** Which step of the search found it. */
  source: "GUARDMAP_LIB" | "local build" | "cache" | "memory file" | "built with Zig";
  /** The SHA-256 it was verified against, when it was. */
  sha256?: string;
  /** Cache files that did not verify and were replaced (also printed as warnings). */
  repaired: string[];
  /** Why a memory file was used instead of the cache. */
  note?: string;
  /** Whether this process decoded the embedded copy (a cache miss, a repair, a memory file). */
  decoded?: boolean;
}

let loaded: Native | undefined;
let loadedInfo: LibraryInfo | undefined;

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
  for (const { info, file } of candidates(attempts)) {
    const library = file === undefined ? tryOpen(info.path, attempts) : openFile(file, attempts);
    if (library !== undefined) return accept(library, info);
  }
  const prebuilt = openPrebuilt(attempts);
  if (prebuilt !== undefined) return accept(prebuilt.library, prebuilt.info);
  const built = buildWithZig(attempts);
  if (built !== undefined) {
    const library = tryOpen(built, attempts);
    if (library !== undefined) {
      return accept(library, { path: built, source: "built with Zig", repaired: [] });
    }
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
  return loadedInfo?.path;
}

/**
 * Where the loaded library came from, or `undefined` before it is loaded.
 *
 * @example
 * ```ts
 * import { libraryInfo, MappedFile } from "../mod.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array(16));
 * MappedFile.open(path).close(); // loads the library
 * console.log(libraryInfo()?.source); // "local build" in a checkout, "cache" from JSR
 * ```
 */
export function libraryInfo(): LibraryInfo | undefined {
  return loadedInfo === undefined ? undefined : { ...loadedInfo };
}

/**
 * How a MapPool worker process loads the same library without decoding it again: the
 * environment to give it (`GUARDMAP_LIB`, and `GUARDMAP_LIB_SHA256` for a cached file, which the
 * worker verifies) and the paths it must be allowed to read for that. A memory file cannot be
 * shared by path: the worker then finds the library itself.
 *
 * @example
 * ```ts
 * import { native, workerLibrary } from "./library.ts";
 * native();
 * console.log(Object.keys(workerLibrary().env)); // ["GUARDMAP_LIB"] in a checkout
 * ```
 */
export function workerLibrary(): { env: Record<string, string>; read: string[] } {
  const info = loadedInfo;
  if (info === undefined || info.source === "memory file") return { env: {}, read: [] };
  if (info.sha256 === undefined) return { env: { GUARDMAP_LIB: info.path }, read: [] };
  return {
    env: { GUARDMAP_LIB: info.path, GUARDMAP_LIB_SHA256: info.sha256 },
    read: [info.path],
  };
}

function accept(library: Deno.DynamicLibrary<typeof symbols>, info: LibraryInfo): Native {
  const path = info.path;
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
  loadedInfo = info;
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
  label: string = path,
): Deno.DynamicLibrary<typeof symbols> | undefined {
  try {
    return Deno.dlopen(path, symbols);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) throw error;
    attempts.push(`${label}: ${error instanceof Error ? error.message.split("\n")[0] : error}`);
    return undefined;
  }
}

/**
 * Loads a verified file through the descriptor that was verified (so no other file can be put
 * in its place between the check and the load), then closes that descriptor.
 */
function openFile(
  file: VerifiedFile,
  attempts: string[],
): Deno.DynamicLibrary<typeof symbols> | undefined {
  try {
    // An --allow-ffi scoped to the library's own file (or its directory) does not cover
    // /proc/self/fd/N: load it by its path then, as before the descriptor was used (the short
    // window between the check and the load is open again; the README says so).
    const byPath = file.loadPath !== file.path && !ffiGranted(file.loadPath) &&
      ffiGranted(file.path);
    const loadPath = byPath ? file.path : file.loadPath;
    const label = loadPath === file.path ? file.path : `${file.path} (${loadPath})`;
    return tryOpen(loadPath, attempts, label);
  } finally {
    file.close();
  }
}

function ffiGranted(path: string): boolean {
  return Deno.permissions.querySync({ name: "ffi", path }).state === "granted";
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

/** GUARDMAP_LIB (checked against GUARDMAP_LIB_SHA256 when that is set), then the local build. */
function candidates(attempts: string[]): { info: LibraryInfo; file?: VerifiedFile }[] {
  const found: { info: LibraryInfo; file?: VerifiedFile }[] = [];
  const fromEnv = envVar("GUARDMAP_LIB");
  const sha256 = envVar("GUARDMAP_LIB_SHA256");
  if (fromEnv !== undefined && sha256 !== undefined) {
    let state: string;
    let file: VerifiedFile | undefined;
    try {
      ({ state, file } = openVerified(fromEnv, sha256));
    } catch (error) {
      state = error instanceof Error ? error.message : String(error);
    }
    if (file !== undefined) {
      found.push({ info: { path: fromEnv, source: "GUARDMAP_LIB", sha256, repaired: [] }, file });
    } else {
      attempts.push(`GUARDMAP_LIB=${fromEnv} did not verify against GUARDMAP_LIB_SHA256: ${state}`);
    }
  } else if (fromEnv !== undefined) {
    found.push({ info: { path: fromEnv, source: "GUARDMAP_LIB", repaired: [] } });
  }
  const local = localBuildPath();
  if (local !== undefined && mayExist(local)) {
    found.push({ info: { path: local, source: "local build", repaired: [] } });
  } else if (local !== undefined) {
    attempts.push(`no local build at ${local}`);
  }
  return found;
}

/** False only when the file surely does not exist (no dlopen, whose permission may be narrow). */
function mayExist(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (error) {
    return !(error instanceof Deno.errors.NotFound);
  }
}

function localBuildPath(): string | undefined {
  const root = projectRoot();
  if (root === undefined) return undefined;
  const dir = Deno.build.os === "windows" ? "bin" : "lib";
  return join(root, "zig", "zig-out", dir, libraryFileName());
}

/**
 * The prebuilt library through the verified cache; on Linux, through a memory file when the
 * cache cannot be used or its file cannot be loaded.
 */
function openPrebuilt(
  attempts: string[],
): { library: Deno.DynamicLibrary<typeof symbols>; info: LibraryInfo } | undefined {
  const { prebuilt, reason } = embeddedLibrary();
  if (prebuilt === undefined) {
    attempts.push(reason);
    return undefined;
  }
  const sha256 = prebuilt.sha256;
  let problem: string;
  try {
    const { file, ...cached } = cachedLibrary(prebuilt);
    for (const line of cached.repaired) console.warn(`guardmap: ${line}`);
    const library = openFile(file, attempts);
    const info: LibraryInfo = { source: "cache", sha256, ...cached };
    if (library !== undefined) return { library, info };
    problem = `${cached.path} verified but did not load`;
  } catch (error) {
    if (!(error instanceof CacheUnavailable)) {
      // A damaged embedded module, say: the error says what to do; nothing else to try here.
      attempts.push(error instanceof Error ? error.message : String(error));
      return undefined;
    }
    problem = error.message;
  }
  if (Deno.build.os !== "linux") {
    attempts.push(problem);
    return undefined;
  }
  try {
    const file = memoryFile(prebuilt, cachedFileName(prebuilt));
    const library = openFile(file, attempts);
    const info: LibraryInfo = {
      path: file.path,
      source: "memory file",
      sha256,
      repaired: [],
      note: problem,
      decoded: file.decoded,
    };
    if (library !== undefined) return { library, info };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    attempts.push(`${problem}; loading it from a memory file failed too: ${message}`);
  }
  return undefined;
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
  return localBuildPath();
}
