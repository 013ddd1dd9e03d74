/**
 * Numbers with units for the command line, and byte counts for people.
 *
 * Suffixes follow ddrescue: `k`/`K`, `M`, `G`, `T`, `P` are decimal (powers of 1000), `Ki`,
 * `Mi`, `Gi`, `Ti`, `Pi` are binary (powers of 1024); a trailing `B` is allowed (`4KiB`, `1MB`).
 * `s` counts 512-byte sectors. A `0x` prefix reads hexadecimal, as in ddrescue's mapfiles.
 *
 * @module
 */

/** A bad command-line argument: the CLI prints the message on one line and exits with 2. */
export class UsageError extends Error {
  /** Creates the error; `message` names the argument and what is wrong with it. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const MULTIPLIERS: Record<string, number> = {
  "": 1,
  s: 512,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
};

/**
 * Parses a byte count such as `4096`, `4KiB`, `1G`, `1.5Mi` or `0x1000` into a safe integer.
 * Throws {@linkcode UsageError} naming `option` when it is not one.
 *
 * @example
 * ```ts
 * import { parseSize } from "./units.ts";
 * console.log(parseSize("4KiB", "--block"), parseSize("1G", "--length")); // 4096 1000000000
 * ```
 */
export function parseSize(text: string, option: string): number {
  const hex = /^0x([0-9a-fA-F]+)$/.exec(text);
  if (hex !== null) return checked(Number.parseInt(hex[1], 16), text, option);
  const match = /^(\d+(?:\.\d+)?)\s*([kKMGTP]i?|s)?B?$/.exec(text);
  if (match === null) {
    throw new UsageError(
      `${option}: "${text}" is not a byte count (examples: 4096, 4KiB, 64MiB, 1G, 0x1000)`,
    );
  }
  const value = Number(match[1]) * MULTIPLIERS[match[2] ?? ""];
  if (!Number.isInteger(value)) {
    throw new UsageError(`${option}: "${text}" is not a whole number of bytes`);
  }
  return checked(value, text, option);
}

function checked(value: number, text: string, option: string): number {
  if (!Number.isSafeInteger(value)) {
    throw new UsageError(`${option}: "${text}" is too large (at most 2^53 - 1 bytes)`);
  }
  return value;
}

/**
 * Formats a byte count with binary units for people: `1.50 MiB`.
 *
 * @example
 * ```ts
 * import { formatBytes } from "./units.ts";
 * console.log(formatBytes(1536)); // "1.50 KiB"
 * ```
 */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(2)} ${units[unit]}`;
}

/**
 * Formats seconds as `1h02m`, `3m05s` or `12s`.
 *
 * @example
 * ```ts
 * import { formatDuration } from "./units.ts";
 * console.log(formatDuration(185)); // "3m05s"
 * ```
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const total = Math.max(0, Math.round(seconds));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = total % 60;
  if (hours > 0) return `${hours}h${String(minutes).padStart(2, "0")}m`;
  if (minutes > 0) return `${minutes}m${String(rest).padStart(2, "0")}s`;
  return `${rest}s`;
}
