/**
 * Small file systems for tests that need a full disk: a tmpfs or an ext4 image on a loop device,
 * mounted on a fresh directory (root only), and the commands around them. Shared by
 * open_path_test.ts and write_default_test.ts.
 *
 * @module
 */

const CI = Deno.env.get("CI") === "true";
const ROOT = Deno.uid() === 0;

/** Runs `command` and returns its stdout; throws with its stderr when it fails. */
export function run(command: string, args: string[]): string {
  const output = new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).outputSync();
  const text = new TextDecoder();
  if (!output.success) {
    throw new Error(`${command} ${args.join(" ")}: ${text.decode(output.stderr)}`);
  }
  return text.decode(output.stdout);
}

/** Free bytes of the file system holding `dir`, as root may use them (f_bfree). */
export function freeBytes(dir: string): number {
  const [free, size] = run("stat", ["-f", "--format=%f %S", dir]).trim().split(" ").map(Number);
  return free * size;
}

/** A mounted small file system; disposing unmounts it and removes its directory. */
export interface SmallFs extends Disposable {
  /** Where it is mounted. */
  dir: string;
}

/** Mounts a small file system on a fresh directory: tmpfs, or ext4 on a loop device. */
export function mountSmall(kind: "tmpfs" | "ext4", sizeBytes: number): SmallFs {
  const dir = Deno.makeTempDirSync({ prefix: "guardmap-smallfs-" });
  let image: string | undefined;
  if (kind === "tmpfs") {
    run("mount", ["-t", "tmpfs", "-o", `size=${sizeBytes}`, "tmpfs", dir]);
  } else {
    image = Deno.makeTempFileSync({ prefix: "guardmap-ext4-", suffix: ".img" });
    Deno.truncateSync(image, sizeBytes);
    run("mkfs.ext4", ["-q", "-F", image]);
    run("mount", ["-o", "loop", image, dir]);
  }
  return {
    dir,
    [Symbol.dispose]() {
      run("umount", [dir]);
      Deno.removeSync(dir);
      if (image) Deno.removeSync(image);
    },
  };
}

/** Whether `name` is a command on PATH. */
export function hasCommand(name: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${name}`] }).outputSync().success;
  } catch {
    return false;
  }
}

/** A test that needs root (mounts); outside CI it skips, saying so, when not root. */
export function mountTest(name: string, needs: string[], body: () => void | Promise<void>): void {
  const missing = needs.filter((command) => !hasCommand(command));
  const ready = ROOT && missing.length === 0;
  if (!ready && !CI) {
    console.log(`SKIPPED "${name}": needs root and ${needs.join(", ")} (missing: ${missing})`);
  }
  Deno.test({ name, ignore: !ready && !CI, fn: body });
}
