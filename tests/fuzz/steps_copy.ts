/**
 * The fuzz test's guarded copies: read, write, readMany, readArray and writeArray, with good
 * and bad arguments, through any ArrayBufferView, on maps that write through the map or
 * through the descriptor (`writes: "pwrite"`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { MappedIOError } from "../../mod.ts";
import { badPosition, ELEMENT_TYPES, span, typeName } from "./args.ts";
import { checkCopy, store } from "./copy.ts";
import { attempt, beforeCopy, exact, expect, type Outcome, rangeIndexOf } from "./expect.ts";
import type { Fuzzer } from "./fuzzer.ts";
import { type MapModel, PAGE } from "./model.ts";

export function read(fuzzer: Fuzzer, map: MapModel): void {
  const rng = fuzzer.rng;
  const bad = rng.chance(0.06);
  const { position: valid, length } = span(fuzzer, map, 3 * PAGE);
  const position = bad ? badPosition(fuzzer, map) : valid;
  // Sometimes a DataView at an offset of a larger buffer: any ArrayBufferView is taken.
  const shift = rng.chance(0.2) ? rng.range(1, 15) : 0;
  const buffer = new ArrayBuffer(length + shift + 3);
  const target = shift > 0
    ? new DataView(buffer, shift, length)
    : new Uint8Array(buffer, 0, length);
  const bytes = new Uint8Array(buffer, shift, length);
  const what = `read ${map.label} position ${position} length ${length}`;
  fuzzer.log(what);
  const outcome = attempt(() => map.map.read(target, position));
  checkCopy(fuzzer, map, { operation: "read", position, length, outcome, what, target: bytes });
}

export function write(fuzzer: Fuzzer, map: MapModel): void {
  const bad = fuzzer.rng.chance(0.06);
  const { position: valid, length } = span(fuzzer, map, 3 * PAGE);
  const position = bad ? badPosition(fuzzer, map) : valid;
  const source = fuzzer.rng.bytes(length);
  const what = `write ${map.label} position ${position} length ${length}`;
  fuzzer.log(what);
  const outcome = attempt(() => map.map.write(source, position));
  const copy = { operation: "write", position, length, outcome, what, source } as const;
  if (map.pwrite && pwritePastEnd(fuzzer, map, copy)) return;
  checkCopy(fuzzer, map, copy);
}

/**
 * A `writes: "pwrite"` map refuses the part of a write past the file's end (even inside the
 * last partial page, which a write through the map would take): it writes up to the end and
 * throws there. Checks that case; false when the write lies inside the file (or is refused
 * before any copy), which `checkCopy` then checks like any other.
 */
function pwritePastEnd(
  fuzzer: Fuzzer,
  map: MapModel,
  copy: {
    position: number;
    length: number;
    outcome: Outcome<number>;
    what: string;
    source: Uint8Array;
  },
): boolean {
  const { position, length, outcome, what, source } = copy;
  const file = map.file;
  const from = map.offset + position;
  if (!exact(position) || position > map.length || length > map.length - position) return false;
  if (length === 0 || map.closed || from + length <= file.size) return false;
  if (map.salvage && map.salvageCount > map.salvageReported) return false;
  const failedAt = Math.max(from, file.size);
  expect(outcome, {
    kind: "fault",
    fault: {
      operation: "write",
      code: "EIO",
      fileOffset: failedAt,
      position: failedAt - map.offset,
      bytesTransferred: failedAt - from,
      reason: "truncated",
      fileSize: file.size,
    },
  }, what);
  fuzzer.count("= pwrite past the end");
  store(fuzzer, map, from, source.subarray(0, failedAt - from));
  return true;
}

/**
 * readMany over 1 to 6 small ranges, checked against the model as the same reads one after
 * the other, up to the range the fault hit (`rangeIndex`).
 */
export function readMany(fuzzer: Fuzzer, map: MapModel): void {
  const rng = fuzzer.rng;
  const length = Math.min(map.length, rng.pick([1, 8, 64, 100, 300, 5000]));
  const positions = Array.from(
    { length: rng.range(1, 6) },
    () => rng.int(map.length - length + 1),
  );
  if (rng.chance(0.06)) {
    positions[rng.int(positions.length)] = badPosition(fuzzer, map);
  }
  const target = new Uint8Array(positions.length * length);
  const what = `readMany ${map.label} positions ${positions.join(",")} length ${length}`;
  fuzzer.log(what);
  const outcome = attempt(() => map.map.readMany(target, positions, length));
  // As read: a pending salvage report first; then every range is checked before any copy.
  const first = beforeCopy(fuzzer, map, "read", positions[0], length);
  if (first?.kind === "fault" || first?.kind === "closed") {
    expect(outcome, first, what);
    return;
  }
  if (positions.some((p) => !exact(p) || p > map.length || length > map.length - p)) {
    expect(outcome, { kind: "range" }, what);
    return;
  }
  if (outcome.ok) assert.equal(outcome.value, target.length, `${what}: returned count`);
  const failed = outcome.ok ? positions.length : rangeIndexOf(outcome.error, what);
  if (!outcome.ok) fuzzer.count("= readMany fault");
  for (let i = 0; i <= Math.min(failed, positions.length - 1); i++) {
    const range: Outcome<number> = i < failed
      ? { ok: true, value: length }
      : { ok: false, error: asSingleRead(outcome, i * length) };
    checkCopy(fuzzer, map, {
      operation: "read",
      position: positions[i],
      length,
      outcome: range,
      what: `${what} [range ${i}]`,
      target: target.subarray(i * length, (i + 1) * length),
    });
  }
}

export function readArray(fuzzer: Fuzzer, map: MapModel): void {
  const rng = fuzzer.rng;
  const Type = rng.pick(ELEMENT_TYPES);
  const size = Type.BYTES_PER_ELEMENT;
  const { position, length } = span(fuzzer, map, 2 * PAGE);
  let index: number = Math.floor(position / size);
  let count: number = Math.floor(Math.min(length, map.length - index * size) / size);
  const roll = rng.next();
  if (roll < 0.04) index = rng.pick([-1, NaN, 1.5]);
  else if (roll < 0.08) count = rng.pick([-1, NaN, 2.5]);
  const what = `readArray ${map.label} ${typeName(Type)} index ${index} count ${count}`;
  fuzzer.log(what);
  const outcome = attempt(() => map.map.readArray(Type, index, count));
  if (!Number.isSafeInteger(count) || count < 0 || !Number.isSafeInteger(index) || index < 0) {
    expect(outcome, { kind: "range" }, what);
    return;
  }
  const values = outcome.ok ? outcome.value : undefined;
  const bytes = values === undefined
    ? undefined
    : new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const copied: Outcome<number> = outcome.ok
    ? { ok: true, value: count * size }
    : { ok: false, error: outcome.error };
  checkCopy(fuzzer, map, {
    operation: "read",
    position: index * size,
    length: count * size,
    outcome: copied,
    what,
    target: bytes,
  });
}

export function writeArray(fuzzer: Fuzzer, map: MapModel): void {
  const rng = fuzzer.rng;
  const Type = rng.pick(ELEMENT_TYPES);
  const size = Type.BYTES_PER_ELEMENT;
  const { position, length } = span(fuzzer, map, 2 * PAGE);
  let index: number = Math.floor(position / size);
  const count = Math.floor(Math.min(length, map.length - index * size) / size);
  if (rng.chance(0.05)) index = rng.pick([-1, NaN, 1.5]);
  const values = new Type(count);
  const bytes = new Uint8Array(values.buffer);
  bytes.set(rng.bytes(bytes.length));
  const what = `writeArray ${map.label} ${typeName(Type)} index ${index} count ${count}`;
  fuzzer.log(what);
  const outcome = attempt(() => map.map.writeArray(values, index));
  if (!Number.isSafeInteger(index) || index < 0) {
    expect(outcome, { kind: "range" }, what);
    return;
  }
  const copy = {
    operation: "write",
    position: index * size,
    length: count * size,
    outcome,
    what,
    source: bytes,
  } as const;
  if (map.pwrite && pwritePastEnd(fuzzer, map, copy)) return;
  checkCopy(fuzzer, map, copy);
}

/** A readMany fault seen as the fault of a single read of its range (bytes of earlier ranges off). */
function asSingleRead(outcome: Outcome<number>, earlierBytes: number): unknown {
  const error = (outcome as { ok: false; error: unknown }).error as MappedIOError;
  return new MappedIOError(error.message, {
    code: error.code,
    status: error.status,
    path: error.path,
    osError: error.osError,
    operation: error.operation,
    position: error.position,
    fileOffset: error.fileOffset,
    bytesTransferred: error.bytesTransferred - earlierBytes,
    reason: error.reason,
    fileSize: error.fileSize,
    signal: error.signal,
  });
}
