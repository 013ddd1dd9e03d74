/**
 * The comparison harness: guardmap against the alternatives (pread through `node:fs`,
 * `Deno.FsFile`, numpy.memmap) and against the memory-bandwidth limit, on the same files and
 * the same seeded offsets. Writes `bench/RESULTS.md` and the chart `bench/results.svg`.
 *
 * ```sh
 * tools/dev compare            # installs numpy (pinned) and builds the library first
 * deno task compare [--quick]  # the same, once numpy is in .tools/python
 * ```
 *
 * Options: `--quick` (a 256 MiB file, fewer operations: about 15 s), `--rounds N`,
 * `--only ID,ID` (workload ids: random-64, random-4k, random-64k, sequential-hot, reduction,
 * writes, sequential-cold), `--out DIR` (default: bench/), `--no-numpy`, `--no-cold`.
 *
 * Each workload runs its contenders interleaved in one process (A B C ... C A B ...), several
 * rounds of many operations each, and reports per contender the median over the rounds of the
 * per-operation time and the ratio to the baseline. numpy runs in a Python subprocess
 * (bench/numpy_memmap.py) that the harness drives one batch at a time, so its batches take
 * their turn in the same rounds. Progress goes to stderr. The parts are in `bench/compare/`:
 * the workloads' table is `workloads.ts`, the rounds `runner.ts`.
 *
 * @module
 */
import { type Options, parseOptions } from "./compare/options.ts";
import { runInfo, writeReports } from "./compare/output.ts";
import { startState } from "./compare/machine.ts";
import { Progress, say } from "./compare/progress.ts";
import type { WorkloadResult } from "./compare/report.ts";
import { isSkipped, runWorkload, type WorkloadEntry } from "./compare/runner.ts";
import { openSession, type Session } from "./compare/session.ts";
import { judge } from "./compare/targets.ts";
import { WORKLOADS } from "./compare/workloads.ts";

/** The workloads this run does: those `--only` names (all without it) that the options allow. */
function selected(options: Options): WorkloadEntry[] {
  return WORKLOADS.filter((entry) =>
    (options.only === undefined || options.only.has(entry.id)) &&
    (entry.enabled?.(options) ?? true)
  );
}

/** The progress estimate's start: the expected seconds of each workload that will run. */
function progressFor(options: Options, entries: WorkloadEntry[]): Progress {
  return new Progress(
    new Map(entries.map((entry) => [entry.id, entry.seconds[options.quick ? 0 : 1]])),
  );
}

/** Builds and runs each workload in turn; a workload that cannot run is reported as skipped. */
async function runAll(
  session: Session,
  entries: WorkloadEntry[],
  progress: Progress,
): Promise<WorkloadResult[]> {
  const results: WorkloadResult[] = [];
  for (const entry of entries) {
    const built = await entry.build(session);
    if (isSkipped(built)) {
      say(`${entry.id} skipped: ${built.skipped}`);
      results.push(built);
    } else {
      results.push(await runWorkload(built, progress));
    }
  }
  return results;
}

async function main(): Promise<void> {
  const options = parseOptions(Deno.args, WORKLOADS.map((entry) => entry.id));
  const started = { date: new Date(), milliseconds: performance.now(), state: startState() };
  Deno.mkdirSync(options.out, { recursive: true });
  const dir = Deno.makeTempDirSync({ prefix: "guardmap-compare-" });
  const cleanups: (() => void | Promise<void>)[] = [];
  const removeDir = (): void => {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // Already gone.
    }
  };
  Deno.addSignalListener("SIGINT", () => {
    removeDir();
    Deno.exit(130);
  });
  const entries = selected(options);
  const progress = progressFor(options, entries);
  try {
    const session = await openSession(options, dir, cleanups);
    const results = await runAll(session, entries, progress);
    const targets = judge(results);
    await writeReports(options.out, await runInfo(session, results, started), results, targets);
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch {
        // Best effort: the temporary directory goes below in any case.
      }
    }
    removeDir();
  }
}

if (import.meta.main) {
  await main();
}
