/**
 * The fuzz test's calls on a whole window or a range of it: flush (checked against the file),
 * advise, prefault, fileSize and check.
 *
 * @module
 */
import assert from "node:assert/strict";
import { pageRange, rangeOption } from "./args.ts";
import { assertFlushed } from "./checks.ts";
import { settlePrivate, touched } from "./copy.ts";
import {
  attempt,
  copyFault,
  expect,
  type FaultExpectation,
  matchFault,
  type Outcome,
  salvageFault,
  windowRange,
} from "./expect.ts";
import type { Fuzzer } from "./fuzzer.ts";
import { EIO, errnoName, type FileModel, type MapModel, type PagePlan } from "./model.ts";

export function flush(fuzzer: Fuzzer, map: MapModel): void {
  // Often one page: a write-back error is reported to the first flush of each map, whatever
  // its range, and which pages a later flush writes matters.
  const range = fuzzer.rng.chance(0.35) ? pageRange(fuzzer, map) : rangeOption(fuzzer, map);
  const what = `flush ${map.label} ${JSON.stringify(range)}`;
  fuzzer.log(what);
  const outcome = attempt(() => map.map.flush(range));
  const { position, length, valid, inside } = windowRange(map, range);
  if (map.salvage && map.salvageCount > 0) {
    // For good: writes that landed on a salvaged page never reach the file.
    expect(outcome, { kind: "fault", fault: salvageFault(fuzzer, map, "flush") }, what);
    return;
  }
  if (!valid || !inside) {
    expect(outcome, { kind: "range" }, what);
    return;
  }
  // Mode "r" maps a read-only descriptor, so the kernel drops VM_SHARED and msync does not
  // sync it; mode "c" is private. Neither writes anything back, and neither can fail.
  if (length === 0 || map.mode === "r" || map.mode === "c") {
    expect(outcome, { kind: "ok" }, what);
    return;
  }
  const from = map.offset + position;
  const to = from + length;
  const errno = flushErrno(fuzzer, map, from, to);
  if (errno === 0) {
    expect(outcome, { kind: "ok" }, what);
    assertFlushed(fuzzer, map, from, to, what);
    fuzzer.count("= flush checked against the file");
    return;
  }
  flushFailed(fuzzer, map, { errno, from, position, outcome, what });
}

/**
 * The errno a flush of `[from, to)` must report (0: none). msync(MS_SYNC) -> fuse_fsync:
 * write the range back, report the file's write-back error once per descriptor (errseq), then
 * FSYNC (which may fail on its own). A local file's flush cannot fail.
 */
function flushErrno(fuzzer: Fuzzer, map: MapModel, from: number, to: number): number {
  const file = map.file;
  if (!file.fuse) return 0;
  const pages: number[] = [];
  for (let page = file.pageOf(from); page <= file.pageOf(to - 1); page++) pages.push(page);
  fuzzer.kernel.writeBack(file, pages, true);
  const errno = fuzzer.kernel.errseqCheck(map);
  return errno === 0 ? fsync(fuzzer, file) : errno;
}

/** A flush the model says fails with `errno`: the error it must throw, then the re-dirtying. */
function flushFailed(
  fuzzer: Fuzzer,
  map: MapModel,
  failure: { errno: number; from: number; position: number; outcome: Outcome<void>; what: string },
): void {
  const { errno, from, position, outcome, what } = failure;
  fuzzer.count(`= flush fault ${errnoName(errno)}`);
  const fileSize = fuzzer.kernel.sizeKnown(map.file) ? map.file.size : undefined;
  expect(outcome, {
    kind: "fault",
    fault: {
      operation: "flush",
      code: errnoName(errno),
      fileOffset: from,
      position,
      bytesTransferred: 0,
      reason: fileSize !== undefined && fileSize <= from ? "truncated" : "io",
      fileSize,
    },
  }, what);
  // The library dirties the whole window again, not only the flushed range (see redirty).
  redirty(fuzzer, map, map.offset, map.end, what);
}

/** faultfs's answer to the FSYNC of one flush: rules are counted as faultfs counts them. */
function fsync(fuzzer: Fuzzer, file: FileModel): number {
  if (fuzzer.kernel.rules.outage) return EIO;
  let errno = 0;
  for (const rule of fuzzer.kernel.rules.fsyncs) {
    if (rule.file !== file.name || (rule.times !== 0 && rule.hits >= rule.times)) continue;
    rule.hits++;
    if (errno === 0) errno = EIO;
  }
  return errno;
}

/**
 * After a failed flush the library dirties every readable page of the map's whole window
 * again (one guarded byte read and written back per page; gm_flush in zig/src/root.zig), so a
 * later flush writes them once more. Whether a "maybe" page was readable is not known: a
 * guarded one-byte probe finds out (it succeeds exactly when the library's read did, nothing
 * having changed since). The whole window, because the error a flush reports may come from a
 * page outside its range whose write-back failed earlier (when another map was closed, say);
 * re-dirtying only the range once let a later flush report such a page saved although it was
 * not in the file (GUARDMAP_FUZZ_SEED=117, now a regression seed).
 */
function redirty(fuzzer: Fuzzer, map: MapModel, from: number, to: number, what: string): void {
  const file = map.file;
  if (!file.fuse) return;
  for (let page = file.pageOf(from); page <= file.pageOf(to - 1); page++) {
    const step = fuzzer.kernel.classify(map, page);
    if (step.touch === "must") continue;
    if (step.touch === "may") {
      const at = Math.max(from, file.pageStart(page));
      const probe = attempt(() => map.map.read(new Uint8Array(1), at - map.offset));
      const index = matchFault(fuzzer, [step], probe, `${what}, then a probe at ${at}`, (s) => {
        return copyFault(fuzzer, map, "read", at, s);
      });
      touched(fuzzer, map, [step], index);
      if (index === 1) file.dirty[page] = true;
      continue;
    }
    fuzzer.kernel.loaded(map, page);
    file.dirty[page] = true;
  }
}

const ADVICE = ["normal", "sequential", "random", "willneed", "dontneed"] as const;

export function advise(fuzzer: Fuzzer, map: MapModel): void {
  const rng = fuzzer.rng;
  const advice = rng.chance(0.05) ? rng.pick(["bogus", "DONTNEED", ""]) : rng.pick(ADVICE);
  let range = rangeOption(fuzzer, map);
  const changesVma = advice === "normal" || advice === "sequential" || advice === "random";
  const asked = windowRange(map, range);
  if (
    map.file.fuse && changesVma && asked.valid && asked.inside &&
    !(asked.position === 0 && asked.length === map.length)
  ) {
    // On part of a window these split the VMA, and msync then syncs VMA by VMA and stops at
    // the first error (observed: a later VMA's dirty pages are not written), which the FUSE
    // model does not follow. Local files (whose flushes cannot fail) take any range.
    range = {};
  }
  const what = `advise ${map.label} ${advice} ${JSON.stringify(range)}`;
  fuzzer.log(what);
  // deno-lint-ignore no-explicit-any
  const outcome = attempt(() => map.map.advise(advice as any, range));
  if (!(ADVICE as readonly string[]).includes(advice)) {
    expect(outcome, { kind: "type" }, what);
    return;
  }
  const { length, position, valid, inside } = windowRange(map, range);
  if (!valid || !inside) {
    expect(outcome, { kind: "range" }, what);
    return;
  }
  if (advice === "dontneed" && map.mode === "c") {
    // It would throw away the private changes.
    expect(outcome, { kind: "guardmap", code: "ENOTSUP" }, what);
    return;
  }
  expect(outcome, { kind: "ok" }, what);
  if (length !== 0) advised(map, advice, map.offset + position, length);
}

/** What an advice given on `length` bytes at file offset `from` changes in the model. */
function advised(map: MapModel, advice: string, from: number, length: number): void {
  const file = map.file;
  for (let page = file.pageOf(from); page <= file.pageOf(from + length - 1); page++) {
    // A salvaged page is private anonymous memory: dropping it gives a fresh zero page.
    if (advice === "dontneed" && map.salvaged.has(page)) map.salvaged.get(page)!.fill(0);
    // An asynchronous readahead of the file: a page not cached may be cached any time now.
    // (Shared pages only leave their page-table entries with "dontneed": nothing changes.)
    if (
      advice === "willneed" && file.fuse && !file.beyondEnd(page) && file.cached[page] === "no"
    ) {
      file.cached[page] = "maybe";
    }
  }
}

export function prefault(fuzzer: Fuzzer, map: MapModel): void {
  const range = rangeOption(fuzzer, map);
  const write = fuzzer.rng.chance(map.mode === "r" ? 0.1 : 0.4);
  const what = `prefault ${map.label} ${JSON.stringify(range)}${write ? " write" : ""}`;
  fuzzer.log(what);
  const outcome = attempt(() => map.map.prefault({ ...range, write }));
  const { position, length, valid, inside } = windowRange(map, range);
  if (!valid || !inside) {
    expect(outcome, { kind: "range" }, what);
    return;
  }
  if (write && map.mode === "r") {
    expect(outcome, { kind: "guardmap", code: "READ_ONLY_MAP" }, what);
    return;
  }
  if (length === 0) {
    expect(outcome, { kind: "ok" }, what);
    return;
  }
  const from = map.offset + position;
  const plan = fuzzer.kernel.plan(map, from, from + length);
  const faultIndex = matchFault(fuzzer, plan, outcome, what, (step, index) => {
    return prefaultFault(fuzzer, map, position, step, index);
  });
  touched(fuzzer, map, plan, faultIndex);
  if (write) populatedForWrite(fuzzer, map, plan, faultIndex);
}

/**
 * The MappedIOError of a prefault from `position` that faults at `step`: touch_pages probes
 * the first byte of the range, then every page boundary; a truncated file counts only up to
 * its end; bytesTransferred is how far the probe got.
 */
function prefaultFault(
  fuzzer: Fuzzer,
  map: MapModel,
  position: number,
  step: PagePlan,
  index: number,
): FaultExpectation {
  const file = map.file;
  const probe = index === 0 ? position : file.pageStart(step.page) - map.offset;
  const fileSize = fuzzer.kernel.sizeKnown(file) ? file.size : undefined;
  const truncated = fileSize !== undefined && fileSize <= map.offset + probe;
  const failedAt = truncated ? Math.max(position, Math.min(probe, fileSize - map.offset)) : probe;
  return {
    operation: "prefault",
    code: "EIO",
    fileOffset: map.offset + failedAt,
    position: failedAt,
    bytesTransferred: probe - position,
    reason: truncated ? "truncated" : "io",
    fileSize,
  };
}

/**
 * MADV_POPULATE_WRITE: a write fault on every page before the failing one (dirty in a shared
 * map, a private copy in a mode "c" map), without changing a byte.
 */
function populatedForWrite(
  fuzzer: Fuzzer,
  map: MapModel,
  plan: PagePlan[],
  faultIndex: number,
): void {
  for (let index = 0; index < faultIndex; index++) {
    const page = plan[index].page;
    if (map.ownsPage(page)) continue;
    if (map.mode === "c") {
      if (fuzzer.kernel.copyOnWrite(map, page).fuzzy) settlePrivate(map, page, 0, 0);
    } else if (map.file.fuse) {
      map.file.dirty[page] = true;
    }
  }
}

export function fileSize(fuzzer: Fuzzer, map: MapModel): void {
  const what = `fileSize ${map.label}`;
  fuzzer.log(what);
  const outcome = attempt(() => map.map.fileSize());
  if (map.closed) {
    expect(outcome, { kind: "closed" }, what);
  } else if (!fuzzer.kernel.sizeKnown(map.file)) {
    // statx on the descriptor asks the file system (attr_timeout 0), which fails.
    expect(outcome, {
      kind: "fault",
      fault: {
        operation: "check",
        code: "EIO",
        fileOffset: map.offset,
        position: 0,
        bytesTransferred: 0,
        reason: "io",
        fileSize: undefined,
      },
    }, what);
  } else {
    assert.equal(expect(outcome, { kind: "ok" }, what), map.file.size, `${what}: size`);
  }
}

export function check(fuzzer: Fuzzer, map: MapModel): void {
  const what = `check ${map.label}`;
  fuzzer.log(what);
  const outcome = attempt(() => map.map.check());
  if (map.salvage && map.salvageCount > map.salvageReported) {
    const fault = salvageFault(fuzzer, map, "check");
    map.salvageReported = map.salvageCount;
    expect(outcome, { kind: "fault", fault }, what);
  } else {
    expect(outcome, { kind: "ok" }, what);
  }
  const faults = map.map.faults;
  assert.equal(faults.count, map.salvageCount, `${what}: faults.count`);
  assert.equal(faults.fileOffset, map.salvageFirst, `${what}: faults.fileOffset`);
}
