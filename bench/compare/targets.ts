/**
 * The targets the comparison harness judges each run on (the performance issue's numbers),
 * from the workloads' medians.
 *
 * @module
 */
import { READ_MANY_RANGES } from "./random.ts";
import {
  type ContenderResult,
  type Family,
  formatRate,
  formatRatio,
  formatTime,
  type TargetResult,
  type WorkloadResult,
} from "./report.ts";

function find(
  workloads: readonly WorkloadResult[],
  id: string,
  family: Family,
  label?: string,
): ContenderResult | undefined {
  const workload = workloads.find((w) => w.id === id && w.skipped === undefined);
  return workload?.contenders.find((c) =>
    c.family === family && (label === undefined || c.label.includes(label))
  );
}

function rate(entry: { bytesPerSecond: number | undefined } | undefined): number {
  return entry?.bytesPerSecond ?? NaN;
}

/** In-process random reads against pread: one `read` per read, or batched with `readMany`. */
function ratioTarget(
  workloads: readonly WorkloadResult[],
  id: string,
  size: string,
  wanted: number,
  family: Family = "guardmap",
): TargetResult {
  const guarded = find(workloads, id, family);
  const pread = find(workloads, id, "node");
  const how = family === "batch"
    ? ` (batched: \`readMany\`, ${READ_MANY_RANGES} reads per call)`
    : " (one `read` call per read)";
  return {
    target: `in-process guarded random ${size} read at least ${wanted}x as fast as pread${how}`,
    measured: guarded && pread
      ? `${formatRatio(guarded.ratio)} (${formatTime(guarded.median)} vs ${
        formatTime(pread.median)
      })`
      : "not measured",
    met: guarded ? guarded.ratio >= wanted : undefined,
  };
}

/** The in-process sequential read against the memcpy limit and against numpy's copies. */
function sequentialTargets(workloads: readonly WorkloadResult[]): TargetResult[] {
  const guarded = find(workloads, "sequential-hot", "guardmap");
  const limit = find(workloads, "sequential-hot", "limit");
  const numpyCopy = find(workloads, "sequential-hot", "numpy", "copyto");
  const numpyArray = find(workloads, "sequential-hot", "numpy", "np.array");
  return [{
    target: "guarded sequential read at least 0.85x the memcpy limit",
    measured: guarded && limit
      ? `${(rate(guarded) / rate(limit)).toFixed(3)}x (${formatRate(rate(guarded))} vs ${
        formatRate(rate(limit))
      })`
      : "not measured",
    met: guarded && limit ? rate(guarded) / rate(limit) >= 0.85 : undefined,
  }, {
    target: "guarded sequential read at least as fast as numpy.memmap's copy",
    measured: guarded && numpyCopy
      ? `${formatRate(rate(guarded))} vs np.copyto ${formatRate(rate(numpyCopy))}` +
        (numpyArray ? ` and np.array ${formatRate(rate(numpyArray))}` : "")
      : "not measured",
    met: guarded && numpyCopy
      ? rate(guarded) >= Math.max(rate(numpyCopy), rate(numpyArray) || 0)
      : undefined,
  }];
}

/** The MapPool's latency for a random 4 KiB read, and its sequential read against in-process. */
function poolTargets(workloads: readonly WorkloadResult[]): TargetResult[] {
  const pool4k = find(workloads, "random-4k", "pool");
  const pool = find(workloads, "sequential-hot", "pool");
  const guarded = find(workloads, "sequential-hot", "guardmap");
  return [{
    target: "MapPool random 4 KiB read: median at most 20 µs",
    measured: pool4k ? formatTime(pool4k.median) : "not measured",
    met: pool4k ? pool4k.median <= 0.020 : undefined,
  }, {
    target: "MapPool sequential read at least 0.5x the in-process guarded read",
    measured: pool && guarded
      ? `${(rate(pool) / rate(guarded)).toFixed(3)}x (${formatRate(rate(pool))} vs ${
        formatRate(rate(guarded))
      })`
      : "not measured",
    met: pool && guarded ? rate(pool) / rate(guarded) >= 0.5 : undefined,
  }];
}

/** Every target, met or not (or not measured when its workload did not run). */
export function judge(workloads: readonly WorkloadResult[]): TargetResult[] {
  return [
    ratioTarget(workloads, "random-4k", "4 KiB", 5),
    ratioTarget(workloads, "random-64", "64 B", 10),
    ratioTarget(workloads, "random-4k", "4 KiB", 5, "batch"),
    ratioTarget(workloads, "random-64", "64 B", 10, "batch"),
    ...sequentialTargets(workloads),
    ...poolTargets(workloads),
  ];
}
