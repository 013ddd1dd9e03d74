/**
 * Mounts faultfs (tests/fuse/faultfs.c), a passthrough FUSE file system that fails or delays
 * chosen operations on command, so tests can make the kernel raise real I/O faults on mapped
 * pages. See tests/fuse/README.md.
 *
 * ```ts
 * await using fs = await mountFaultFs();
 * Deno.writeFileSync(fs.backing("data.bin"), bytes);        // set up through the backing dir
 * using map = MappedFile.open(fs.path("data.bin"));          // map through the mount
 * await fs.fail({ operations: "read", file: "data.bin", offset: 8192, length: 4096 });
 * ```
 *
 * Every wait here has a timeout, and disposing always unmounts (lazily as a last resort) and
 * stops the daemon, also when the test failed with maps still open on the mount.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type {
  DelayRule,
  FailRule,
  FaultFs,
  FaultFsStatus,
  FaultSelector,
  MountOptions,
} from "./fault_fs_types.ts";
import { exists, findOnPath, findZig, runBounded, sleep } from "./_host.ts";

export type * from "./fault_fs_types.ts";

const CONTROL_FILE = ".faultfs-control";
const here = fileURLToPath(new URL(".", import.meta.url));
const binaryPath = join(here, "zig-out", "bin", "faultfs");
// Generous for a first build (Zig compiles its build runner), short for everything else: a
// daemon that does not answer within these times is hung, and the test must fail, not hang.
const BUILD_TIMEOUT_MS = 300_000;
const MOUNT_TIMEOUT_MS = 10_000;
const CONTROL_TIMEOUT_MS = 15_000;
const UNMOUNT_TIMEOUT_MS = 10_000;
const EXIT_TIMEOUT_MS = 5_000;
const POLL_MS = 10;

/**
 * Why FUSE tests cannot run on this machine, or `undefined` when they can: Linux, `/dev/fuse`,
 * `fusermount3` (Debian `fuse3`) and the libfuse3 headers (Debian `libfuse3-dev`).
 */
export function fuseUnavailableReason(): string | undefined {
  if (Deno.build.os !== "linux") return `FUSE tests need Linux, this is ${Deno.build.os}`;
  if (!exists("/dev/fuse")) return "/dev/fuse does not exist (no FUSE in this kernel or container)";
  if (findOnPath("fusermount3") === undefined) {
    return "fusermount3 is not on PATH (apt-get install fuse3)";
  }
  if (!exists("/usr/include/fuse3/fuse.h")) {
    return "the libfuse3 headers are missing (apt-get install libfuse3-dev)";
  }
  return undefined;
}

let build: Promise<string> | undefined;

/**
 * Builds faultfs with the project's Zig (once per process; Zig's cache makes a rebuild of an
 * unchanged source instant) and returns the binary's path.
 */
export function buildFaultFs(): Promise<string> {
  build ??= runBuild();
  return build;
}

async function runBuild(): Promise<string> {
  const zig = findZig();
  const output = await runBounded(zig, ["build", "-Doptimize=ReleaseSafe"], here, BUILD_TIMEOUT_MS);
  if (!output.success) {
    throw new Error(
      `faultfs: \`${zig} build\` in ${here} failed (${output.reason}):\n${output.text}`,
    );
  }
  if (!exists(binaryPath)) throw new Error(`faultfs: the build did not produce ${binaryPath}`);
  return binaryPath;
}

/**
 * Builds faultfs if needed and mounts it on a new temporary directory, mirroring a new
 * temporary backing directory. Throws, saying why, when FUSE is unavailable.
 */
export async function mountFaultFs(options: MountOptions = {}): Promise<FaultFs> {
  const unavailable = fuseUnavailableReason();
  if (unavailable !== undefined) throw new Error(`FUSE is unavailable: ${unavailable}`);
  const binary = await buildFaultFs();

  const root = Deno.makeTempDirSync({ prefix: "guardmap-faultfs-" });
  const mountPath = join(root, "mnt");
  const backingPath = join(root, "backing");
  const logPath = join(root, "faultfs.log");
  Deno.mkdirSync(mountPath);
  Deno.mkdirSync(backingPath);
  Deno.writeTextFileSync(logPath, "");

  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(binary, {
      args: [
        ...["--log", logPath],
        ...(options.maxReadahead === undefined
          ? []
          : ["--max-readahead", `${options.maxReadahead}`]),
        ...(options.writebackCache === true ? ["--writeback-cache", "1"] : []),
        backingPath,
        mountPath,
        ...(options.fuseOptions ?? []),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  } catch (error) {
    Deno.removeSync(root, { recursive: true });
    throw new Error(`faultfs: cannot start ${binary}`, { cause: error });
  }
  const fs = new MountedFaultFs(root, mountPath, backingPath, logPath, child);
  try {
    await fs.waitUntilMounted();
  } catch (error) {
    await fs.unmount().catch((cleanup) => console.error(`faultfs: cleanup failed: ${cleanup}`));
    throw error;
  }
  return fs;
}

class MountedFaultFs implements FaultFs {
  readonly mountPath: string;
  readonly backingPath: string;
  readonly logPath: string;
  readonly #root: string;
  readonly #child: Deno.ChildProcess;
  readonly #controlPath: string;
  #exited = false;
  #exitStatus: Deno.CommandStatus | undefined;
  #unmounting: Promise<void> | undefined;

  constructor(
    root: string,
    mountPath: string,
    backingPath: string,
    logPath: string,
    child: Deno.ChildProcess,
  ) {
    this.#root = root;
    this.mountPath = mountPath;
    this.backingPath = backingPath;
    this.logPath = logPath;
    this.#child = child;
    this.#controlPath = join(mountPath, CONTROL_FILE);
    child.status.then((status) => {
      this.#exited = true;
      this.#exitStatus = status;
    });
  }

  /** Polls until the control file answers through the mount, the daemon dies, or time is up. */
  async waitUntilMounted(): Promise<void> {
    const deadline = Date.now() + MOUNT_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.#exited) {
        throw new Error(
          `faultfs exited (code ${this.#exitStatus?.code}) before mounting ${this.mountPath}:\n` +
            this.log(),
        );
      }
      if (isMounted(this.mountPath) && exists(this.#controlPath)) return;
      await sleep(POLL_MS);
    }
    throw new Error(
      `faultfs did not mount ${this.mountPath} within ${MOUNT_TIMEOUT_MS} ms:\n${this.log()}`,
    );
  }

  path(name: string): string {
    return join(this.mountPath, name);
  }

  backing(name: string): string {
    return join(this.backingPath, name);
  }

  fail(rule: FailRule): Promise<void> {
    const errno = rule.errno ?? "EIO";
    const delay = rule.delayMs === undefined ? [] : [`delay=${rule.delayMs}`];
    return this.command(
      ["fail", ...selectorWords(rule, String(errno)), ...delay].join(" "),
    );
  }

  delay(rule: DelayRule): Promise<void> {
    return this.command(["delay", ...selectorWords(rule, String(rule.delayMs))].join(" "));
  }

  outage(): Promise<void> {
    return this.command("outage");
  }

  heal(): Promise<void> {
    return this.command("heal");
  }

  invalidate(name: string): Promise<void> {
    return this.command(`invalidate ${fileInMount(name)}`);
  }

  async command(text: string): Promise<void> {
    try {
      // One write() per call: the daemon runs the lines in order and fails the write (EINVAL)
      // at the first bad one, so a test never goes on without the fault it asked for.
      await Deno.writeTextFile(this.#controlPath, text.endsWith("\n") ? text : `${text}\n`, {
        signal: AbortSignal.timeout(CONTROL_TIMEOUT_MS),
      });
    } catch (error) {
      throw new Error(`faultfs refused or did not answer ${JSON.stringify(text)}:\n${this.log()}`, {
        cause: error,
      });
    }
  }

  async status(): Promise<FaultFsStatus> {
    const text = await Deno.readTextFile(this.#controlPath, {
      signal: AbortSignal.timeout(CONTROL_TIMEOUT_MS),
    });
    const lines = text.split("\n");
    const operations: Record<string, number> = {};
    for (const pair of (lines.find((line) => line.startsWith("ops ")) ?? "").split(" ").slice(1)) {
      const [name, count] = pair.split("=");
      operations[name] = Number(count);
    }
    return {
      outage: lines.includes("outage 1"),
      operations,
      rules: lines.filter((line) => line.startsWith("rule ")),
    };
  }

  log(): string {
    try {
      return Deno.readTextFileSync(this.logPath);
    } catch (error) {
      return `(no log: ${error})`;
    }
  }

  unmount(): Promise<void> {
    this.#unmounting ??= this.#unmount();
    return this.#unmounting;
  }

  async #unmount(): Promise<void> {
    const problems: string[] = [];
    if (isMounted(this.mountPath)) {
      // A clean unmount writes back what is dirty and fails while a file on the mount is still
      // open or mapped (EBUSY), for example after a test failed before closing its map.
      const clean = await runBounded(
        "fusermount3",
        ["-u", this.mountPath],
        here,
        UNMOUNT_TIMEOUT_MS,
      );
      if (!clean.success) {
        // Last resort: stop the daemon first (its death aborts the FUSE connection, so nothing
        // below can wait for it), then detach the mount lazily.
        this.#kill("SIGKILL");
        const lazy = await runBounded(
          "fusermount3",
          ["-u", "-z", this.mountPath],
          here,
          UNMOUNT_TIMEOUT_MS,
        );
        if (!lazy.success) {
          const umount = await runBounded(
            "umount",
            ["-l", this.mountPath],
            here,
            UNMOUNT_TIMEOUT_MS,
          );
          if (!umount.success) problems.push(`umount -l failed: ${umount.text}`);
        }
        if (!isMounted(this.mountPath)) {
          console.warn(
            `faultfs: ${this.mountPath} needed a lazy unmount (${clean.reason}: ` +
              `${clean.text.trim()})`,
          );
        }
      }
    }
    // After an unmount the daemon's loop ends by itself; give it a moment, then insist.
    if (!(await this.#waitForExit(EXIT_TIMEOUT_MS))) {
      this.#kill("SIGTERM");
      if (!(await this.#waitForExit(EXIT_TIMEOUT_MS))) {
        this.#kill("SIGKILL");
        if (!(await this.#waitForExit(EXIT_TIMEOUT_MS))) problems.push("the daemon did not die");
      }
    }
    problems.push(...this.#removeDirectories());
    if (problems.length > 0) {
      throw new Error(`faultfs: unmounting ${this.mountPath}: ${problems.join("; ")}`);
    }
  }

  #removeDirectories(): string[] {
    if (isMounted(this.mountPath)) {
      // Never recurse into a live mount: leave everything for a human to look at.
      return [`${this.mountPath} is still mounted; left ${this.#root} in place`];
    }
    try {
      Deno.removeSync(this.#root, { recursive: true });
      return [];
    } catch (error) {
      return [`cannot remove ${this.#root}: ${error}`];
    }
  }

  #kill(signal: Deno.Signal): void {
    if (this.#exited) return;
    try {
      this.#child.kill(signal);
    } catch {
      // It exited between the check and the kill.
    }
  }

  async #waitForExit(timeoutMs: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      return await Promise.race([this.#child.status.then(() => true), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.unmount();
  }

  /**
   * For `using` where `await using` is impossible: kills the daemon (which aborts the FUSE
   * connection, so the unmount cannot block on it), detaches the mount lazily and removes the
   * directories. Prefer `await using`, which unmounts cleanly and waits for the daemon.
   */
  [Symbol.dispose](): void {
    if (this.#unmounting !== undefined) return;
    this.#unmounting = Promise.resolve();
    this.#kill("SIGKILL");
    if (isMounted(this.mountPath)) {
      const lazy = new Deno.Command("fusermount3", {
        args: ["-u", "-z", this.mountPath],
        stdout: "null",
        stderr: "null",
      }).outputSync();
      if (!lazy.success) {
        new Deno.Command("umount", { args: ["-l", this.mountPath], stdout: "null", stderr: "null" })
          .outputSync();
      }
    }
    const problems = this.#removeDirectories();
    if (problems.length > 0) throw new Error(`faultfs: ${problems.join("; ")}`);
  }
}

function selectorWords(selector: FaultSelector, value: string): string[] {
  const operations = typeof selector.operations === "string"
    ? [selector.operations]
    : selector.operations;
  const words = [
    operations.join(","),
    selector.file === undefined ? "*" : fileInMount(selector.file),
    value,
  ];
  for (const key of ["offset", "length", "after", "times"] as const) {
    const number = selector[key];
    if (number === undefined) continue;
    if (!Number.isSafeInteger(number) || number < 0) {
      throw new RangeError(`faultfs: ${key} must be a non-negative integer, got ${number}`);
    }
    words.push(`${key}=${number}`);
  }
  return words;
}

/** `data.bin` and `/data.bin` both name the file in the root of the mount. */
function fileInMount(name: string): string {
  if (name.includes(" ") || name.includes("\n")) {
    throw new RangeError(`faultfs: file names with blanks are not supported: ${name}`);
  }
  return name.startsWith("/") ? name : `/${name}`;
}

/** Whether `path` is a mount point now (from /proc/self/mountinfo, field 5). */
export function isMounted(path: string): boolean {
  const lines = Deno.readTextFileSync("/proc/self/mountinfo").split("\n");
  return lines.some((line) => line.split(" ")[4] === path);
}

let skipWarned = false;

/**
 * Declares a test that needs faultfs. In CI (CI=true) it always runs, and fails if FUSE is
 * unavailable; elsewhere it is skipped on a machine without FUSE, with one line saying why.
 */
export function fuseTest(name: string, fn: () => Promise<void>): void {
  const unavailable = fuseUnavailableReason();
  const skip = unavailable !== undefined && Deno.env.get("CI") !== "true";
  if (skip && !skipWarned) {
    skipWarned = true;
    console.warn(`SKIPPED the FUSE tests: ${unavailable} (in CI these tests must run)`);
  }
  Deno.test({ name, ignore: skip, fn });
}
