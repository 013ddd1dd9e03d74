/**
 * Stress: guarded reads that fault (SIGBUS) all the time under V8's sampling profiler.
 *
 *   deno run -A tests/stress/profiler_storm.ts [--seconds N] [--json]
 *
 * The same child as tests/stress/signal_storm.ts (guarded reads of a file a Web Worker keeps
 * truncating), run with `--v8-flags=--prof`: V8's sampler thread sends SIGPROF to the isolate
 * threads about once a millisecond while guardmap's SIGBUS handler runs for every fault. The child
 * runs in a scratch directory that receives the profiler's logs and is removed afterwards. Passes
 * when the child exits 0, many reads faulted and the profiler logged ticks.
 *
 * @module
 */
import { main } from "./signal_storm.ts";

if (import.meta.main) await main("profiler");
