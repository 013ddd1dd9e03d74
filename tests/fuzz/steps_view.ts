/**
 * The fuzz test's zero-copy view step: reads and writes through `unsafeView()`, unguarded on a
 * plain map, salvaged on a salvage map.
 *
 * @module
 */
import assert from "node:assert/strict";
import { compare, pageState } from "./checks.ts";
import { store, touched } from "./copy.ts";
import type { Fuzzer } from "./fuzzer.ts";
import { type MapModel, PAGE, type PagePlan } from "./model.ts";
import { read } from "./steps_copy.ts";

/**
 * Reads or writes through `unsafeView()`. Unguarded: on a map without salvage only pages the
 * model says are readable whatever is cached (a wrong model would kill the process: the test
 * fails loudly rather than silently). On a salvage map, one page at a time, any page: a lost
 * page turns into zeros and is counted, which says whether a "maybe" page was cached.
 */
export function viewAccess(fuzzer: Fuzzer, map: MapModel, write: boolean): void {
  const { rng, kernel } = fuzzer;
  const file = map.file;
  const start = map.offset + rng.int(map.length);
  const page = file.pageOf(start);
  const pageEnd = map.salvage ? file.pageStart(page) + PAGE : file.pageStart(page) + 2 * PAGE;
  const end = Math.min(map.end, pageEnd, start + rng.range(1, map.salvage ? 64 : 6000));
  const plan = kernel.plan(map, start, end);
  if (!map.salvage && !plan.every((step) => kernel.healthy(map, step.page))) {
    fuzzer.log(`view ${map.label} [${start}, ${end}): not healthy, guarded read instead`);
    return read(fuzzer, map);
  }
  const what = `view ${write ? "write" : "read"} ${map.label} [${start}, ${end})`;
  fuzzer.log(what);
  const view = map.getView();
  assert.equal(view.length, map.length, `${what}: view length`);
  const countBefore = map.map.faults.count;
  assert.equal(countBefore, map.salvageCount, `${what}: salvaged faults before`);
  const bytes = write ? rng.bytes(end - start) : new Uint8Array(end - start);
  // Element by element, in order: the first byte touched is where a salvaged fault is seen.
  for (let i = 0; i < bytes.length; i++) {
    if (write) view[start - map.offset + i] = bytes[i];
    else bytes[i] = view[start - map.offset + i];
  }
  if (map.salvage) checkSalvage(fuzzer, map, plan[0], countBefore, start, what);
  touched(fuzzer, map, plan, plan.length);
  if (write) store(fuzzer, map, start, bytes);
  else compare(fuzzer, map, start, bytes, what);
  const faults = map.map.faults;
  assert.equal(faults.count, map.salvageCount, `${what}: faults.count`);
  assert.equal(faults.fileOffset, map.salvageFirst, `${what}: faults.fileOffset`);
}

/**
 * After a salvage map's view touched the page of `step` (first touch at `start`): whether it
 * salvaged a fault agrees with the model, and the model follows.
 */
function checkSalvage(
  fuzzer: Fuzzer,
  map: MapModel,
  step: PagePlan,
  countBefore: number,
  start: number,
  what: string,
): void {
  const file = map.file;
  const faults = map.map.faults;
  const salvaged = faults.count === countBefore + 1;
  // Salvage maps anonymous memory over the page: a FUSE file loses a VMA (closeVma). The
  // kernel did that whatever the model expected, so the model follows before it checks.
  if (salvaged) fuzzer.kernel.closeVma(file);
  assert.ok(
    salvaged ? step.touch !== "ok" : step.touch !== "must",
    `${what}: ${faults.count - countBefore} fault(s) salvaged, the model says the page ` +
      `${step.touch === "must" ? "cannot" : step.touch === "may" ? "may" : "can"} be read ` +
      `(${pageState(fuzzer, file, step.page)})`,
  );
  assert.ok(faults.count - countBefore <= 1, `${what}: more than one page salvaged`);
  if (!salvaged) return;
  fuzzer.kernel.faulted(map, step.page);
  map.salvaged.set(step.page, new Uint8Array(PAGE));
  map.salvageCount++;
  fuzzer.count("= page salvaged");
  map.salvageFirst = Math.min(map.salvageFirst ?? Infinity, start);
}
