/**
 * The comparison harness's command line and the sizes it implies: a full run, or `--quick`
 * (a 256 MiB file and fewer operations).
 *
 * @module
 */
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The project root (the harness writes its reports under `bench/`, reads git from here). */
export const ROOT: string = fileURLToPath(new URL("../..", import.meta.url));
/** Bytes in a KiB. */
export const KIB = 2 ** 10;
/** Bytes in a MiB. */
export const MIB = 2 ** 20;
/** Bytes in a GiB. */
export const GIB = 2 ** 30;

/** The harness's settings, from the command line. */
export interface Options {
  /** Scaled-down sizes and counts. */
  quick: boolean;
  /** Timed rounds per workload. */
  rounds: number;
  /** Rounds of the cold workload (each operation there reads the whole cold file from disk). */
  coldRounds: number;
  /** Where RESULTS.md and results.svg go. */
  out: string;
  /** Workload ids to run; all when undefined. */
  only: Set<string> | undefined;
  /** Whether to run the numpy contenders. */
  numpy: boolean;
  /** Whether to run the cold-cache workload. */
  cold: boolean;
  /** Size of the data file. */
  fileBytes: number;
  /** Size of one sequential read (and of the cold file). */
  sequentialBytes: number;
}

/** `quick` in a `--quick` run, `full` otherwise: how a workload sizes its own counts. */
export function scaled<T>(options: Options, quick: T, full: T): T {
  return options.quick ? quick : full;
}

const OPTIONS_WITH_VALUE = ["--rounds", "--only", "--out"];
const KNOWN_OPTIONS = new Set([...OPTIONS_WITH_VALUE, "--quick", "--no-numpy", "--no-cold"]);

/** The value of `--name VALUE` or `--name=VALUE`, if given. */
function optionValue(args: readonly string[], name: string): string | undefined {
  const index = args.findIndex((arg) => arg === name || arg.startsWith(`${name}=`));
  if (index < 0) return undefined;
  const arg = args[index];
  return arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : args[index + 1];
}

/**
 * Parses the command line (see `bench/compare.ts`); `workloadIds` are the ids `--only`
 * accepts, in the order they run.
 */
export function parseOptions(args: readonly string[], workloadIds: readonly string[]): Options {
  const quick = args.includes("--quick");
  for (let i = 0; i < args.length; i++) {
    const name = args[i].split("=")[0];
    if (!KNOWN_OPTIONS.has(name)) {
      throw new TypeError(`unknown option ${args[i]} (see bench/compare.ts)`);
    }
    if (!args[i].includes("=") && OPTIONS_WITH_VALUE.includes(name)) i++;
  }
  const rounds = Number(optionValue(args, "--rounds") ?? (quick ? 5 : 7));
  if (!Number.isSafeInteger(rounds) || rounds < 1 || rounds > 100) {
    throw new RangeError(`--rounds must be a whole number from 1 to 100`);
  }
  const only = optionValue(args, "--only");
  const onlySet = only === undefined ? undefined : new Set(only.split(","));
  for (const id of onlySet ?? []) {
    if (!workloadIds.includes(id)) {
      throw new TypeError(`unknown workload ${id}; one of ${workloadIds.join(", ")}`);
    }
  }
  return {
    quick,
    rounds,
    coldRounds: Math.min(rounds, 5),
    out: resolve(optionValue(args, "--out") ?? join(ROOT, "bench")),
    only: onlySet,
    numpy: !args.includes("--no-numpy"),
    cold: !args.includes("--no-cold"),
    fileBytes: quick ? 256 * MIB : GIB,
    sequentialBytes: quick ? 64 * MIB : 256 * MIB,
  };
}
