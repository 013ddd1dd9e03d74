/**
 * `guardmap`: scan, rescue, checksum and dump files on failing storage.
 *
 * ```sh
 * deno run --allow-ffi --allow-read --allow-write jsr:@guardmap/guardmap/cli scan disk.img
 * ```
 *
 * Every command reads through guardmap's guarded copies, so an I/O error of the storage
 * becomes a reported range or a clear refusal, never a crash. `--isolated` (scan) also needs
 * `--allow-run` and `--allow-env` for the worker processes.
 *
 * @example Run a command from code
 * ```ts
 * import { main } from "./main.ts";
 * console.log(await main(["--help"])); // 0
 * ```
 *
 * @module
 */
import { dump, DUMP_HELP } from "./dump.ts";
import { rescue, RESCUE_HELP } from "./rescue.ts";
import { scan, SCAN_HELP } from "./scan.ts";
import { sum, SUM_HELP } from "./sum.ts";
import { UsageError } from "./units.ts";

const COMMANDS: Record<string, { run: (args: string[]) => Promise<number>; help: string }> = {
  scan: { run: scan, help: SCAN_HELP },
  rescue: { run: rescue, help: RESCUE_HELP },
  sum: { run: sum, help: SUM_HELP },
  dump: { run: dump, help: DUMP_HELP },
};

/** The top-level help text. */
export const HELP = `Usage: guardmap COMMAND [options]

Reads files on failing storage without being killed by it: every byte goes through guardmap's
guarded memory-mapped copies, so an I/O error becomes a reported range, never a crash.

Commands:
  scan FILE            report the unreadable ranges (ddrescue mapfile or JSON)
  rescue SOURCE DEST   copy every readable byte, record the rest in a map; resumable
  sum FILE             sha256, xxh3 or crc32c of a range; refuses on an I/O error
  dump FILE            hex dump or typed values of a range (offsets past 4 GiB work)

Run "guardmap COMMAND --help" for a command's options.
Needs --allow-ffi --allow-read --allow-write (and --allow-run --allow-env for scan --isolated).
`;

/**
 * Runs the CLI with `args` and returns the exit status: 2 for a usage error (one line on
 * stderr), 3 for an unexpected failure, otherwise what the command returned.
 */
export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined) {
    console.error("guardmap: missing command (scan, rescue, sum or dump; see guardmap --help)");
    return 2;
  }
  if (name === "--help" || name === "-h" || name === "help") {
    console.log(HELP);
    return 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    console.error(`guardmap: unknown command "${name}" (commands: scan, rescue, sum, dump)`);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    return failure(name, error);
  }
}

function failure(name: string, error: unknown): number {
  if (error instanceof UsageError) {
    console.error(`guardmap ${name}: ${error.message} (see guardmap ${name} --help)`);
    return 2;
  }
  // A path that cannot be opened is a mistake on the command line, not a storage fault.
  if (
    error instanceof Deno.errors.NotFound || error instanceof Deno.errors.IsADirectory ||
    error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable
  ) {
    console.error(`guardmap ${name}: ${error.message}`);
    return 2;
  }
  const message = error instanceof Error ? error.message : String(error);
  console.error(`guardmap ${name}: failed: ${message.split("\n")[0]}`);
  return 3;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
