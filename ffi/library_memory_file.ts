/**
 * Linux only: the prebuilt library from an anonymous memory file, for when no cache file can be
 * written or read (no `--allow-env` to find it, no `--allow-write`, a read-only file system).
 *
 * - One memory file, and so one loaded copy, per process: the first load (main thread or Web
 *   Worker) creates `memfd:libguardmap-<sha256>.so` and keeps its descriptor for the life of the
 *   process; every later load (another Web Worker) finds it in `/proc/self/fd`, verifies it, and
 *   loads it through a descriptor of its own, which the dynamic loader recognises (same inode) as
 *   the library it already has. A copy per worker would put one more fault handler in the chain
 *   and one more handle table (invisible to the other copies' reapers) per worker, never freed.
 * - The memory file is sealed once written (`F_SEAL_WRITE`, `F_SEAL_SHRINK`, `F_SEAL_GROW`), then
 *   verified against the package's SHA-256 through the descriptor `dlopen` gets: nothing can
 *   change it after the check. A memory file found without these seals is not used.
 * - Finding or creating it happens under an exclusive `flock` of the process's own
 *   `/proc/self/fd` directory (one inode per process, so other processes never wait), so two
 *   Web Workers loading at once do not both create one.
 *
 * It needs libc through FFI: `--allow-ffi`, or with a scoped grant libc's absolute path (e.g.
 * `/lib/x86_64-linux-gnu/libc.so.6`) and `/proc/self/fd`.
 *
 * @module
 */
import { decodePrebuilt, sha256Hex } from "./library_prebuilt.ts";
import type { Prebuilt } from "./prebuilt_type.ts";
import type { VerifiedFile } from "./library_cache.ts";

const libcSymbols = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  memfd_create: { parameters: ["buffer", "u32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  // getdents64 through syscall(2): its own wrapper is younger (glibc 2.30) than memfd_create's.
  syscall: { parameters: ["i64", "i32", "buffer", "usize"], result: "i64" },
} as const satisfies Deno.ForeignLibraryInterface;

type Libc = Deno.DynamicLibrary<typeof libcSymbols>["symbols"];

const O_RDONLY = 0;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;
const MFD_CLOEXEC = 1; // Not inherited by child processes.
const MFD_ALLOW_SEALING = 2;
const F_ADD_SEALS = 1033;
const F_GET_SEALS = 1034;
const F_SEAL_SHRINK = 2;
const F_SEAL_GROW = 4;
const F_SEAL_WRITE = 8;
const SEALS = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
const LOCK_EX = 2;
/** getdents64's system call number: x86_64's, else the generic one (aarch64, riscv64). */
const SYS_GETDENTS64 = Deno.build.arch === "x86_64" ? 217n : 61n;
/** Offsets in `struct linux_dirent64`: d_ino (8 bytes), d_off (8), d_reclen (2), d_type (1). */
const DIRENT_RECLEN_OFFSET = 16;
const DIRENT_NAME_OFFSET = 19;
/** More descriptors than a process may have open (the kernel's nr_open defaults to 1 << 20). */
const DESCRIPTORS_MAX = 1 << 20;

/** A memory file holding the library, verified and open for `dlopen`. */
export interface MemoryFile extends VerifiedFile {
  /** Whether this load decoded the embedded library (false: another load's file was reused). */
  decoded: boolean;
}

/**
 * The process's memory file holding `prebuilt` (named `name`), created and sealed if this is
 * the process's first load of it, and verified: load its `loadPath`, then `close()` it.
 *
 * @example
 * ```ts ignore
 * import { memoryFile } from "./library_memory_file.ts";
 * import { embeddedLibrary } from "./library_prebuilt.ts";
 * const { prebuilt } = embeddedLibrary();
 * if (prebuilt !== undefined) {
 *   const file = memoryFile(prebuilt, "libguardmap-demo.so");
 *   console.log(file.path); // /proc/self/fd/12
 *   file.close();
 * }
 * ```
 */
export function memoryFile(prebuilt: Prebuilt, name: string): MemoryFile {
  const library = Deno.dlopen(libcPath(), libcSymbols);
  const libc = library.symbols;
  try {
    return underLock(libc, (directory) => {
      const found = findMemoryFile(libc, directory, name, prebuilt);
      const file = found ??
        createMemoryFile(libc, name, prebuilt);
      return {
        ...file,
        decoded: found === undefined,
        close(): void {
          file.close();
          library.close();
        },
      };
    });
  } catch (error) {
    library.close();
    throw error;
  }
}

/**
 * Runs `body` holding an exclusive `flock` of this process's `/proc/self/fd` directory, and
 * gives it that directory's descriptor.
 */
function underLock<T>(libc: Libc, body: (directory: number) => T): T {
  const lock = libc.open(cString("/proc/self/fd"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (lock < 0) throw new Error("could not open /proc/self/fd to look for the memory file");
  try {
    // Waits only for another thread of this process between these same lines.
    if (libc.flock(lock, LOCK_EX) !== 0) throw new Error("could not lock /proc/self/fd");
    return body(lock);
  } finally {
    libc.close(lock); // Releases the lock.
  }
}

/**
 * libc as `Deno.dlopen` may open it: by its name under an unscoped `--allow-ffi`; under a scoped
 * one by an absolute path the grant names (Deno resolves a bare name against the working
 * directory then). Throws, saying what to grant, when neither is granted.
 */
function libcPath(): string {
  if (Deno.permissions.querySync({ name: "ffi" }).state === "granted") return "libc.so.6";
  const arch = Deno.build.arch;
  const paths = [
    `/lib/${arch}-linux-gnu/libc.so.6`,
    `/usr/lib/${arch}-linux-gnu/libc.so.6`,
    "/lib64/libc.so.6",
    "/usr/lib64/libc.so.6",
    "/lib/libc.so.6",
    "/usr/lib/libc.so.6",
  ];
  const granted = paths.find((path) =>
    Deno.permissions.querySync({ name: "ffi", path }).state === "granted"
  );
  if (granted !== undefined) return granted;
  throw new Error(
    "a memory file needs libc through FFI: grant --allow-ffi, or add libc's absolute path " +
      `(${paths[0]} or another of ${paths.slice(1).join(", ")}) and /proc/self/fd ` +
      "to --allow-ffi",
  );
}

function cString(text: string): Uint8Array {
  return new TextEncoder().encode(`${text}\0`);
}

/** A memory file this process made earlier, found among its descriptors and verified. */
function findMemoryFile(
  libc: Libc,
  directory: number,
  name: string,
  prebuilt: Prebuilt,
): VerifiedFile | undefined {
  const target = `/memfd:${name} (deleted)`;
  for (const fd of descriptors(libc, directory)) {
    if (readLink(libc, `/proc/self/fd/${fd}`) !== target) continue;
    // A descriptor of our own on the same file: the one found may be closed by its owner (it
    // never is), this one stays open until dlopen has it.
    const own = libc.open(cString(`/proc/self/fd/${fd}`), O_RDONLY | O_CLOEXEC);
    if (own < 0) continue;
    if (verifySealed(libc, own, prebuilt) === "ok") {
      return {
        path: `/proc/self/fd/${fd}`,
        loadPath: `/proc/self/fd/${own}`,
        close: () => libc.close(own),
      };
    }
    libc.close(own);
  }
  return undefined;
}

/** The numbers of this process's open descriptors, listed through `directory` (/proc/self/fd). */
function descriptors(libc: Libc, directory: number): number[] {
  const found: number[] = [];
  const buffer = new Uint8Array(1 << 16);
  const view = new DataView(buffer.buffer);
  // Bounded: every entry is listed once, and there are at most DESCRIPTORS_MAX.
  while (found.length < DESCRIPTORS_MAX) {
    const length = Number(
      libc.syscall(SYS_GETDENTS64, directory, buffer, BigInt(buffer.byteLength)),
    );
    if (length <= 0) break;
    // Bounded: each record is at least DIRENT_NAME_OFFSET + 1 bytes long.
    for (let at = 0; at < length;) {
      const end = buffer.indexOf(0, at + DIRENT_NAME_OFFSET);
      const name = new TextDecoder().decode(buffer.subarray(at + DIRENT_NAME_OFFSET, end));
      if (/^\d+$/.test(name)) found.push(Number(name));
      at += Math.max(view.getUint16(at + DIRENT_RECLEN_OFFSET, true), DIRENT_NAME_OFFSET + 1);
    }
  }
  return found;
}

function readLink(libc: Libc, path: string): string | undefined {
  const buffer = new Uint8Array(512);
  const length = Number(libc.readlink(cString(path), buffer, BigInt(buffer.byteLength)));
  if (length < 0 || length >= buffer.byteLength) return undefined;
  return new TextDecoder().decode(buffer.subarray(0, length));
}

/** "ok" when `fd` is sealed against any change and holds `prebuilt`'s bytes (by SHA-256). */
function verifySealed(libc: Libc, fd: number, prebuilt: Prebuilt): string {
  const seals = libc.fcntl(fd, F_GET_SEALS, 0);
  if (seals < 0 || (seals & SEALS) !== SEALS) return `not sealed (seals ${seals})`;
  // One byte more than the library has: a longer file does not verify.
  const bytes = new Uint8Array(prebuilt.byteLength + 1);
  let filled = 0;
  // Bounded: the file cannot grow (F_SEAL_GROW), the buffer is finite, and each round reads at
  // least one byte or ends.
  while (filled < bytes.byteLength) {
    const rest = bytes.subarray(filled);
    const count = Number(libc.pread(fd, rest, BigInt(rest.byteLength), BigInt(filled)));
    if (count < 0) return `unreadable after ${filled} bytes`;
    if (count === 0) break;
    filled += count;
  }
  const actual = sha256Hex(bytes.subarray(0, filled));
  if (actual === prebuilt.sha256) return "ok";
  return `its ${filled} bytes have SHA-256 ${actual}, not ${prebuilt.sha256}`;
}

/** A new memory file holding `prebuilt` decoded, sealed, verified, and kept open for the process's life. */
function createMemoryFile(libc: Libc, name: string, prebuilt: Prebuilt): VerifiedFile {
  const bytes = decodePrebuilt(prebuilt);
  const fd = libc.memfd_create(cString(name), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) throw new Error("memfd_create failed");
  let written = 0;
  // Bounded: each round writes at least one byte or throws.
  while (written < bytes.byteLength) {
    const rest = bytes.subarray(written);
    const count = Number(libc.write(fd, rest, BigInt(rest.byteLength)));
    if (count <= 0) {
      libc.close(fd);
      throw new Error(`write to the memory file failed after ${written} bytes`);
    }
    written += count;
  }
  const sealed = libc.fcntl(fd, F_ADD_SEALS, SEALS) === 0 ? verifySealed(libc, fd, prebuilt) : "";
  if (sealed !== "ok") {
    libc.close(fd);
    throw new Error(
      `the memory file could not be sealed and verified (${sealed || "F_ADD_SEALS"})`,
    );
  }
  const path = `/proc/self/fd/${fd}`;
  // Never closed: later loads in this process (Web Workers) find it and load the same copy.
  return { path, loadPath: path, close: () => {} };
}
