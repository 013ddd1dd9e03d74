/**
 * The verified cache of prebuilt libraries: one file per library, named by its SHA-256, in
 * `GUARDMAP_CACHE`, else the platform's cache directory (`$XDG_CACHE_HOME/guardmap` or
 * `~/.cache/guardmap` on Linux, `%LOCALAPPDATA%\guardmap` on Windows,
 * `~/Library/Caches/guardmap` on macOS).
 *
 * - A file is checked against the SHA-256 the package carries before every `dlopen`, through a
 *   descriptor that stays open until `dlopen` has loaded it: on Linux `dlopen` gets
 *   `/proc/self/fd/N` of that descriptor, so a file renamed over the path after the check is
 *   never the one loaded.
 * - It is written atomically and never replaced once it verifies: the bytes go to a temporary
 *   file of this process in the same directory, then a hard link gives it its final name, which
 *   fails if the name exists. So concurrent first loads (MapPool workers, parallel test runs)
 *   end with one complete file, and a file some process may have loaded (on Windows a loaded DLL
 *   cannot be replaced) keeps its inode and bytes.
 * - A file that does not verify (corrupt, truncated, replaced) is reported, moved aside (renamed,
 *   never rewritten in place) and written anew. It is never loaded.
 * - Where no cache can be used, Linux loads from an anonymous memory file
 *   (./library_memory_file.ts); elsewhere the error names the path and the flag to grant.
 *
 * @module
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { decodePrebuilt, sha256Hex } from "./library_prebuilt.ts";
import type { Prebuilt } from "./prebuilt_type.ts";

/** The cache cannot be used: `message` names the path and the permission or fix. */
export class CacheUnavailable extends Error {
  /** @param message What failed, where, and what to grant or set. */
  constructor(message: string) {
    super(message);
    this.name = "CacheUnavailable";
  }
}

/** The most rounds a load makes when other processes replace files under it. */
const ROUNDS_MAX = 4;

/** A cached library that verified, and what was wrong on the way there (for a warning). */
export interface CachedLibrary {
  /** The verified file's path in the cache. */
  path: string;
  /** The verified file, still open: load its `loadPath`, then close it. */
  file: VerifiedFile;
  /** Corrupt or replaced files found, moved aside and rewritten. */
  repaired: string[];
  /** Whether this process decoded the embedded copy (to write the file). */
  decoded: boolean;
}

function grantedEnv(name: string): string | undefined {
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    return undefined;
  }
  return Deno.env.get(name) || undefined;
}

/**
 * The cache directory: `GUARDMAP_CACHE`, else the platform's. Throws {@linkcode CacheUnavailable}
 * naming the variables to grant with `--allow-env` when none may be read.
 *
 * @example
 * ```ts
 * import { cacheDirectory } from "./library_cache.ts";
 * console.log(cacheDirectory()); // e.g. /home/me/.cache/guardmap
 * ```
 */
export function cacheDirectory(): string {
  const fromEnv = grantedEnv("GUARDMAP_CACHE");
  if (fromEnv !== undefined) return fromEnv;
  const os = Deno.build.os;
  const names = os === "windows"
    ? ["GUARDMAP_CACHE", "LOCALAPPDATA"]
    : os === "linux"
    ? ["GUARDMAP_CACHE", "XDG_CACHE_HOME", "HOME"]
    : ["GUARDMAP_CACHE", "HOME"];
  if (os === "windows") {
    const local = grantedEnv("LOCALAPPDATA");
    if (local !== undefined) return join(local, "guardmap");
  } else {
    const xdg = os === "linux" ? grantedEnv("XDG_CACHE_HOME") : undefined;
    if (xdg !== undefined) return join(xdg, "guardmap");
    const home = grantedEnv("HOME");
    if (home !== undefined) {
      return os === "darwin"
        ? join(home, "Library", "Caches", "guardmap")
        : join(home, ".cache", "guardmap");
    }
  }
  throw new CacheUnavailable(
    `the library cache's directory is unknown: grant --allow-env=${names.join(",")} ` +
      "(or set GUARDMAP_CACHE to a writable directory and grant --allow-env=GUARDMAP_CACHE)",
  );
}

/** The file name a library is cached under: named by its SHA-256, with its own extension. */
export function cachedFileName(prebuilt: Prebuilt): string {
  const dot = prebuilt.fileName.lastIndexOf(".");
  const stem = dot > 0 ? prebuilt.fileName.slice(0, dot) : prebuilt.fileName;
  const extension = dot > 0 ? prebuilt.fileName.slice(dot) : "";
  return `${stem}-${prebuilt.sha256}${extension}`;
}

function unavailable(path: string, flag: string, error: unknown): CacheUnavailable {
  const cause = error instanceof Error ? error.message.split("\n")[0] : String(error);
  const fix = error instanceof Deno.errors.NotCapable
    ? `grant ${flag}=${path}`
    : `make ${path} writable`;
  return new CacheUnavailable(
    `the library cache ${path} cannot be used (${cause}): ${fix}, or set GUARDMAP_CACHE to a ` +
      "writable directory (with --allow-env=GUARDMAP_CACHE), or GUARDMAP_LIB to a built library",
  );
}

/**
 * A library file that verified, still open through the descriptor its bytes were read from, so
 * that `dlopen` maps that very file and not whatever the path names by then.
 */
export interface VerifiedFile {
  /** The path it was found at (what `libraryInfo().path` reports). */
  path: string;
  /**
   * What to give `dlopen`: on Linux `/proc/self/fd/N` of the descriptor that was read (another
   * file renamed over `path` after the check cannot be loaded in its place), elsewhere `path`.
   */
  loadPath: string;
  /** Closes the descriptor; call it once `dlopen` returned (the loader keeps its own mapping). */
  close(): void;
}

/**
 * Reads `path` and compares its SHA-256 with `sha256`: `"ok"`, `"missing"`, or a sentence saying
 * what differs. Throws {@linkcode CacheUnavailable} when reading is not permitted.
 *
 * @example
 * ```ts
 * import { verifyFile } from "./library_cache.ts";
 * console.log(verifyFile("/nonexistent", "00")); // "missing"
 * ```
 */
export function verifyFile(path: string, sha256: string): "ok" | "missing" | string {
  const { state, file } = openVerified(path, sha256);
  file?.close();
  return state;
}

/**
 * {@linkcode verifyFile}, keeping the file open when it verified: `file` is then what to load
 * (its `loadPath`) and to close after loading. `inode` is the one read (null where unknown).
 *
 * @example
 * ```ts
 * import { openVerified } from "./library_cache.ts";
 * const { state, file } = openVerified("/nonexistent", "00");
 * file?.close();
 * console.log(state); // "missing"
 * ```
 */
export function openVerified(
  path: string,
  sha256: string,
): { state: string; inode: number | null; file?: VerifiedFile } {
  let fd: number;
  try {
    // node:fs gives the descriptor's number, which Deno.FsFile hides; Deno checks --allow-read.
    fd = openSync(path, "r");
  } catch (error) {
    if (isNotFound(error)) return { state: "missing", inode: null };
    if (error instanceof Deno.errors.NotCapable) throw unavailable(path, "--allow-read", error);
    const message = error instanceof Error ? error.message : String(error);
    return { state: `it cannot be opened (${message})`, inode: null };
  }
  let state: string;
  let inode: number | null = null;
  try {
    const stat = fstatSync(fd);
    inode = stat.ino;
    const bytes = readToEnd(fd, stat.size);
    const actual = sha256Hex(bytes);
    state = actual === sha256
      ? "ok"
      : `its ${bytes.byteLength} bytes have SHA-256 ${actual}, not ${sha256}`;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    state = `it cannot be read (${message})`;
  }
  if (state !== "ok") {
    closeSync(fd);
    return { state, inode };
  }
  return { state, inode, file: descriptorFile(path, fd) };
}

function descriptorFile(path: string, fd: number): VerifiedFile {
  let open = true;
  return {
    path,
    loadPath: Deno.build.os === "linux" ? `/proc/self/fd/${fd}` : path,
    close(): void {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

function isNotFound(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound ||
    (error as { code?: unknown } | null)?.code === "ENOENT";
}

/** The file's bytes, through the descriptor already open (the inode that was checked). */
function readToEnd(fd: number, sizeBytes: number): Uint8Array {
  // One more byte than the size says: a file that grew meanwhile does not verify.
  const bytes = new Uint8Array(sizeBytes + 1);
  let filled = 0;
  // Bounded: each round reads at least one byte, into a buffer of fixed size, or ends.
  while (filled < bytes.byteLength) {
    const count = readSync(fd, bytes, filled, bytes.byteLength - filled, filled);
    if (count === 0) break;
    filled += count;
  }
  return bytes.subarray(0, filled);
}

/** A name no other process or thread uses: pid, time and randomness. */
function uniqueSuffix(): string {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `${Deno.pid}-${Date.now().toString(36)}-${random[0].toString(36)}${
    random[1].toString(36)
  }`;
}

/**
 * Writes `bytes` to a temporary file in `path`'s directory and links it to `path` unless `path`
 * exists. Returns false when another process got there first.
 */
function writeOnce(path: string, bytes: Uint8Array): boolean {
  const temporary = `${path}.${uniqueSuffix()}.tmp`;
  const file = Deno.openSync(temporary, { write: true, createNew: true, mode: 0o755 });
  try {
    let written = 0;
    // Bounded: each write makes progress or throws.
    while (written < bytes.byteLength) written += file.writeSync(bytes.subarray(written));
    // No fsync: after a crash the file may be short or empty under its final name, but every
    // load verifies it first and rewrites it then. (fsync was most of a first load's cost.)
  } finally {
    file.close();
  }
  try {
    Deno.linkSync(temporary, path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return false;
    // A file system without hard links: rename, which may replace a file another process
    // wrote at the same moment (with the same bytes).
    Deno.renameSync(temporary, path);
    return true;
  } finally {
    try {
      Deno.removeSync(temporary);
    } catch {
      // Renamed away already.
    }
  }
}

/**
 * Renames a file that failed verification out of the way (never writes into it), unless the
 * name now holds another file than the one checked (`inode`): another process has repaired it
 * already, and that file may be loaded. Returns whether it moved it.
 */
function moveAside(path: string, inode: number | null): boolean {
  try {
    // node:fs, as openVerified: the same notion of an inode on every platform.
    if (inode !== null && statSync(path).ino !== inode) return false;
  } catch (error) {
    if (isNotFound(error)) return false; // Another process moved it.
    throw error;
  }
  const aside = `${path}.${uniqueSuffix()}.corrupt`;
  try {
    Deno.renameSync(path, aside);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false; // Another process moved it.
    throw error;
  }
  try {
    Deno.removeSync(aside);
  } catch {
    // Windows keeps it while some process has it open; it is never loaded under that name.
  }
  return true;
}

/**
 * The path of a verified copy of `prebuilt` in the cache, decoding and writing it when missing or
 * corrupt. Throws {@linkcode CacheUnavailable} when the cache cannot be read or written.
 *
 * @example
 * ```ts ignore
 * import { cachedLibrary } from "./library_cache.ts";
 * import { embeddedLibrary } from "./library_prebuilt.ts";
 * const { prebuilt } = embeddedLibrary();
 * if (prebuilt !== undefined) {
 *   const cached = cachedLibrary(prebuilt);
 *   console.log(cached.path);
 *   cached.file.close();
 * }
 * ```
 */
export function cachedLibrary(
  prebuilt: Prebuilt,
  directory: string = cacheDirectory(),
): CachedLibrary {
  const path = join(directory, cachedFileName(prebuilt));
  const repaired: string[] = [];
  let bytes: Uint8Array | undefined;
  for (let round = 0; round < ROUNDS_MAX; round++) {
    const { state, inode, file } = openVerified(path, prebuilt.sha256);
    if (file !== undefined) return { path, file, repaired, decoded: bytes !== undefined };
    if (state !== "missing") {
      repaired.push(`${path} did not verify (${state}); it was replaced and not loaded`);
      let moved: boolean;
      try {
        moved = moveAside(path, inode);
      } catch (error) {
        throw unavailable(directory, "--allow-write", error);
      }
      if (!moved) continue; // Replaced by another process meanwhile: check that one.
    }
    bytes ??= decodePrebuilt(prebuilt);
    try {
      Deno.mkdirSync(directory, { recursive: true });
      writeOnce(path, bytes);
    } catch (error) {
      throw unavailable(directory, "--allow-write", error);
    }
    // Written by this process or another one: verified like any other at the top.
  }
  throw new CacheUnavailable(
    `${path} did not verify after ${ROUNDS_MAX} writes (something keeps replacing it): ` +
      repaired.join("; "),
  );
}
