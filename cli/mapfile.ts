/**
 * GNU ddrescue's mapfile format, read and written, so that `ddrescue`, `ddrescuelog` and
 * `guardmap rescue` can share a map.
 *
 * ```text
 * # Mapfile. Created by guardmap 0.1.0
 * # Command line: guardmap rescue /mnt/disk.img rescued.img
 * # Start time:   2026-12-01 12:00:00
 * # Current time: 2026-12-01 12:00:09
 * # Finished
 * # current_pos  current_status  current_pass
 * 0x00000000     +               1
 * #      pos        size  status
 * 0x00000000  0x00200000  +
 * 0x00200000  0x00003000  -
 * 0x00203000  0x00DFD000  +
 * ```
 *
 * Comment lines start with `#`. The first data line is the current position, the current
 * status and (optional) the pass; every following line is a block: position, size (both
 * hexadecimal with `0x`, or decimal) and status. Block statuses: `?` non-tried, `*`
 * non-trimmed, `/` non-scraped, `-` bad sector (tried and failed), `+` finished. The blocks
 * are sorted, do not overlap and cover the rescue domain from position 0 without gaps.
 *
 * @module
 */

/** The status of a block of a ddrescue mapfile. */
export type BlockStatus = "?" | "*" | "/" | "-" | "+";

/** One line of the block list: `[pos, pos + size)` has `status`. */
export interface Block {
  /** File offset of the block's first byte. */
  pos: number;
  /** Length in bytes, more than 0. */
  size: number;
  /** What is known about the bytes. */
  status: BlockStatus;
}

/** A parsed mapfile. */
export interface Mapfile {
  /** Where the copy was when the map was written. */
  currentPos: number;
  /** ddrescue's phase: `?` copying, `*` trimming, `/` scraping, `-` retrying, `+` finished. */
  currentStatus: string;
  /** The pass number, 1 when the map had none. */
  currentPass: number;
  /** Sorted, contiguous from 0, adjacent blocks of the same status merged. */
  blocks: Block[];
}

const STATUSES = new Set(["?", "*", "/", "-", "+"]);

/** What the `#` comment after the times says for each current status. */
const PHASES: Record<string, string> = {
  "?": "Copying non-tried blocks...",
  "*": "Trimming failed blocks...",
  "/": "Scraping failed blocks...",
  "-": "Retrying bad sectors...",
  "+": "Finished",
};

/**
 * Parses mapfile text. Throws an Error naming `path` and the line when a line is malformed,
 * blocks overlap or leave gaps.
 *
 * @example
 * ```ts
 * import { parseMapfile } from "./mapfile.ts";
 * const map = parseMapfile("0x0 + 1\n0x0 0x1000 +\n0x1000 0x1000 -\n", "disk.map");
 * console.log(map.blocks.length); // 2
 * ```
 */
export function parseMapfile(text: string, path: string): Mapfile {
  let current: { pos: number; status: string; pass: number } | undefined;
  const blocks: Block[] = [];
  const lines = text.split("\n");
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index].trim();
    if (line === "" || line.startsWith("#")) continue;
    const where = `${path}:${index + 1}`;
    const words = line.split(/\s+/);
    if (current === undefined) {
      current = {
        pos: number(words[0], where),
        status: words[1] ?? "?",
        pass: words[2] === undefined ? 1 : number(words[2], where),
      };
      continue;
    }
    if (words.length < 3 || !STATUSES.has(words[2])) {
      throw new Error(`${where}: expected "pos size status" (status one of ? * / - +): ${line}`);
    }
    const block = { pos: number(words[0], where), size: number(words[1], where) };
    const end = blocks.length === 0 ? 0 : blocks.at(-1)!.pos + blocks.at(-1)!.size;
    if (block.pos !== end || block.size <= 0) {
      throw new Error(
        `${where}: block at ${hex(block.pos)} (size ${hex(block.size)}) does not start where ` +
          `the previous one ends (${hex(end)}); the map is damaged`,
      );
    }
    appendBlock(blocks, block.pos, block.size, words[2] as BlockStatus);
  }
  if (current === undefined) throw new Error(`${path}: no current_pos line; not a mapfile`);
  return {
    currentPos: current.pos,
    currentStatus: current.status,
    currentPass: current.pass,
    blocks,
  };
}

function number(word: string | undefined, where: string): number {
  const value = word === undefined
    ? NaN
    : /^0x[0-9a-f]+$/i.test(word)
    ? Number.parseInt(word.slice(2), 16)
    : /^\d+$/.test(word)
    ? Number(word)
    : NaN;
  if (!Number.isSafeInteger(value)) throw new Error(`${where}: "${word}" is not a number`);
  return value;
}

/** Options of {@linkcode formatMapfile}. */
export interface FormatOptions {
  /** The command line to record. */
  commandLine: string;
  /** When the run started. */
  started: Date;
  /** When the map is written; default now. */
  now?: Date;
}

/**
 * Writes a map in ddrescue's format.
 *
 * @example
 * ```ts
 * import { formatMapfile } from "./mapfile.ts";
 * const text = formatMapfile(
 *   { currentPos: 0, currentStatus: "+", currentPass: 1, blocks: [{ pos: 0, size: 4096, status: "+" }] },
 *   { commandLine: "guardmap scan disk.img", started: new Date() },
 * );
 * console.log(text.split("\n").at(-2)); // "0x00000000  0x00001000  +"
 * ```
 */
export function formatMapfile(map: Mapfile, options: FormatOptions): string {
  const lines = [
    "# Mapfile. Created by guardmap 0.1.0",
    `# Command line: ${options.commandLine}`,
    `# Start time:   ${timestamp(options.started)}`,
    `# Current time: ${timestamp(options.now ?? new Date())}`,
    `# ${PHASES[map.currentStatus] ?? "Copying non-tried blocks..."}`,
    "# current_pos  current_status  current_pass",
    `${hex(map.currentPos).padEnd(13)}  ${map.currentStatus.padEnd(14)}  ${map.currentPass}`,
    "#      pos        size  status",
  ];
  for (const block of map.blocks) {
    lines.push(`${hex(block.pos)}  ${hex(block.size)}  ${block.status}`);
  }
  return lines.join("\n") + "\n";
}

/** `0x` and at least 8 upper-case hexadecimal digits, as ddrescue writes them. */
export function hex(value: number): string {
  return `0x${value.toString(16).toUpperCase().padStart(8, "0")}`;
}

function timestamp(date: Date): string {
  const pad = (value: number) => String(value).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** Appends a block at the end of `blocks`, merging it into the last one when they match. */
export function appendBlock(blocks: Block[], pos: number, size: number, status: BlockStatus): void {
  if (size <= 0) return;
  const last = blocks.at(-1);
  if (last !== undefined && last.status === status && last.pos + last.size === pos) {
    last.size += size;
  } else {
    blocks.push({ pos, size, status });
  }
}

/**
 * Sets `[pos, pos + size)` to `status` in a sorted, contiguous block list, splitting blocks
 * at the edges and merging neighbours of the same status. The range must lie inside the list.
 *
 * @example
 * ```ts
 * import { setStatus } from "./mapfile.ts";
 * const blocks = [{ pos: 0, size: 8192, status: "?" as const }];
 * setStatus(blocks, 4096, 4096, "+");
 * console.log(blocks.length); // 2
 * ```
 */
export function setStatus(blocks: Block[], pos: number, size: number, status: BlockStatus): void {
  if (size <= 0) return;
  const end = pos + size;
  const result: Block[] = [];
  let inserted = false;
  for (const block of blocks) {
    const blockEnd = block.pos + block.size;
    if (blockEnd <= pos || block.pos >= end) {
      if (!inserted && block.pos >= end) {
        appendBlock(result, pos, size, status);
        inserted = true;
      }
      appendBlock(result, block.pos, block.size, block.status);
      continue;
    }
    appendBlock(result, block.pos, Math.max(0, pos - block.pos), block.status);
    if (!inserted) {
      appendBlock(result, pos, size, status);
      inserted = true;
    }
    appendBlock(result, end, Math.max(0, blockEnd - end), block.status);
  }
  if (!inserted) appendBlock(result, pos, size, status);
  blocks.splice(0, blocks.length, ...result);
}

/**
 * Writes `text` to `path` atomically: a temporary file in the same directory, synced, then
 * renamed over `path`, so a crash or Ctrl-C leaves the old map or the new one, never half.
 *
 * @example
 * ```ts
 * import { writeFileAtomic } from "./mapfile.ts";
 * const path = await Deno.makeTempFile();
 * writeFileAtomic(path, "0x0 + 1\n");
 * ```
 */
export function writeFileAtomic(path: string, text: string): void {
  const temporary = `${path}.tmp-${Deno.pid}`;
  using file = Deno.openSync(temporary, { write: true, create: true, truncate: true });
  const bytes = new TextEncoder().encode(text);
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
  file.syncSync();
  Deno.renameSync(temporary, path);
}
