/**
 * The comparison harness's table of workloads, in the order they run. A workload is one file
 * beside this one that exports a `WorkloadEntry`, and one line here.
 *
 * @module
 */
import { POOL_SPLIT } from "./pool_split.ts";
import { RANDOM_4K, RANDOM_64, RANDOM_64K } from "./random.ts";
import { REDUCTION } from "./reduction.ts";
import type { WorkloadEntry } from "./runner.ts";
import { SEQUENTIAL_COLD } from "./sequential_cold.ts";
import { SEQUENTIAL_HOT } from "./sequential_hot.ts";
import { WRITE_WORKLOADS } from "./writes.ts";

/** Every workload, in the order they run; `--only` takes their ids. */
export const WORKLOADS: readonly WorkloadEntry[] = [
  RANDOM_64,
  RANDOM_4K,
  RANDOM_64K,
  SEQUENTIAL_HOT,
  REDUCTION,
  POOL_SPLIT,
  ...WRITE_WORKLOADS,
  SEQUENTIAL_COLD,
];
