/**
 * `guardmap dump FILE`: a hex dump (like `xxd`) or typed values of a range, read through a
 * guarded copy of a window mapped at the offset, so offsets past 4 GiB work.
 *
 * @module
 */
import { MappedIOError } from "../mod.ts";
import { parseCommand, rangeOptions, sizeOption } from "./args.ts";
import { writeAll } from "./scan.ts";
import { openSource, WINDOW_BYTES } from "./source.ts";
import { UsageError } from "./units.ts";

/** The help text of `dump`. */
export const DUMP_HELP = `Usage: guardmap dump FILE [options]

Prints a range of FILE as a hex dump (16 bytes a line, with the text beside it, like xxd) or as
typed values (16 bytes' worth a line). Each line starts with the file offset in hexadecimal.

Options:
  --offset N        first byte (default 0; past 4 GiB works)
  --length N        bytes to print (default 256, at most 64MiB)
  -f, --format F    hex (default), u8, i8, u16, i16, u32, i32, u64, i64, f32, f64
  --big-endian      read typed values big-endian (default little-endian)
  -h, --help        show this help

Numbers accept units (4KiB, 1MiB = 2^20, 1M = 10^6, 0x1000).
Exit status: 0 printed, 1 an I/O error (the bytes before it are printed), 2 usage error.
`;

type Reader = (view: DataView, at: number, little: boolean) => number | bigint;

const FORMATS: Record<string, { bytes: number; get: Reader }> = {
  u8: { bytes: 1, get: (view, at) => view.getUint8(at) },
  i8: { bytes: 1, get: (view, at) => view.getInt8(at) },
  u16: { bytes: 2, get: (view, at, little) => view.getUint16(at, little) },
  i16: { bytes: 2, get: (view, at, little) => view.getInt16(at, little) },
  u32: { bytes: 4, get: (view, at, little) => view.getUint32(at, little) },
  i32: { bytes: 4, get: (view, at, little) => view.getInt32(at, little) },
  u64: { bytes: 8, get: (view, at, little) => view.getBigUint64(at, little) },
  i64: { bytes: 8, get: (view, at, little) => view.getBigInt64(at, little) },
  f32: { bytes: 4, get: (view, at, little) => view.getFloat32(at, little) },
  f64: { bytes: 8, get: (view, at, little) => view.getFloat64(at, little) },
};
const LINE_BYTES = 16;

/**
 * The hex dump of `bytes` read at file offset `offset`, one line per 16 bytes.
 *
 * @example
 * ```ts
 * import { hexLines } from "./dump.ts";
 * console.log(hexLines(new TextEncoder().encode("hi!"), 0)[0]);
 * // "00000000: 6869 21                                  hi!"
 * ```
 */
export function hexLines(bytes: Uint8Array, offset: number): string[] {
  const lines: string[] = [];
  for (let start = 0; start < bytes.length; start += LINE_BYTES) {
    const line = bytes.subarray(start, start + LINE_BYTES);
    let hex = "";
    for (let i = 0; i < line.length; i++) {
      hex += line[i].toString(16).padStart(2, "0") + (i % 2 === 1 ? " " : "");
    }
    const text = Array.from(
      line,
      (byte) => byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : ".",
    )
      .join("");
    lines.push(`${address(offset + start)}: ${hex.padEnd(40)} ${text}`);
  }
  return lines;
}

/**
 * Typed values of `bytes` (read at file offset `offset`), 16 bytes' worth a line.
 *
 * @example
 * ```ts
 * import { valueLines } from "./dump.ts";
 * console.log(valueLines(new Uint8Array([1, 0, 2, 0]), 0, "u16", false)[0]); // "00000000: 1 2"
 * ```
 */
export function valueLines(
  bytes: Uint8Array,
  offset: number,
  format: string,
  bigEndian: boolean,
): string[] {
  const { bytes: size, get } = FORMATS[format];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lines: string[] = [];
  for (let start = 0; start < bytes.length; start += LINE_BYTES) {
    const values: string[] = [];
    for (let at = start; at < Math.min(start + LINE_BYTES, bytes.length); at += size) {
      values.push(String(get(view, at, !bigEndian)));
    }
    lines.push(`${address(offset + start)}: ${values.join(" ")}`);
  }
  return lines;
}

function address(offset: number): string {
  return offset.toString(16).padStart(8, "0");
}

/**
 * Runs `guardmap dump` with `args`; returns the exit status.
 *
 * @example
 * ```ts
 * import { dump } from "./dump.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array([1, 2, 3, 4]));
 * console.log(await dump([path, "--format", "u16"])); // 0
 * ```
 */
export async function dump(args: string[]): Promise<number> {
  const parsed = parseCommand("dump", args, {
    offset: { type: "string" },
    length: { type: "string" },
    format: { type: "string", short: "f" },
    "big-endian": { type: "boolean" },
  }, ["FILE"]);
  if (parsed.help) {
    console.log(DUMP_HELP);
    return 0;
  }
  const format = parsed.values.format ?? "hex";
  if (typeof format !== "string" || (format !== "hex" && FORMATS[format] === undefined)) {
    throw new UsageError(
      `--format must be hex or one of ${Object.keys(FORMATS).join(", ")}, got "${format}"`,
    );
  }
  const element = format === "hex" ? 1 : FORMATS[format].bytes;
  const path = parsed.positionals[0];
  await using source = await openSource(path);
  const offset = sizeOption(parsed, "offset", 0);
  const length = sizeOption(parsed, "length", Math.min(256, Math.max(0, source.size - offset)));
  rangeOptions(
    { ...parsed, values: { offset: String(offset), length: String(length) } },
    source.size,
  );
  if (length > WINDOW_BYTES || length % element !== 0) {
    throw new UsageError(
      `--length must be a multiple of ${element} bytes (one ${format} value) and at most 64MiB, ` +
        `got ${length}`,
    );
  }
  const bytes = new Uint8Array(length);
  let readable = length;
  let failure: MappedIOError | undefined;
  try {
    if (length > 0) await source.read(bytes, offset);
  } catch (error) {
    if (!(error instanceof MappedIOError)) throw error;
    failure = error;
    readable = error.fileOffset - offset;
    readable -= readable % element;
  }
  const shown = bytes.subarray(0, readable);
  const lines = format === "hex"
    ? hexLines(shown, offset)
    : valueLines(shown, offset, format, parsed.values["big-endian"] === true);
  await writeAll(Deno.stdout, lines.map((line) => line + "\n").join(""));
  if (failure === undefined) return 0;
  console.error(
    `guardmap dump: ${path}: cannot read byte ${failure.fileOffset} (${failure.code}); printed ` +
      `the ${readable} bytes before it`,
  );
  return 1;
}
