/**
 * Helpers shared by the tests: scratch directories and views of this process's descriptors and
 * mappings from /proc.
 *
 * @module
 */
import { join } from "node:path";
import { native } from "../ffi/library.ts";

/** A scratch directory removed (with everything in it) on dispose. */
export interface Scratch extends Disposable {
  readonly dir: string;
  /** A path inside the scratch directory. */
  path(name: string): string;
}

/** Creates a scratch directory for one test. */
export function scratch(): Scratch {
  const dir = Deno.makeTempDirSync({ prefix: "guardmap-test-" });
  return {
    dir,
    path: (name: string) => join(dir, name),
    [Symbol.dispose]: () => Deno.removeSync(dir, { recursive: true }),
  };
}

/** Writes `length` bytes where byte i is `(i * 7 + 3) & 0xff`. */
export function writePattern(path: string, length: number): Uint8Array {
  const bytes = pattern(0, length);
  Deno.writeFileSync(path, bytes);
  return bytes;
}

/** Creates a sparse file of `size` bytes (no blocks are written). */
export function sparseFile(path: string, size: number): void {
  Deno.writeFileSync(path, new Uint8Array(0));
  Deno.truncateSync(path, size);
}

/** The pattern bytes for file offsets `[start, start + length)`. */
export function pattern(start: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = ((start + i) * 7 + 3) & 0xff;
  return bytes;
}

/**
 * Asserts two byte arrays are equal, naming the first difference. Unlike assert.deepEqual, a
 * failure never builds a diff of the whole arrays (which for megabytes exhausts memory).
 */
export function assertBytes(actual: Uint8Array, expected: Uint8Array, what = "bytes"): void {
  if (actual.length !== expected.length) {
    throw new Error(`${what}: length ${actual.length}, expected ${expected.length}`);
  }
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) {
      throw new Error(`${what}: first difference at ${i}: ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

/** The number of open file descriptors of this process. */
export function openDescriptors(): number {
  let count = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) count++;
  return count;
}

/** The lines of /proc/self/maps that map `path`. */
export function mappingsOf(path: string): string[] {
  return Deno.readTextFileSync("/proc/self/maps").split("\n").filter((line) =>
    line.endsWith(` ${path}`) || line.endsWith(` ${path} (deleted)`)
  );
}

/** This process's virtual size in bytes (VmSize in /proc/self/status). */
export function virtualSize(): number {
  const line = Deno.readTextFileSync("/proc/self/status").split("\n")
    .find((entry) => entry.startsWith("VmSize:"));
  if (line === undefined) throw new Error("no VmSize in /proc/self/status");
  return Number(line.split(/\s+/)[1]) * 1024;
}

/** Runs a Deno script (GUARDMAP_MOD stands for the URL of mod.ts) in a child process and returns how it ended and what it printed. */
export async function runScript(
  source: string,
  permissions: string[] = ["--allow-ffi", "--allow-read", "--allow-write", "--allow-env"],
): Promise<{ code: number; signal: Deno.Signal | null; stdout: string; stderr: string }> {
  const moduleUrl = new URL("../mod.ts", import.meta.url).href;
  const script = Deno.makeTempFileSync({ prefix: "guardmap-script-", suffix: ".ts" });
  Deno.writeTextFileSync(script, source.replaceAll("GUARDMAP_MOD", moduleUrl));
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", ...permissions, script],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } finally {
    Deno.removeSync(script);
  }
  const decoder = new TextDecoder();
  return {
    code: output.code,
    signal: output.signal,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

let pageBytes: number | undefined;

/**
 * The page size the library maps with (`gm_page_size`), read at run time: aarch64 kernels run with
 * 4, 16 or 64 KiB pages, and a file cut inside a page faults only from the next page on (the rest
 * of its page reads as zeros). Tests size files and cuts in multiples of it, never 4096.
 */
export function pageSize(): number {
  pageBytes ??= native().gm_page_size();
  return pageBytes;
}

/**
 * Whether this Deno is an aarch64 program emulated by qemu-user on another CPU. qemu 7.2 shows
 * the host's /proc/cpuinfo, which then lacks the "CPU implementer" lines every aarch64 kernel
 * prints. qemu-user accepts madvise(MADV_POPULATE_READ/WRITE) and does nothing, so prefault cannot
 * see a lost page there.
 */
export function underQemuUser(): boolean {
  if (Deno.build.arch !== "aarch64" || Deno.build.os !== "linux") return false;
  return !Deno.readTextFileSync("/proc/cpuinfo").includes("CPU implementer");
}

/**
 * Registers a test that cannot run under qemu-user as ignored there, printing `reason`; elsewhere
 * `register` (Deno.test by default, or fuseTest) runs it.
 */
export function testUnlessQemu(
  name: string,
  reason: string,
  fn: () => Promise<void>,
  register: (name: string, fn: () => Promise<void>) => void = (name, fn) => Deno.test(name, fn),
): void {
  if (!underQemuUser()) {
    register(name, fn);
    return;
  }
  console.log(`SKIPPED "${name}" under qemu-user: ${reason}`);
  Deno.test({ name, ignore: true, fn });
}

/**
 * Registers a test that expects prefault to report a lost page: qemu-user accepts
 * madvise(MADV_POPULATE_READ/WRITE) and does nothing, so there it cannot hold and is ignored,
 * saying why (see {@linkcode testUnlessQemu}).
 */
export function prefaultTest(
  name: string,
  fn: () => Promise<void>,
  register?: (name: string, fn: () => Promise<void>) => void,
): void {
  const reason = "it accepts madvise(MADV_POPULATE_READ/WRITE) and does nothing, so prefault " +
    "cannot see a lost page there (it does on a Linux kernel 5.14 or later)";
  testUnlessQemu(name, reason, fn, register);
}

/**
 * The factor the run stretches fixed timeouts by: GUARDMAP_TIME_SCALE (the qemu step of
 * tools/test.sh sets it; emulation runs code several times slower), else 1.
 */
export function timeScale(): number {
  const value = Deno.env.get("GUARDMAP_TIME_SCALE");
  if (value === undefined || value === "") return 1;
  const scale = Number(value);
  if (!Number.isFinite(scale) || scale < 1) {
    throw new Error(`GUARDMAP_TIME_SCALE must be a number of at least 1, got "${value}"`);
  }
  return scale;
}

/** `ms` milliseconds stretched by {@linkcode timeScale}. */
export function scaledMs(ms: number): number {
  return Math.round(ms * timeScale());
}

/**
 * MapPool's default start (10 s) and call (30 s) time limits stretched by {@linkcode timeScale}:
 * the defaults themselves in a normal run. Under emulation a worker (a whole Deno) takes seconds
 * to start.
 */
export function poolTimeouts(): { startTimeoutMs: number; callTimeoutMs: number } {
  return { startTimeoutMs: scaledMs(10_000), callTimeoutMs: scaledMs(30_000) };
}
