/**
 * The state of one fuzz run (tests/fuzz_test.ts): the generator, the model of the kernel, the
 * files and maps of the current epoch, the step counter, the operation counts of the summary
 * line and the trace of the last steps. The steps (tests/fuzz/steps_*.ts), the fault injection
 * (faults.ts), the checks and the runner all act on one `Fuzzer`.
 *
 * @module
 */
import type { FaultFs } from "../fuse/fault_fs.ts";
import { Kernel } from "./kernel.ts";
import type { FileModel, MapModel } from "./model.ts";
import type { Rng } from "./rng.ts";

/** The two tests: truncation and growth of local files, or faultfs's faults. */
export type Part = "truncation" | "faultfs";

/** Steps the trace keeps for a failure message. */
const TRACE_KEPT = 40;

/** What a run is: which test, its generator, the mount (faultfs only), its length. */
export interface FuzzerOptions {
  part: Part;
  rng: Rng;
  fs: FaultFs | undefined;
  seed: number;
  /** Steps in the whole run. */
  steps: number;
  /** Print every step as it runs. */
  tracing: boolean;
}

/** One run's state. */
export class Fuzzer {
  readonly kernel = new Kernel();
  readonly trace: string[] = [];
  readonly part: Part;
  readonly rng: Rng;
  readonly fs: FaultFs | undefined;
  readonly seed: number;
  readonly steps: number;
  readonly tracing: boolean;
  /** Where the files' bytes are: a temporary directory, or faultfs's backing directory. */
  readonly dir: string;
  files: FileModel[] = [];
  maps: MapModel[] = [];
  /** A few closed maps, for calls after close. */
  closedMaps: MapModel[] = [];
  step = 0;
  epoch = 0;
  nextMapId = 1;
  /** faultfs's WRITE count before the first epoch (the warm-up wrote nothing dirty). */
  writesBefore = 0;
  /** /proc/vmstat drop_pagecache when the test started. */
  drops = 0;
  abandoned = 0;
  readonly #counts = new Map<string, number>();

  constructor(options: FuzzerOptions) {
    this.part = options.part;
    this.rng = options.rng;
    this.fs = options.fs;
    this.seed = options.seed;
    this.steps = options.steps;
    this.tracing = options.tracing;
    this.dir = options.fs === undefined
      ? Deno.makeTempDirSync({ prefix: "guardmap-fuzz-" })
      : options.fs.backingPath;
  }

  get fuse(): boolean {
    return this.fs !== undefined;
  }

  /** The summary line's counts: every step and outcome, by name. */
  summary(): string {
    return [...this.#counts].sort(([a], [b]) => a.localeCompare(b))
      .map(([name, count]) => `${name} ${count}`).join(", ");
  }

  count(name: string): void {
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + 1);
  }

  log(line: string): void {
    const entry = `#${this.step} ${line}`;
    this.trace.push(entry);
    if (this.trace.length > TRACE_KEPT) this.trace.shift();
    if (this.tracing) console.log(entry);
  }
}

/** Writes all of `bytes` at the file's position. */
export function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  let done = 0;
  // Each write moves at least one byte or throws: bounded by the length.
  while (done < bytes.length) done += file.writeSync(bytes.subarray(done));
}
