/**
 * What a run of the comparison harness leaves: `RESULTS.md` and `results.svg` (formatted as the
 * project's `deno fmt` wants them), the raw samples in `bench/out/`, the targets on stderr.
 *
 * @module
 */
import { join, relative } from "node:path";
import { libraryPath } from "../../ffi/library.ts";
import { commandText, machineFacts, type StartState } from "./machine.ts";
import { type Options, ROOT } from "./options.ts";
import { clock, say } from "./progress.ts";
import {
  renderMarkdown,
  renderSvg,
  type RunInfo,
  type TargetResult,
  type WorkloadResult,
} from "./report.ts";
import type { Session } from "./session.ts";

/** The report's "Method" points. */
function method(options: Options): string[] {
  return [
    "Each workload runs its contenders interleaved in one process run: a warm-up batch of " +
    `each, then ${options.rounds} rounds (cold: ${options.coldRounds}) of one batch per ` +
    "contender, in an order shuffled anew each round (seeded, the same in every run) so that no " +
    "contender always follows the same one. A batch times many operations with `performance.now()` " +
    "(`time.perf_counter_ns()` in Python, garbage collector off); the per-operation time of a " +
    "round is the batch's time divided by its operations.",
    "Reported per contender: the median over the rounds of the per-operation time; the ratio " +
    "is the baseline's median divided by the contender's. Baseline: node:fs (`readSync(fd, buf, " +
    "0, n, position)`, a pread; `writeSync` + `fsyncSync` for writes; pread chunks + the same " +
    "sum loop for the reduction).",
    "Same file and same offsets for every contender: the offsets are precomputed from a seeded " +
    "xorshift32; numpy reads them from a file the harness writes. All reads land in buffers " +
    "allocated and touched before timing (except numpy's `np.array`, which allocates, as it " +
    "does in real use). Every contender's bytes are checked against the file's known contents " +
    "before timing, the large reads after every batch, and every sum exactly.",
    "numpy runs in a Python subprocess (bench/numpy_memmap.py) that the harness drives one " +
    "batch at a time, so its batches take their turn in the same rounds; its process starts " +
    "without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE.",
    "MapPool: one worker process (`new MapPool({ workers: 1 })`, default 4 MiB staging), the " +
    "file opened once and prefaulted in the worker; each read is `await file.read(...)`.",
    "The memcpy limit: the library's `gm_memcpy` (a plain memcpy, single thread) between two " +
    "anonymous buffers of the sequential read's size, both touched before timing.",
  ];
}

/** What the report says about the cold workload's cache control. */
function coldState(results: readonly WorkloadResult[]): string {
  const cold = results.find((result) => result.id === "sequential-cold");
  if (cold === undefined) return "not run (--no-cold or --only)";
  if (cold.skipped !== undefined) return `not run: ${cold.skipped}`;
  return "`sync; echo 1 > /proc/sys/vm/drop_caches` worked (run as root); it was " +
    "done before every cold operation";
}

/** The report's "Cache state" points. */
function cacheFacts(results: readonly WorkloadResult[]): string[] {
  return [
    "Hot: before each hot workload the data file is read once from start to end; every map " +
    "(in-process, the MapPool worker's, numpy's) had its pages touched once before timing.",
    "CPU caches: all contenders of a round read the same offsets, so before each batch of " +
    "random reads the harness writes through a 1 GiB buffer (and the Python process a 64 MiB " +
    "one on its own core): no batch finds data, page-table lines or TLB entries another " +
    "batch loaded. (A 64 MiB sweep, twice the reported L3, was not enough here: see Where " +
    "the time goes.)",
    "Page tables: before that sweep, each random batch's pages are read once (a byte a page, " +
    "outside the batch's ranges where the page leaves a line free) through the map its " +
    "contender reads through (the session's, the MapPool worker's, numpy's), and the " +
    "sequential reads' targets likewise, so that every contender meets page-table entries with " +
    "their accessed bits set. " +
    "This VM's DAMON monitor clears those bits, and the contender that set them again paid for " +
    "the others of its round (bench/compare/page_touch.ts).",
    `Cold (sequential read only): ${coldState(results)}.`,
  ];
}

/** The report's header: when, how, on what. */
export async function runInfo(
  session: Session,
  results: readonly WorkloadResult[],
  started: { date: Date; milliseconds: number; state: StartState },
): Promise<RunInfo> {
  const { options, numpyInfo } = session;
  const seconds = (performance.now() - started.milliseconds) / 1000;
  const gitHead = await commandText("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"]);
  const gitDirty = await commandText("git", ["-C", ROOT, "status", "--porcelain"]);
  return {
    date: started.date.toISOString().replace(/\.\d+Z$/, "Z"),
    command: ["deno task compare", ...Deno.args].join(" "),
    seconds,
    quick: options.quick,
    machine: await machineFacts(session.dir, started.state),
    software: [
      `Deno ${Deno.version.deno} (V8 ${Deno.version.v8}), ${Deno.build.target}`,
      numpyInfo
        ? `numpy ${numpyInfo.numpy} on Python ${numpyInfo.python}; SIMD found: ${
          numpyInfo.simd.join(" ")
        }`
        : "numpy: not run (--no-numpy)",
      `libguardmap: ${relative(ROOT, libraryPath() ?? "?")} (tools/dev builds it ` +
      "ReleaseSafe); source tree at " +
      `${gitHead ?? "?"}${gitDirty ? " with uncommitted changes" : ""}`,
    ],
    cache: cacheFacts(results),
    method: method(options),
  };
}

/** Writes RESULTS.md and results.svg into `out` (then `deno fmt`s them) and the raw JSON. */
export async function writeReports(
  out: string,
  run: RunInfo,
  results: readonly WorkloadResult[],
  targets: readonly TargetResult[],
): Promise<void> {
  let analysis: string | undefined;
  try {
    analysis = Deno.readTextFileSync(join(ROOT, "bench", "where_the_time_goes.md"));
  } catch {
    analysis = undefined;
  }
  const chartFile = "results.svg";
  const markdown = renderMarkdown(run, results, targets, analysis, chartFile);
  Deno.writeTextFileSync(join(out, "RESULTS.md"), markdown);
  Deno.writeTextFileSync(join(out, chartFile), renderSvg(run, results));
  // `deno fmt` formats Markdown and SVG too: leave the reports as the project's check wants
  // them.
  await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", join(out, "RESULTS.md"), join(out, chartFile)],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  const rawDir = join(ROOT, "bench", "out");
  Deno.mkdirSync(rawDir, { recursive: true });
  const rawPath = join(rawDir, `compare-${run.date.replace(/[:]/g, "")}.json`);
  Deno.writeTextFileSync(rawPath, JSON.stringify({ run, targets, results }, null, 2) + "\n");
  say(`wrote ${join(out, "RESULTS.md")}, ${join(out, chartFile)} and ${rawPath}`);
  for (const target of targets) {
    say(
      `target ${target.met === undefined ? "?" : target.met ? "met" : "NOT met"}: ` +
        `${target.target}: ${target.measured}`,
    );
  }
  say(`done in ${clock(run.seconds)}`);
}
