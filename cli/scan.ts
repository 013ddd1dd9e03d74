/**
 * `guardmap scan FILE`: finds every unreadable range of a file, page by page, without copying
 * the readable bytes anywhere (the pages are faulted in with `prefault`).
 *
 * @module
 */
import { MappedIOError } from "../mod.ts";
import { parseCommand, rangeOptions, sizeOption } from "./args.ts";
import { appendBlock, type Block, formatMapfile, writeFileAtomic } from "./mapfile.ts";
import { Progress } from "./progress.ts";
import { openSource, pageEnd, type Source, WINDOW_BYTES } from "./source.ts";
import { formatBytes, UsageError } from "./units.ts";

/** The help text of `scan`. */
export const SCAN_HELP = `Usage: guardmap scan FILE [options]

Reads FILE (or a range of it) through guarded copies and reports every unreadable range, to the
page (4 KiB), merged into ranges. Prints a GNU ddrescue mapfile (+ readable, - unreadable,
? outside the range) or, with --json, a JSON report.

Options:
  --offset N      first byte to scan (default 0)
  --length N      bytes to scan (default: to the end of the file)
  --block SIZE    bytes faulted in per call (default 4MiB, at most 64MiB)
  --isolated      read in a MapPool worker process (needs --allow-run)
  --json          print JSON instead of a mapfile
  -o, --output F  write the report to F (atomically) instead of standard output
  -h, --help      show this help

Numbers accept units: k, M, G, T are decimal (1k = 1000), Ki, Mi, Gi, Ti binary (1Ki = 1024),
s is a 512-byte sector, 0x... is hexadecimal; a trailing B is allowed (4KiB, 1GB).

Exit status: 0 every byte was readable, 1 unreadable ranges were found, 2 usage error,
3 another failure (the message says which).
`;

/** An unreadable range found by a scan. */
export interface BadRange {
  /** File offset of the first unreadable byte. */
  offset: number;
  /** Length in bytes. */
  length: number;
  /** The error code, such as `"EIO"`, or `"truncated"` when the file shrank under the scan. */
  error: string;
}

/** Appends `[offset, offset + length)` to `ranges`, merging it into an adjacent last range. */
export function addBadRange(ranges: BadRange[], offset: number, length: number, error: string) {
  const last = ranges.at(-1);
  if (last !== undefined && last.offset + last.length === offset && last.error === error) {
    last.length += length;
  } else {
    ranges.push({ offset, length, error });
  }
}

/**
 * Faults in `[start, end)` of `source` `block` bytes at a time and returns the unreadable
 * ranges. `onProgress` is called after each step with the bytes done and the ranges so far.
 */
export async function findBadRanges(
  source: Source,
  start: number,
  end: number,
  block: number,
  onProgress: (done: number, bad: BadRange[]) => void,
): Promise<BadRange[]> {
  const ranges: BadRange[] = [];
  let position = start;
  while (position < end) {
    const length = Math.min(block, end - position);
    try {
      await source.touch(position, length);
      position += length;
    } catch (error) {
      if (!(error instanceof MappedIOError)) throw error;
      const failed = Math.max(position, error.fileOffset);
      if (error.reason === "truncated") {
        // The file shrank: nothing from here on exists any more.
        addBadRange(ranges, failed, end - failed, "truncated");
        break;
      }
      const next = Math.min(end, pageEnd(failed));
      addBadRange(ranges, failed, next - failed, error.code);
      position = next;
    }
    onProgress(position - start, ranges);
  }
  return ranges;
}

/** The mapfile blocks for a scan of `[offset, offset + length)` of a file of `size` bytes. */
export function scanBlocks(size: number, offset: number, length: number, bad: BadRange[]) {
  const blocks: Block[] = [];
  appendBlock(blocks, 0, offset, "?");
  let position = offset;
  for (const range of bad) {
    appendBlock(blocks, position, range.offset - position, "+");
    appendBlock(blocks, range.offset, range.length, "-");
    position = range.offset + range.length;
  }
  appendBlock(blocks, position, offset + length - position, "+");
  appendBlock(blocks, offset + length, size - offset - length, "?");
  return blocks;
}

/**
 * Runs `guardmap scan` with `args` (the words after `scan`); returns the exit status.
 *
 * @example
 * ```ts
 * import { scan } from "./scan.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array(8192));
 * console.log(await scan([path, "--json", "--output", path + ".json"])); // 0
 * ```
 */
export async function scan(args: string[]): Promise<number> {
  const parsed = parseCommand("scan", args, {
    offset: { type: "string" },
    length: { type: "string" },
    block: { type: "string" },
    isolated: { type: "boolean" },
    json: { type: "boolean" },
    output: { type: "string", short: "o" },
  }, ["FILE"]);
  if (parsed.help) {
    console.log(SCAN_HELP);
    return 0;
  }
  const block = sizeOption(parsed, "block", 4 * 2 ** 20);
  if (block <= 0 || block > WINDOW_BYTES) {
    throw new UsageError(`--block must be between 1 byte and 64MiB, got ${block}`);
  }
  const path = parsed.positionals[0];
  const started = new Date();
  const clock = performance.now();
  await using source = await openSource(path, { isolated: parsed.values.isolated === true });
  const { offset, length } = rangeOptions(parsed, source.size);
  const progress = new Progress("scan", length);
  const bad = await findBadRanges(
    source,
    offset,
    offset + length,
    block,
    (done, ranges) => progress.update(done, ranges.length),
  );
  progress.done();
  const seconds = (performance.now() - clock) / 1000;
  const badBytes = bad.reduce((sum, range) => sum + range.length, 0);
  const report = parsed.values.json === true
    ? JSON.stringify(
      { path, size: source.size, offset, length, badBytes, badRanges: bad, seconds },
      null,
      2,
    ) + "\n"
    : formatMapfile({
      currentPos: offset + length,
      currentStatus: "+",
      currentPass: 1,
      blocks: scanBlocks(source.size, offset, length, bad),
    }, { commandLine: `guardmap scan ${args.join(" ")}`, started });
  if (typeof parsed.values.output === "string") {
    writeFileAtomic(parsed.values.output, report);
  } else {
    await writeAll(Deno.stdout, report);
  }
  console.error(
    `scan: ${path}: ${bad.length} unreadable range${bad.length === 1 ? "" : "s"} ` +
      `(${formatBytes(badBytes)}) in ${formatBytes(length)}, ${seconds.toFixed(2)} s, ` +
      `${formatBytes(length / Math.max(seconds, 1e-9))}/s`,
  );
  return bad.length === 0 ? 0 : 1;
}

/** Writes all of `text` to `stream` (stdout may take it in pieces). */
export async function writeAll(
  stream: { write(bytes: Uint8Array): Promise<number> },
  text: string,
): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  let written = 0;
  while (written < bytes.length) written += await stream.write(bytes.subarray(written));
}
