/**
 * Host helpers of the faultfs test helper (./fault_fs.ts): finding tools, running a command
 * with a time bound, waiting.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const repositoryRoot = join(fileURLToPath(new URL(".", import.meta.url)), "..", "..");

export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

export function findOnPath(name: string): string | undefined {
  for (const directory of (Deno.env.get("PATH") ?? "").split(":")) {
    if (directory !== "" && exists(join(directory, name))) return join(directory, name);
  }
  return undefined;
}

/** The project's Zig: $ZIG or $GUARDMAP_ZIG (set by tools/dev), .tools/ in the checkout, PATH. */
export function findZig(): string {
  for (const variable of ["ZIG", "GUARDMAP_ZIG"]) {
    const value = Deno.env.get(variable);
    if (value) return value;
  }
  const pinned = join(repositoryRoot, ".tools", "zig", "ziglang", "zig");
  if (exists(pinned)) return pinned;
  return findOnPath("zig") ?? "zig";
}

export interface BoundedOutput {
  success: boolean;
  reason: string;
  text: string;
}

/** Runs a command to completion or kills it after `timeoutMs`. */
export async function runBounded(
  command: string,
  args: string[],
  cwd: string,
  timeoutMs: number,
): Promise<BoundedOutput> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const output = await new Deno.Command(command, {
      args,
      cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal,
    }).output();
    const decoder = new TextDecoder();
    const text = decoder.decode(output.stdout) + decoder.decode(output.stderr);
    const reason = signal.aborted
      ? `timed out after ${timeoutMs} ms`
      : output.signal !== null
      ? `killed by ${output.signal}`
      : `exit code ${output.code}`;
    return { success: output.success && !signal.aborted, reason, text };
  } catch (error) {
    return { success: false, reason: `could not run ${command}`, text: String(error) };
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
