/**
 * The fuzz test's runner: epochs of random steps on fresh files, the audits between them, the
 * check that nothing is left behind, epochs the machine disturbed, and the report (the summary
 * line, or a failure message with the seed and the last steps).
 *
 * @module
 */
import assert from "node:assert/strict";
import { MappedFile } from "../../mod.ts";
import type { FaultFs } from "../fuse/fault_fs.ts";
import { mappingsOf, openDescriptors } from "../util.ts";
import { audit } from "./checks.ts";
import { heal } from "./faults.ts";
import { Fuzzer, type Part, writeAll } from "./fuzzer.ts";
import { EIO, ENOSPC, FileModel, PAGE } from "./model.ts";
import { Rng } from "./rng.ts";
import { randomStep } from "./steps.ts";
import { close } from "./steps_maps.ts";

/**
 * Steps between two epochs. At the end of an epoch every map is closed and the files are
 * checked and replaced. It also bounds how long a page stays dirty (an epoch takes well under
 * a second): the kernel writes dirty pages back on its own after 30 s
 * (dirty_expire_centisecs), which the FUSE model does not predict.
 */
const EPOCH_STEPS = 100;
/** Steps between two comparisons of every backing file with the model. */
const AUDIT_STEPS = 25;
/** File offset of the high, sparse region: past 4 GiB, so the high half of off_t is used. */
const HIGH_BASE = 5 * 2 ** 30;

/** One test of the fuzzer: which part, on which mount, from which seed, how long. */
export interface PartOptions {
  part: Part;
  fs: FaultFs | undefined;
  seed: number;
  steps: number;
  tracing: boolean;
}

/** Runs one part and prints its summary line; a failure names the seed and the last steps. */
export async function runPart(options: PartOptions): Promise<void> {
  const { part, seed } = options;
  // Each test has its own stream, so that one can be rerun alone with the same seed.
  const rng = new Rng(seed ^ (part === "faultfs" ? 0x9e37_79b9 : 0));
  const fuzzer = new Fuzzer({ ...options, rng });
  const started = performance.now();
  try {
    await run(fuzzer);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(
      `fuzz ${part}, seed ${seed} (rerun: GUARDMAP_FUZZ_SEED=${seed} deno test --allow-all ` +
        `tests/fuzz_test.ts), epoch ${fuzzer.epoch}, step ${fuzzer.step}: ${message}\n` +
        `${await writeBackReport(fuzzer)}last steps (seed ${seed}):\n${fuzzer.trace.join("\n")}`,
      { cause: error },
    );
  } finally {
    cleanUp(fuzzer);
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `fuzz ${part} seed ${seed}: ${fuzzer.step} steps in ${seconds} s; ${fuzzer.summary()}`,
  );
}

/**
 * For a failure message: whether faultfs served WRITE requests the model did not cause,
 * which means the kernel wrote dirty pages back on its own (see relaxDirtyLimit).
 */
async function writeBackReport(fuzzer: Fuzzer): Promise<string> {
  if (fuzzer.fs === undefined) return "";
  try {
    const served = (await fuzzer.fs.status()).operations.write - fuzzer.writesBefore;
    const caused = fuzzer.kernel.writeRequests;
    return served === caused
      ? `(faultfs served the ${caused} WRITE requests the model caused, no more)\n`
      : `NOTE: faultfs served ${served} WRITE requests, the model caused ${caused}: the ` +
        "kernel wrote dirty pages back on its own, which the model does not predict\n";
  } catch (error) {
    return `(faultfs status unavailable: ${error})\n`;
  }
}

/** Closes what a failed run left open (the test has failed already; this only tidies up). */
function cleanUp(fuzzer: Fuzzer): void {
  for (const map of fuzzer.maps) {
    try {
      map.map.close();
    } catch {
      // Reported by the failure that brought us here, if it matters.
    }
  }
  fuzzer.maps = [];
  if (!fuzzer.fuse) Deno.removeSync(fuzzer.dir, { recursive: true });
}

async function run(fuzzer: Fuzzer): Promise<void> {
  // Warm up what opens descriptors once per process (the library, faultfs's control file),
  // so that the baseline below is what every epoch must come back to.
  createFiles(fuzzer);
  const warm = MappedFile.open(fuzzer.files[0].path);
  warm.close();
  fuzzer.writesBefore = (await fuzzer.fs?.status())?.operations.write ?? 0;
  removeFiles(fuzzer);
  fuzzer.drops = pageCacheDrops();
  const descriptors = openDescriptors();
  const epochs = Math.ceil(fuzzer.steps / EPOCH_STEPS);
  for (fuzzer.epoch = 1; fuzzer.epoch <= epochs; fuzzer.epoch++) {
    createFiles(fuzzer);
    let disturbance = await runEpoch(fuzzer);
    if (disturbance === undefined) {
      try {
        await endEpoch(fuzzer, descriptors);
      } catch (error) {
        disturbance = await disturbanceOf(fuzzer);
        if (disturbance === undefined) throw error;
      }
    }
    if (disturbance !== undefined) await abandonEpoch(fuzzer, disturbance, descriptors);
  }
  // Abandoning is for the odd global sync on a busy machine, not a way to pass: most epochs
  // must have run to their end, every check made.
  assert.ok(
    fuzzer.abandoned <= epochs / 4,
    `${fuzzer.abandoned} of ${epochs} epochs were abandoned because the machine interfered`,
  );
}

/** The steps of one epoch; what disturbed it, if the machine did (then it stops early). */
async function runEpoch(fuzzer: Fuzzer): Promise<string | undefined> {
  const last = Math.min(fuzzer.steps, fuzzer.epoch * EPOCH_STEPS);
  let disturbance: string | undefined;
  while (fuzzer.step < last && disturbance === undefined) {
    fuzzer.step++;
    let failure: unknown;
    try {
      await randomStep(fuzzer);
      if (fuzzer.step % AUDIT_STEPS === 0) audit(fuzzer);
    } catch (error) {
      failure = error;
    }
    disturbance = await disturbanceOf(fuzzer);
    if (disturbance === undefined && failure !== undefined) throw failure;
  }
  return disturbance;
}

/**
 * Something outside this test changed what the FUSE model relies on: the kernel wrote dirty
 * pages back on its own (a sync(2) by another process, or background write-back: faultfs
 * served more WRITE requests than the model's events cause), or the page cache was dropped
 * (/proc/sys/vm/drop_caches by another process). Checked after every step of the faultfs
 * test. Only more WRITEs count, never fewer: a library that fails to write back what it
 * should shows as fewer, and must fail the test. (Observed on a machine where benchmarks ran
 * `sync; echo 1 > /proc/sys/vm/drop_caches` in a loop; a quiet machine never disturbs.)
 */
async function disturbanceOf(fuzzer: Fuzzer): Promise<string | undefined> {
  if (fuzzer.fs === undefined) return undefined;
  const served = (await fuzzer.fs.status()).operations.write - fuzzer.writesBefore;
  if (served > fuzzer.kernel.writeRequests) {
    return `faultfs served ${served} WRITE requests, the model caused ` +
      `${fuzzer.kernel.writeRequests}: the kernel wrote dirty pages back on its own`;
  }
  const drops = pageCacheDrops();
  if (drops !== fuzzer.drops) {
    return `the page cache was dropped (drop_caches) ${drops - fuzzer.drops} time(s)`;
  }
  return undefined;
}

/**
 * Ends an epoch the machine disturbed: the model's view of its files is stale, so no more
 * checks in it; its maps are closed and its files replaced.
 */
async function abandonEpoch(fuzzer: Fuzzer, why: string, descriptors: number): Promise<void> {
  fuzzer.abandoned++;
  console.warn(
    `fuzz ${fuzzer.part} seed ${fuzzer.seed}: epoch ${fuzzer.epoch} abandoned at step ` +
      `${fuzzer.step}: ${why}`,
  );
  fuzzer.log(`epoch ${fuzzer.epoch} abandoned: ${why}`);
  for (const map of fuzzer.maps) map.map.close();
  fuzzer.maps = [];
  fuzzer.closedMaps = [];
  await heal(fuzzer);
  assert.equal(openDescriptors(), descriptors, "descriptors were left open after close");
  removeFiles(fuzzer);
  fuzzer.writesBefore = (await fuzzer.fs!.status()).operations.write -
    fuzzer.kernel.writeRequests;
  fuzzer.drops = pageCacheDrops();
}

/** An epoch's three files, with random content and ends: low, high (past 4 GiB), small. */
function createFiles(fuzzer: Fuzzer): void {
  const rng = fuzzer.rng;
  fuzzer.kernel.rules.writeErrno = rng.chance(0.25) ? ENOSPC : EIO;
  const shapes = [
    { base: 0, span: 16 * PAGE },
    { base: HIGH_BASE, span: 16 * PAGE },
    { base: 0, span: 6 * PAGE },
  ];
  fuzzer.files = shapes.map(({ base, span }, index) => {
    const name = `e${fuzzer.epoch}-f${index}.bin`;
    const backing = `${fuzzer.dir}/${name}`;
    const path = fuzzer.fs === undefined ? backing : fuzzer.fs.path(name);
    // Mostly an end inside a page: the kernel then serves the rest of that page as zeros.
    const size = base + span - (rng.chance(0.8) ? rng.int(PAGE) : 0);
    const content = new Uint8Array(span);
    content.set(rng.bytes(size - base));
    // Written through the backing path while nothing of it is cached or mapped: the first
    // open through the mount drops whatever the kernel might remember of an older file.
    using file = Deno.openSync(backing, { create: true, write: true, truncate: true });
    file.truncateSync(size);
    file.seekSync(base, Deno.SeekMode.Start);
    writeAll(file, content.subarray(0, size - base));
    return new FileModel(name, path, backing, fuzzer.fuse, base, span, content, size);
  });
}

function removeFiles(fuzzer: Fuzzer): void {
  for (const file of fuzzer.files) Deno.removeSync(file.backing);
  fuzzer.files = [];
}

/** Closes every map, then checks the files, the mappings and the descriptors. */
async function endEpoch(fuzzer: Fuzzer, descriptors: number): Promise<void> {
  fuzzer.log(`end of epoch ${fuzzer.epoch}: close every map`);
  // Closing never fails, also while the device fails (what was not flushed may be lost).
  while (fuzzer.maps.length > 0) close(fuzzer, fuzzer.rng.pick(fuzzer.maps), false);
  if (fuzzer.fuse) await heal(fuzzer);
  audit(fuzzer);
  for (const file of fuzzer.files) {
    assert.deepEqual(mappingsOf(file.path), [], `${file.name} is still mapped after close`);
  }
  for (const map of fuzzer.closedMaps) {
    assert.equal(map.view?.length ?? 0, 0, `${map.label}: a view survived close`);
  }
  assert.equal(openDescriptors(), descriptors, "descriptors were left open after close");
  fuzzer.closedMaps = [];
  removeFiles(fuzzer);
}

/** How often the page cache was dropped through /proc/sys/vm/drop_caches (since boot). */
function pageCacheDrops(): number {
  const line = Deno.readTextFileSync("/proc/vmstat").split("\n")
    .find((entry) => entry.startsWith("drop_pagecache "));
  return line === undefined ? 0 : Number(line.split(" ")[1]);
}
