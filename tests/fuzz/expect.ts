/**
 * What the library must answer, and the check that it did: a call's outcome against the
 * expected success or typed error, a MappedIOError's fields against the model's fault, and the
 * library's order of argument checks before a copy.
 *
 * @module
 */
import assert from "node:assert/strict";
import { GuardmapError, MapClosedError, MappedIOError } from "../../mod.ts";
import type { Fuzzer } from "./fuzzer.ts";
import type { MapModel, PagePlan } from "./model.ts";

/** What a call did: returned a value or threw. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

export function attempt<T>(action: () => T): Outcome<T> {
  try {
    return { ok: true, value: action() };
  } catch (error) {
    return { ok: false, error };
  }
}

export function describe(error: unknown): string {
  if (!(error instanceof Error)) return `a thrown ${typeof error}: ${String(error)}`;
  const fields = error instanceof MappedIOError
    ? ` {code ${error.code}, operation ${error.operation}, fileOffset ${error.fileOffset}, ` +
      `position ${error.position}, bytesTransferred ${error.bytesTransferred}, reason ` +
      `${error.reason}, fileSize ${error.fileSize}}`
    : error instanceof GuardmapError
    ? ` {code ${error.code}}`
    : "";
  return `${error.constructor.name}${fields}: ${error.message}`;
}

/** Every error guardmap may throw is one of these; a plain Error (or a crash) never is. */
export function assertTyped(error: unknown, what: string): void {
  assert.ok(
    error instanceof RangeError || error instanceof TypeError || error instanceof GuardmapError ||
      error instanceof Deno.errors.NotFound,
    `${what}: threw an untyped error: ${describe(error)}`,
  );
}

/** A non-negative integer the library takes as a position or length (see integer_from_f64). */
export function exact(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 2 ** 53;
}

/** What a MappedIOError must say. */
export interface FaultExpectation {
  operation: string;
  code: string;
  fileOffset: number;
  position: number;
  bytesTransferred?: number;
  reason: "truncated" | "io";
  fileSize: number | undefined;
}

export type Expectation =
  | { kind: "ok" }
  | { kind: "range" }
  | { kind: "type" }
  | { kind: "closed" }
  | { kind: "notFound" }
  | { kind: "guardmap"; code: string }
  | { kind: "fault"; fault: FaultExpectation };

/** Checks `outcome` against `expected`; the value on success. */
export function expect<T>(outcome: Outcome<T>, expected: Expectation, what: string): T | undefined {
  if (expected.kind === "ok") {
    if (!outcome.ok) {
      assertTyped(outcome.error, what);
      assert.fail(`${what}: expected success, got ${describe(outcome.error)}`);
    }
    return outcome.value;
  }
  assert.ok(!outcome.ok, `${what}: expected ${JSON.stringify(expected)}, but it succeeded`);
  const error = outcome.error;
  assertTyped(error, what);
  if (expected.kind === "fault") {
    assertFault(error, expected.fault, what);
  } else {
    assert.ok(
      isExpected(error, expected),
      `${what}: expected ${wanted(expected)}, got ${describe(error)}`,
    );
  }
  return undefined;
}

/** Whether `error` is the error `expected` (any kind but "ok" and "fault") names. */
function isExpected(error: unknown, expected: Expectation): boolean {
  switch (expected.kind) {
    case "range":
      return error instanceof RangeError;
    case "type":
      return error instanceof TypeError;
    case "closed":
      return error instanceof MapClosedError;
    case "notFound":
      return error instanceof Deno.errors.NotFound;
    case "guardmap":
      return error instanceof GuardmapError && !(error instanceof MappedIOError) &&
        !(error instanceof MapClosedError) && error.code === expected.code;
  }
  return false;
}

/** The expected error's name in a failure message. */
function wanted(expected: Expectation): string {
  switch (expected.kind) {
    case "range":
      return "RangeError";
    case "type":
      return "TypeError";
    case "closed":
      return "MapClosedError";
    case "notFound":
      return "Deno.errors.NotFound";
    case "guardmap":
      return `GuardmapError ${expected.code}`;
  }
  return expected.kind;
}

export function assertFault(error: unknown, expected: FaultExpectation, what: string): void {
  assert.ok(
    error instanceof MappedIOError,
    `${what}: expected MappedIOError, got ${describe(error)}`,
  );
  for (const [key, value] of Object.entries(expected)) {
    if (value === undefined && key === "bytesTransferred") continue;
    assert.equal(
      error[key as keyof MappedIOError],
      value,
      `${what}: ${key} of the MappedIOError (expected ${JSON.stringify(expected)}, got ` +
        `${describe(error)})`,
    );
  }
}

/** The error a salvage map reports for faults its views met (MappedFile.#salvagedError). */
export function salvageFault(fuzzer: Fuzzer, map: MapModel, operation: string): FaultExpectation {
  const fileOffset = map.salvageFirst!;
  const fileSize = fuzzer.kernel.sizeKnown(map.file) ? map.file.size : undefined;
  return {
    operation,
    code: "EIO",
    fileOffset,
    position: fileOffset - map.offset,
    bytesTransferred: 0,
    reason: fileSize !== undefined && fileSize <= fileOffset ? "truncated" : "io",
    fileSize,
  };
}

/**
 * What read/write (and readArray/writeArray) must do before touching the map, in the
 * library's order: closed, salvaged faults not yet reported, bad position, range outside the
 * window, mode "r", empty. `undefined`: it goes on to copy.
 */
export function beforeCopy(
  fuzzer: Fuzzer,
  map: MapModel,
  operation: "read" | "write",
  position: number,
  length: number,
): Expectation | undefined {
  if (map.closed) return { kind: "closed" };
  if (map.salvage && map.salvageCount > map.salvageReported) {
    const fault = salvageFault(fuzzer, map, operation);
    map.salvageReported = map.salvageCount;
    fuzzer.count("= salvaged fault reported");
    return { kind: "fault", fault };
  }
  if (!exact(position)) return { kind: "range" };
  if (position > map.length || length > map.length - position) return { kind: "range" };
  if (operation === "write" && map.mode === "r") {
    return { kind: "guardmap", code: "READ_ONLY_MAP" };
  }
  if (length === 0) return { kind: "ok" };
  return undefined;
}

/** A range a call (flush, advise, prefault) resolved, and whether it is valid and inside. */
export interface WindowRange {
  position: number;
  length: number;
  valid: boolean;
  inside: boolean;
}

/** What a range call (flush, advise, prefault) resolves `range` to. */
export function windowRange(
  map: MapModel,
  range: { position?: number; length?: number },
): WindowRange {
  const position = range.position ?? 0;
  const length = range.length ?? map.length - position;
  const valid = exact(position) && exact(length);
  const inside = valid && position <= map.length && length <= map.length - position;
  return { position, length, valid, inside };
}

/**
 * Which page of `plan` the outcome faulted at (`plan.length` for none), checking that the
 * model allows it: the first page that must fault, or any earlier page that may fault (a
 * readahead may or may not have cached it), with the error the library must give there.
 */
export function matchFault<T>(
  fuzzer: Fuzzer,
  plan: PagePlan[],
  outcome: Outcome<T>,
  what: string,
  expected: (step: PagePlan, index: number) => FaultExpectation,
): number {
  const must = plan.findIndex((step) => step.touch === "must");
  if (outcome.ok) {
    assert.equal(
      must,
      -1,
      `${what}: succeeded, but the model says the page at ${
        must === -1 ? "" : plan[must].page
      } cannot be read (${must === -1 ? "" : plan[must].truncated ? "truncated" : "device fails"})`,
    );
    return plan.length;
  }
  const error = outcome.error;
  assertTyped(error, what);
  assert.ok(
    error instanceof MappedIOError,
    `${what}: expected success or MappedIOError, got ${describe(error)}`,
  );
  const last = must === -1 ? plan.length - 1 : must;
  const allowed: string[] = [];
  for (let index = 0; index <= last; index++) {
    if (plan[index].touch === "ok") continue;
    const fault = expected(plan[index], index);
    allowed.push(`${fault.fileOffset} (${plan[index].touch})`);
    if (fault.fileOffset !== error.fileOffset) continue;
    assertFault(error, fault, what);
    fuzzer.count(`= ${fault.operation} fault (${fault.reason})`);
    return index;
  }
  assert.fail(
    `${what}: ${describe(error)}; the model allows ${
      allowed.length === 0 ? "no fault" : `a fault at ${allowed.join(" or ")}`
    }`,
  );
}

/** The MappedIOError of a read or write that faults at `step` (ffi/call_error.ts). */
export function copyFault(
  fuzzer: Fuzzer,
  map: MapModel,
  operation: string,
  from: number,
  step: PagePlan,
): FaultExpectation {
  const file = map.file;
  const raw = Math.max(from, file.pageStart(step.page));
  const fileSize = fuzzer.kernel.sizeKnown(file) ? file.size : undefined;
  const truncated = fileSize !== undefined && fileSize <= raw;
  // A truncated file counts only the bytes still in it (the rest of the last page is zeros).
  const reported = truncated ? Math.max(from, Math.min(raw, fileSize)) : raw;
  return {
    operation,
    code: "EIO",
    fileOffset: reported,
    position: reported - map.offset,
    bytesTransferred: reported - from,
    reason: truncated ? "truncated" : "io",
    fileSize,
  };
}

/** The range a readMany fault names; fails the run when it is not a MappedIOError with one. */
export function rangeIndexOf(error: unknown, what: string): number {
  assertTyped(error, what);
  assert.ok(
    error instanceof MappedIOError,
    `${what}: expected MappedIOError, got ${describe(error)}`,
  );
  assert.ok(Number.isSafeInteger(error.rangeIndex), `${what}: no rangeIndex on ${describe(error)}`);
  return error.rangeIndex!;
}
