// Runs the command-line tool (cli/) as a subprocess, for tests/cli_test.ts and
// tests/cli_rescue_test.ts.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { FaultFs } from "../fuse/fault_fs.ts";
import { pattern, type Scratch } from "../util.ts";

/** The page size the fault ranges of these tests assume. */
export const PAGE = 4_096;
/** The CLI's entry module. */
export const MAIN = fileURLToPath(new URL("../../cli/main.ts", import.meta.url));
const decoder = new TextDecoder();

/** What a CLI run printed and how it ended. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `guardmap ARGS` in a new Deno process, stdout and stderr captured (not terminals). */
export async function cli(...args: string[]): Promise<Run> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * Starts `guardmap rescue` of faultfs's data.bin into `dest` in a new process and returns it once
 * the copy is under way: 20 reads reached the daemon (bounded at 30 s).
 */
export async function rescueUnderway(
  fs: FaultFs,
  dest: string,
  mapPath: string,
): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, "rescue", fs.path("data.bin"), dest, "--map", mapPath],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const deadline = Date.now() + 30_000;
  while ((await fs.status()).operations.read < 20) {
    assert.ok(Date.now() < deadline, "the rescue did not start reading within 30 s");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return child;
}

/** The `pos size status` lines of a mapfile, as [pos, size, status]. */
export function blocksOf(mapfile: string): Array<[number, number, string]> {
  const lines = mapfile.split("\n").filter((line) => line !== "" && !line.startsWith("#"));
  return lines.slice(1).map((line) => {
    const [pos, size, status] = line.trim().split(/\s+/);
    return [Number(pos), Number(size), status];
  });
}

/** What {@linkcode slowRescue} started. */
export interface SlowRescue {
  bytes: Uint8Array;
  dest: string;
  mapPath: string;
  child: Deno.ChildProcess;
}

/**
 * A rescue to act on while it runs: faultfs's data.bin holds 2 MiB, every read of it waits 20 ms
 * (with 4 KiB readahead the copy takes seconds), and `guardmap rescue` of it into `dir` is under
 * way.
 */
export async function slowRescue(fs: FaultFs, dir: Scratch): Promise<SlowRescue> {
  const bytes = pattern(0, 2 * 2 ** 20);
  Deno.writeFileSync(fs.backing("data.bin"), bytes);
  await fs.delay({ operations: "read", file: "data.bin", delayMs: 20 });
  const dest = dir.path("rescued.bin");
  const mapPath = dir.path("rescued.map");
  // Act once the copy is under way (reads reach the daemon), not during start-up.
  return { bytes, dest, mapPath, child: await rescueUnderway(fs, dest, mapPath) };
}
