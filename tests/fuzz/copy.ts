/**
 * A guarded copy (read, write and their array and readMany forms) checked against the model,
 * then applied to it: where the copy had to fault, what it read, what it stored.
 *
 * @module
 */
import assert from "node:assert/strict";
import { compare } from "./checks.ts";
import { beforeCopy, copyFault, expect, matchFault, type Outcome } from "./expect.ts";
import type { Fuzzer } from "./fuzzer.ts";
import { type MapModel, PAGE, type PagePlan } from "./model.ts";

/** One guarded copy: the call's outcome and the bytes it read into or wrote from. */
export interface Copy {
  operation: "read" | "write";
  position: number;
  length: number;
  outcome: Outcome<number>;
  what: string;
  /** Where a read put its bytes. */
  target?: Uint8Array;
  /** What a write stored. */
  source?: Uint8Array;
}

/** Checks a guarded read or write against the model, then applies it to the model. */
export function checkCopy(fuzzer: Fuzzer, map: MapModel, copy: Copy): void {
  const { operation, position, length, outcome, what, target, source } = copy;
  const before = beforeCopy(fuzzer, map, operation, position, length);
  if (before !== undefined) {
    expect(outcome, before, what);
    return;
  }
  const from = map.offset + position;
  const to = from + length;
  const plan = fuzzer.kernel.plan(map, from, to);
  const faultIndex = matchFault(fuzzer, plan, outcome, what, (step) => {
    return copyFault(fuzzer, map, operation, from, step);
  });
  if (outcome.ok) assert.equal(outcome.value, length, `${what}: returned count`);
  // The copy stops at the first byte of the faulting page: everything before it moved.
  const reached = faultIndex < plan.length
    ? Math.max(from, map.file.pageStart(plan[faultIndex].page))
    : to;
  touched(fuzzer, map, plan, faultIndex);
  if (target !== undefined) compare(fuzzer, map, from, target.subarray(0, reached - from), what);
  if (source !== undefined) store(fuzzer, map, from, source.subarray(0, reached - from));
}

/** The pages before the fault were read in; a "maybe" at the fault was not cached. */
export function touched(fuzzer: Fuzzer, map: MapModel, plan: PagePlan[], faultIndex: number): void {
  for (let index = 0; index < faultIndex; index++) fuzzer.kernel.loaded(map, plan[index].page);
  if (faultIndex < plan.length) fuzzer.kernel.faulted(map, plan[faultIndex].page);
}

/** Applies bytes written at file offset `from` through `map` to the model. */
export function store(fuzzer: Fuzzer, map: MapModel, from: number, bytes: Uint8Array): void {
  let at = from;
  const settle: number[] = [];
  // One page at a time: bounded by the length of `bytes`.
  while (at < from + bytes.length) {
    const page = map.file.pageOf(at);
    const end = Math.min(from + bytes.length, map.file.pageStart(page) + PAGE);
    const { fuzzyCopy } = fuzzer.kernel.store(map, at, bytes.subarray(at - from, end - from));
    if (fuzzyCopy) settle.push(page);
    at = end;
  }
  for (const page of settle) settlePrivate(map, page, from, from + bytes.length);
}

/**
 * A mode "c" map copied a page holding bytes that may be zeroed by the kernel (written past
 * the end through a shared map): its view says which copy it got. Safe to touch: the page is
 * the map's own anonymous memory now.
 */
export function settlePrivate(
  map: MapModel,
  page: number,
  writtenFrom: number,
  writtenTo: number,
): void {
  const file = map.file;
  const own = map.privatePages.get(page)!;
  const view = map.getView();
  const start = Math.max(file.pageStart(page), map.offset);
  const end = Math.min(file.pageStart(page) + PAGE, map.end);
  for (let at = start; at < end; at++) {
    const actual = view[at - map.offset];
    const within = at - file.pageStart(page);
    const fuzzy = file.fuzzy.has(at - file.base) && (at < writtenFrom || at >= writtenTo);
    if (actual === own[within]) continue;
    assert.ok(
      fuzzy && actual === 0,
      `${map.label}: the private copy of page ${page} holds ${actual} at ${at}, the model ` +
        `${own[within]}`,
    );
    own[within] = 0;
  }
}
