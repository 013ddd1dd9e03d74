/**
 * Argument parsing shared by the commands: `node:util` `parseArgs` in strict mode, every
 * problem turned into a {@linkcode UsageError} (one line, exit code 2).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseSize, UsageError } from "./units.ts";

/** One option: a boolean flag or a string value. */
export interface OptionSpec {
  /** `"boolean"` for a flag, `"string"` for an option with a value. */
  type: "boolean" | "string";
  /** A one-letter alias. */
  short?: string;
}

/** What {@linkcode parseCommand} returns. */
export interface Parsed {
  /** The options given, by long name. */
  values: Record<string, string | boolean | undefined>;
  /** The positional arguments. */
  positionals: string[];
  /** Whether `--help` or `-h` was given. */
  help: boolean;
}

/**
 * Parses `args` for `command`. Throws UsageError for an unknown option, a missing value or
 * a wrong number of positional arguments (unless `--help` was given).
 *
 * @example
 * ```ts
 * import { parseCommand } from "./args.ts";
 * const parsed = parseCommand("scan", ["disk.img", "--json"], { json: { type: "boolean" } }, ["FILE"]);
 * console.log(parsed.positionals, parsed.values.json); // [ "disk.img" ] true
 * ```
 */
export function parseCommand(
  command: string,
  args: string[],
  options: Record<string, OptionSpec>,
  positionalNames: string[],
): Parsed {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    // parseArgs explains some problems on several lines: keep the promise of one line.
    const message = error instanceof Error ? error.message : String(error);
    throw new UsageError(message.replaceAll(/\s*\n\s*/g, " "));
  }
  const help = parsed.values.help === true;
  if (!help && parsed.positionals.length !== positionalNames.length) {
    const expected = positionalNames.join(" ");
    throw new UsageError(
      `${command}: expected ${positionalNames.length} argument${
        positionalNames.length === 1 ? "" : "s"
      } (${expected}), got ${parsed.positionals.length}`,
    );
  }
  return {
    values: parsed.values as Record<string, string | boolean | undefined>,
    positionals: parsed.positionals,
    help,
  };
}

/** The byte count of option `name`, or `fallback` when it was not given. */
export function sizeOption(parsed: Parsed, name: string, fallback: number): number {
  const value = parsed.values[name];
  return typeof value === "string" ? parseSize(value, `--${name}`) : fallback;
}

/**
 * The range `[offset, offset + length)` of a file of `size` bytes that `--offset` and
 * `--length` select (default: all of it). Throws UsageError when it reaches past the end.
 */
export function rangeOptions(parsed: Parsed, size: number): { offset: number; length: number } {
  const offset = sizeOption(parsed, "offset", 0);
  if (offset > size) {
    throw new UsageError(`--offset ${offset} is past the end of the file (${size} bytes)`);
  }
  const length = sizeOption(parsed, "length", size - offset);
  if (offset + length > size) {
    throw new UsageError(
      `--offset ${offset} --length ${length} reaches byte ${offset + length}, past the end of ` +
        `the file (${size} bytes)`,
    );
  }
  return { offset, length };
}

/** Lets pending signal listeners and timers run (the copy loops are otherwise synchronous). */
export function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
