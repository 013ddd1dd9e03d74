/**
 * What the rows of bad_input.ts are made of: the row type, the scratch file, and helpers that
 * build rows (the same bad values for every numeric argument, wrong types). Not a script
 * (runners skip `_` files).
 *
 * @module
 */
import { join } from "node:path";
import { MappedFile, MapPool } from "../../mod.ts";

/** What a row's process gets. */
export interface CaseContext {
  /** Scratch directory of this row. */
  dir: string;
  /** A file of FILE_BYTES pattern bytes in `dir`. */
  file: string;
}

/** One row of the table. */
export interface BadCase {
  /** Unique id (also what `--case` takes). */
  id: string;
  /** The call, as the table shows it. */
  call: string;
  /** The item of issue 10 it comes from, if any. */
  issue?: number;
  /** `typed`: must throw a typed error; `typed-or-works`: or succeed correctly; `works`: succeed. */
  expect: "typed" | "typed-or-works" | "works";
  /** Groups of words; the message must contain one word of each group (case-insensitive). */
  mentions: string[][];
  /** How long the row's process may take; default 8000 ms. */
  timeoutMs?: number;
  /** The call. */
  run: (context: CaseContext) => unknown;
}

/** Size of the scratch file: 2 MiB, so that pool reads of 1 MiB or more fit. */
export const FILE_BYTES = 2 * 1024 * 1024;

/** The byte at offset `i` of the scratch file. */
export const fileByte = (i: number): number => (i * 13 + 5) & 0xff;

export const POSITION = [["position"]];
export const sh = (command: string, ...args: string[]) => {
  const result = new Deno.Command(command, { args }).outputSync();
  if (!result.success) throw new Error(`${command} ${args.join(" ")} failed`);
};
export const fifo = (dir: string) => {
  // Not named "fifo": the message quotes the path, which must not count as naming the kind.
  const path = join(dir, "special");
  sh("mkfifo", path);
  return path;
};
export const mappingsOf = (path: string) =>
  Deno.readTextFileSync("/proc/self/maps").split("\n").filter((line) => line.includes(path))
    .length;
export const openMap = (context: CaseContext) => MappedFile.open(context.file, { mode: "r+" });
const pools: MapPool[] = [];
export async function poolFile(context: CaseContext) {
  const pool = new MapPool({ workers: 1, startTimeoutMs: 3000 });
  pools.push(pool);
  return await pool.open(context.file, { mode: "r+" });
}

/** Closes the pools the rows started (a pool left running at exit may leave a /dev/shm file). */
export async function closePools(): Promise<void> {
  await Promise.allSettled(pools.map((pool) => pool.close()));
}

/** The same bad values for every numeric argument. */
export const BAD_NUMBERS: [string, unknown][] = [
  ["a numeric string", "8"],
  ["negative", -1],
  ["NaN", NaN],
  ["a bigint", 8n],
  ["huge (2^60)", 2 ** 60],
  ["fractional", 1.5],
];

/** Rows for one numeric argument of one method, for every value of BAD_NUMBERS. */
export function numberRows(
  method: string,
  argument: string,
  call: (context: CaseContext, value: never) => unknown,
  options: { allowBigint?: boolean; mentions?: string[][] } = {},
): BadCase[] {
  const values = BAD_NUMBERS.filter(([label]) => !(options.allowBigint && label === "a bigint"));
  return values.map(([label, value]) => ({
    id: `${method}.${argument}=${label.replaceAll(" ", "_")}`,
    call: `${method}: ${argument} ${label}`,
    expect: "typed" as const,
    mentions: options.mentions ?? [[argument]],
    run: (context: CaseContext) => call(context, value as never),
  }));
}

/** A row where an argument has the wrong type altogether. */
export function wrongType(
  method: string,
  argument: string,
  label: string,
  run: (context: CaseContext) => unknown,
  mentions: string[][] = [[argument]],
): BadCase {
  return {
    id: `${method}.${argument}=${label.replaceAll(" ", "_")}`,
    call: `${method}: ${argument} ${label}`,
    expect: "typed",
    mentions,
    run,
  };
}

/** Calls `write` with an ArrayBuffer: a TypeError naming it, or a real write of every byte. */
export function writeArrayBuffer(map: { write(source: never, position: number): unknown }) {
  const buffer = new Uint8Array([9, 8, 7, 6]).buffer;
  return map.write(buffer as never, 0);
}
