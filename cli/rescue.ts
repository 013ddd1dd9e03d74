/**
 * `guardmap rescue SOURCE DEST`: copies every readable byte of SOURCE to DEST and records what
 * could not be read in a ddrescue mapfile. A second run with the same map reads only what the
 * map does not mark finished (`+`), so good bytes are never read or written twice.
 *
 * @module
 */
import { MappedIOError } from "../mod.ts";
import { parseCommand, sizeOption, yieldToEvents } from "./args.ts";
import {
  type Block,
  formatMapfile,
  type Mapfile,
  parseMapfile,
  setStatus,
  writeFileAtomic,
} from "./mapfile.ts";
import { Progress } from "./progress.ts";
import { openSource, pageEnd, type Source, WINDOW_BYTES } from "./source.ts";
import { formatBytes, UsageError } from "./units.ts";

/** The help text of `rescue`. */
export const RESCUE_HELP = `Usage: guardmap rescue SOURCE DEST [options]

Copies every readable byte of SOURCE to DEST through guarded copies. Unreadable ranges (to the
page, 4 KiB) are zero in DEST (written as zeros where DEST existed before) and are marked bad
("-") in the map, a GNU ddrescue mapfile. If SOURCE is truncated during the run, everything past
its new end that is not rescued yet is marked bad and the run stops; DEST is not written there.
Run the same command again to retry only what is not finished: bytes already rescued are
never read or written again. Ctrl-C saves the map and stops; the next run resumes there.
When this run creates DEST, blocks of zeros are not written: DEST stays sparse where SOURCE is
zero.

Options:
  -m, --map FILE    the mapfile (default DEST.map); read if it exists, always written
  -r, --retries N   extra passes over the bad ranges after the first (default 0)
  --block SIZE      bytes copied per read (default 256KiB, at most 64MiB)
  -h, --help        show this help

Numbers accept units (4KiB, 1MiB = 2^20, 1M = 10^6, 0x1000).
Exit status: 0 everything rescued, 1 bad ranges remain (see the map), 2 usage error,
3 another failure, 130 interrupted (map saved).
`;

const SAVE_EVERY_MS = 30_000;
/**
 * DEST is written back in the background every this many bytes (`fdatasync` on Deno's blocking
 * pool while the copy goes on), so the `fsync` before a map write finds little left to write:
 * on a 512 MiB rescue over faultfs it took the final sync from about 220 ms to under 20.
 */
const WRITE_BACK_EVERY_BYTES = 32 * 2 ** 20;
const YIELD_EVERY_MS = 50;

interface Rescue {
  source: Source;
  dest: Deno.FsFile;
  map: Mapfile;
  mapPath: string;
  /**
   * Whether every byte of DEST this run has not written is zero, so that zero blocks can be
   * skipped: only when this run created DEST. A DEST that existed (a disk, an earlier image, the
   * DEST of an interrupted run) may hold other bytes wherever the map is not `+`.
   */
  sparse: boolean;
  /** Where SOURCE ended when a read found it truncated: nothing past it can be read any more. */
  sourceEnd: number | undefined;
  buffer: Uint8Array;
  progress: Progress;
  /** Bytes of this run's work done. */
  done: number;
  interrupted: boolean;
  lastSave: number;
  /** `state.done` when the last background write-back started. */
  writtenBackAt: number;
  /** The background write-back running, if any. */
  writingBack: Promise<void> | undefined;
  lastYield: number;
  commandLine: string;
  started: Date;
}

/** The map to start from: `mapPath` if it exists (checked against `size`), else all `?`. */
function loadMap(mapPath: string, size: number): { map: Mapfile; existed: boolean } {
  let text: string;
  try {
    text = Deno.readTextFileSync(mapPath);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    const blocks: Block[] = size === 0 ? [] : [{ pos: 0, size, status: "?" }];
    return { map: { currentPos: 0, currentStatus: "?", currentPass: 1, blocks }, existed: false };
  }
  const map = parseMapfile(text, mapPath);
  const last = map.blocks.at(-1);
  const end = last === undefined ? 0 : last.pos + last.size;
  if (end > size) {
    throw new UsageError(
      `the map ${mapPath} covers ${end} bytes but SOURCE has ${size}: is it the map of ` +
        `another file? Use another --map`,
    );
  }
  // ddrescue may write maps that stop short of the end: the rest is untried.
  if (end < size) map.blocks.push({ pos: end, size: size - end, status: "?" });
  return { map, existed: true };
}

/** Starts a background write-back of DEST when enough was written since the last one. */
function writeBack(state: Rescue): void {
  if (state.writingBack !== undefined) return;
  if (state.done - state.writtenBackAt < WRITE_BACK_EVERY_BYTES) return;
  state.writtenBackAt = state.done;
  // A failure here is found again by the fsync before the next map write, which throws it.
  state.writingBack = state.dest.syncData().catch(() => {}).finally(() => {
    state.writingBack = undefined;
  });
}

async function saveMap(state: Rescue, status: string): Promise<void> {
  await state.writingBack;
  // DEST first: a map must never call bytes finished that are not yet on the disk.
  state.dest.syncSync();
  state.map.currentStatus = status;
  writeFileAtomic(
    state.mapPath,
    formatMapfile(state.map, { commandLine: state.commandLine, started: state.started }),
  );
  state.lastSave = performance.now();
}

function isZero(bytes: Uint8Array): boolean {
  const words = bytes.length % 8 === 0 && bytes.byteOffset % 8 === 0
    ? new BigUint64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8)
    : bytes;
  for (let i = 0; i < words.length; i++) if (words[i] != 0) return false;
  return true;
}

/**
 * Writes synchronously. Tried and measured slower: two buffers with the write of one awaited
 * while the next is read (0.80 s against 0.60 s for 512 MiB over faultfs, best of 7), as every
 * chunk then waits for a turn of the event loop.
 */
function writeDest(state: Rescue, bytes: Uint8Array, position: number): void {
  if (bytes.length === 0 || (state.sparse && isZero(bytes))) return;
  state.dest.seekSync(position, Deno.SeekMode.Start);
  let written = 0;
  while (written < bytes.length) written += state.dest.writeSync(bytes.subarray(written));
}

/** Copies up to `length` bytes at `position`; returns the position to go on from. */
async function copyChunk(state: Rescue, position: number, length: number): Promise<number> {
  const chunk = state.buffer.subarray(0, length);
  try {
    await state.source.read(chunk, position);
  } catch (error) {
    if (!(error instanceof MappedIOError)) throw error;
    const failed = Math.max(position, error.fileOffset);
    writeDest(state, chunk.subarray(0, failed - position), position);
    setStatus(state.map.blocks, position, failed - position, "+");
    if (error.reason === "truncated") {
      // Nothing past SOURCE's new end can be read: what is not rescued yet is bad, and the
      // copy stops there.
      state.sourceEnd = failed;
      markTailBad(state, failed);
      return position + length;
    }
    // An I/O error costs one page.
    const badEnd = Math.min(position + length, pageEnd(failed));
    markBad(state, failed, badEnd - failed);
    return badEnd;
  }
  writeDest(state, chunk, position);
  setStatus(state.map.blocks, position, length, "+");
  return position + length;
}

/**
 * Marks `[position, position + length)` unreadable. Where DEST may hold other bytes (it existed),
 * the range is written with zeros, so that DEST never shows stale bytes where SOURCE had none.
 */
function markBad(state: Rescue, position: number, length: number): void {
  setStatus(state.map.blocks, position, length, "-");
  if (state.sparse) return;
  const zeros = new Uint8Array(Math.min(length, state.buffer.length));
  for (let at = position; at < position + length; at += zeros.length) {
    writeDest(state, zeros.subarray(0, Math.min(zeros.length, position + length - at)), at);
  }
}

/**
 * After SOURCE was found truncated at `end`: every block past it that is not rescued (`+`, from
 * this run or an earlier one) becomes bad in the map. DEST is not written there: zero-filling
 * what could be most of a disk would take long and could not be interrupted, so in a DEST that
 * existed those bytes keep what they held, and the map says they are bad.
 */
function markTailBad(state: Rescue, end: number): void {
  const pieces = state.map.blocks
    .filter((block) => block.status !== "+" && block.pos + block.size > end)
    .map((block) => [Math.max(block.pos, end), block.pos + block.size]);
  for (const [from, to] of pieces) setStatus(state.map.blocks, from, to - from, "-");
}

/** Copies `[start, end)`; stops early (returning false) when interrupted. */
async function copyRange(state: Rescue, start: number, end: number): Promise<boolean> {
  let position = start;
  while (position < end) {
    const length = Math.min(state.buffer.length, end - position);
    const next = await copyChunk(state, position, length);
    state.done += next - position;
    position = next;
    state.map.currentPos = position;
    state.progress.update(state.done, badRanges(state.map));
    const now = performance.now();
    if (now - state.lastYield >= YIELD_EVERY_MS) {
      state.lastYield = now;
      await yieldToEvents(); // lets the SIGINT listener run
    }
    if (state.interrupted) return false;
    if (state.sourceEnd !== undefined) return true;
    writeBack(state);
    if (now - state.lastSave >= SAVE_EVERY_MS) await saveMap(state, "?");
  }
  return true;
}

function badRanges(map: Mapfile): number {
  return map.blocks.filter((block) => block.status === "-").length;
}

function pending(map: Mapfile, statuses: string): Array<[number, number]> {
  return map.blocks.filter((block) => statuses.includes(block.status))
    .map((block) => [block.pos, block.pos + block.size]);
}

/** The first pass over everything unfinished, then `retries` passes over the bad ranges. */
async function runPasses(state: Rescue, retries: number): Promise<boolean> {
  for (let pass = 0; pass <= retries; pass++) {
    const ranges = pending(state.map, pass === 0 ? "?*/-" : "-");
    if (ranges.length === 0) break;
    state.map.currentPass = pass + 1;
    for (const [start, end] of ranges) {
      if (!(await copyRange(state, start, end))) return false;
      if (state.sourceEnd !== undefined) return true;
    }
  }
  return true;
}

function bytesWith(map: Mapfile, status: string): number {
  return map.blocks.filter((block) => block.status === status)
    .reduce((total, block) => total + block.size, 0);
}

/** Opens DEST for writing and makes it at least `size` bytes long. */
function openDest(path: string, size: number): { dest: Deno.FsFile; created: boolean } {
  let created = false;
  try {
    Deno.statSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    created = true;
  }
  const dest = Deno.openSync(path, { write: true, create: true });
  if (dest.statSync().isFile) {
    if (dest.statSync().size < size) dest.truncateSync(size);
    return { dest, created };
  }
  // A device (a disk to rescue onto) cannot be resized: it must hold SOURCE already.
  const capacity = dest.seekSync(0, Deno.SeekMode.End);
  if (capacity < size) {
    dest.close();
    throw new UsageError(`DEST ${path} holds ${capacity} bytes, SOURCE needs ${size}`);
  }
  return { dest, created };
}

function parseRescue(args: string[]) {
  const parsed = parseCommand("rescue", args, {
    map: { type: "string", short: "m" },
    retries: { type: "string", short: "r" },
    block: { type: "string" },
  }, ["SOURCE", "DEST"]);
  const retries = Number(parsed.values.retries ?? "0");
  if (!Number.isSafeInteger(retries) || retries < 0) {
    throw new UsageError(`--retries must be a whole number >= 0, got "${parsed.values.retries}"`);
  }
  const block = sizeOption(parsed, "block", 256 * 1024);
  if (block <= 0 || block > WINDOW_BYTES) {
    throw new UsageError(`--block must be between 1 byte and 64MiB, got ${block}`);
  }
  const [source, dest] = parsed.positionals;
  const mapPath = typeof parsed.values.map === "string" ? parsed.values.map : `${dest}.map`;
  return { help: parsed.help, retries, block, source, dest, mapPath };
}

/**
 * Runs `guardmap rescue` with `args`; returns the exit status.
 *
 * @example
 * ```ts
 * import { rescue } from "./rescue.ts";
 * const source = await Deno.makeTempFile();
 * await Deno.writeFile(source, new Uint8Array(8192).fill(7));
 * console.log(await rescue([source, source + ".copy"])); // 0
 * ```
 */
export async function rescue(args: string[]): Promise<number> {
  const options = parseRescue(args);
  if (options.help) {
    console.log(RESCUE_HELP);
    return 0;
  }
  await using source = await openSource(options.source);
  const { map, existed } = loadMap(options.mapPath, source.size);
  const { dest, created } = openDest(options.dest, source.size);
  if (created && existed && bytesWith(map, "+") > 0) {
    dest.close();
    Deno.removeSync(options.dest);
    throw new UsageError(
      `${options.dest} did not exist, but the map ${options.mapPath} says ` +
        `${bytesWith(map, "+")} bytes were rescued into it; give the DEST that map belongs ` +
        "to, or remove the map to start over",
    );
  }
  using _dest = dest;
  const todo = bytesWith(map, "?") + bytesWith(map, "*") + bytesWith(map, "/") +
    bytesWith(map, "-");
  const state: Rescue = {
    source,
    dest,
    map,
    mapPath: options.mapPath,
    sparse: created,
    sourceEnd: undefined,
    buffer: new Uint8Array(options.block),
    progress: new Progress("rescue", todo),
    done: 0,
    interrupted: false,
    lastSave: performance.now(),
    writtenBackAt: 0,
    writingBack: undefined,
    lastYield: performance.now(),
    commandLine: `guardmap rescue ${args.join(" ")}`,
    started: new Date(),
  };
  const onInterrupt = () => state.interrupted = true;
  Deno.addSignalListener("SIGINT", onInterrupt);
  let finished: boolean;
  try {
    finished = await runPasses(state, options.retries);
  } catch (error) {
    // Whatever stopped the copy, the progress made so far is kept.
    await saveMap(state, "?").catch(() => {});
    throw error;
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
    state.progress.done();
  }
  return await report(state, options.source, options.dest, finished);
}

async function report(
  state: Rescue,
  sourcePath: string,
  destPath: string,
  finished: boolean,
): Promise<number> {
  const bad = bytesWith(state.map, "-");
  const rescued = bytesWith(state.map, "+");
  await saveMap(state, finished ? "+" : "?");
  const ranges = badRanges(state.map);
  const summary = `${formatBytes(rescued)} of ${formatBytes(state.source.size)} rescued, ` +
    `${ranges} bad range${ranges === 1 ? "" : "s"} (${formatBytes(bad)}); map ${state.mapPath}`;
  if (state.sourceEnd !== undefined) {
    console.error(
      `guardmap rescue: ${sourcePath} was truncated to ${state.sourceEnd} bytes during the ` +
        "rescue; the bytes past it are marked bad.",
    );
  }
  if (!finished) {
    console.error(
      `guardmap rescue: interrupted at byte ${state.map.currentPos}: ${summary} saved. Run the ` +
        `same command again to resume.`,
    );
    return 130;
  }
  console.error(`rescue: ${sourcePath} -> ${destPath}: ${summary}`);
  return bad === 0 && bytesWith(state.map, "?") === 0 ? 0 : 1;
}
