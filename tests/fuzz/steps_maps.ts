/**
 * The fuzz test's steps that open and close maps: open in every mode, at unaligned and high
 * offsets, with and without salvage and pwrite; opens with bad arguments; close, double close
 * and every call after close.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type MapMode, MappedFile } from "../../mod.ts";
import { assertNothingLeft, openState } from "./checks.ts";
import { attempt, expect, type Expectation } from "./expect.ts";
import { healthy } from "./faults.ts";
import type { Fuzzer } from "./fuzzer.ts";
import { type FileModel, MapModel, PAGE } from "./model.ts";

/** A map the generator chose to open. */
interface OpenChoice {
  file: FileModel;
  mode: MapMode;
  salvage: boolean;
  offset: number;
  length: number | undefined;
}

export function open(fuzzer: Fuzzer): void {
  const choice = chooseOpen(fuzzer);
  if (choice === undefined) return badOpen(fuzzer);
  const { file, mode, salvage, offset, length } = choice;
  const rng = fuzzer.rng;
  const { writes, pwrite } = chooseWrites(fuzzer, file, mode, salvage);
  const options = {
    mode,
    // Sometimes a bigint, which the API takes for offsets past 2^53.
    offset: rng.chance(0.2) ? BigInt(offset) : offset,
    ...(length === undefined ? {} : { length: rng.chance(0.1) ? BigInt(length) : length }),
    salvage,
    ...(writes === undefined ? {} : { writes }),
  };
  const what = `open ${file.name} ${JSON.stringify({ ...options, offset, length })}`;
  fuzzer.log(what);
  const before = openState(file);
  const outcome = attempt(() => MappedFile.open(file.path, options));
  if (file.fuse && fuzzer.kernel.rules.outage) {
    // The mount answers EIO to the lookup or the open: a failure to open, not a fault.
    expect(outcome, { kind: "guardmap", code: "EIO" }, what);
    assertNothingLeft(file, before, what);
    fuzzer.kernel.lookupFailed(file);
    return;
  }
  const mapped = expect(outcome, { kind: "ok" }, what)!;
  const windowLength = length ?? file.size - offset;
  assert.equal(mapped.offset, offset, `${what}: offset`);
  assert.equal(mapped.byteLength, windowLength, `${what}: byteLength`);
  assert.equal(mapped.mode, mode, `${what}: mode`);
  assert.equal(mapped.closed, false, `${what}: closed`);
  const map = new MapModel(fuzzer.nextMapId++, file, mapped, mode, offset, windowLength, salvage);
  opened(fuzzer, map, pwrite);
}

/**
 * The `writes` option of an open (undefined: left out, the default `"auto"`) and whether the map
 * then writes through the file descriptor. Off faultfs, writable maps take in turn
 * `writes: "pwrite"`, the default and `writes: "map"`; the default is `"pwrite"` for modes
 * `"r+"`/`"w+"` without salvage, `"map"` otherwise. Chosen from the map's number, not the
 * generator, so that every seed keeps its sequence. On faultfs always `"map"`: there a failing
 * WRITE is reported by `write` itself, which the model of write-back failures does not describe
 * (tests/pwrite_test.ts covers it).
 */
function chooseWrites(
  fuzzer: Fuzzer,
  file: FileModel,
  mode: MapMode,
  salvage: boolean,
): { writes: "map" | "pwrite" | undefined; pwrite: boolean } {
  const descriptor = !salvage && (mode === "r+" || mode === "w+");
  if (file.fuse) return { writes: "map", pwrite: false };
  const turn = fuzzer.nextMapId % 3;
  if (turn === 0 && descriptor) return { writes: "pwrite", pwrite: true };
  if (turn === 1) return { writes: undefined, pwrite: descriptor };
  return { writes: "map", pwrite: false };
}

/** The file, mode and window of an open; undefined when the file leaves no room for one. */
function chooseOpen(fuzzer: Fuzzer): OpenChoice | undefined {
  const rng = fuzzer.rng;
  const file = rng.pick(fuzzer.files);
  const fuseHealthy = healthy(fuzzer, file);
  const modes: [MapMode, number][] = [["r", 3], ["r+", 3], ["c", 2.5]];
  // faultfs: "w+" only on a healthy device, and never shrinking the file under an open map
  // (the model of a FUSE file has no bytes past its end).
  if (!file.fuse || fuseHealthy) modes.push(["w+", 1]);
  const mode = rng.weighted(modes);
  const salvage = rng.chance(0.35);
  let offset: number;
  let length: number | undefined;
  if (mode === "w+") {
    const lowest = file.fuse ? highestEnd(file) : file.base;
    offset = file.base + rng.int(file.span);
    const least = Math.max(1, lowest - offset);
    if (least > file.base + file.span - offset) return undefined;
    length = rng.range(least, file.base + file.span - offset);
  } else {
    if (file.size <= file.base) return undefined;
    offset = file.base + rng.int(file.size - file.base);
    if (rng.chance(0.3)) offset -= (offset - file.base) % PAGE;
    length = rng.chance(0.25) ? undefined : rng.range(1, file.size - offset);
  }
  return { file, mode, salvage, offset, length };
}

/** A map opened: the model follows what the open did to the file, and keeps the map. */
function opened(fuzzer: Fuzzer, map: MapModel, pwrite: boolean): void {
  const { file, mode, offset, length } = map;
  const kernel = fuzzer.kernel;
  // The descriptor samples the file's error sequence before the open drops the page cache
  // (do_dentry_open, then fuse_finish_open without keep_cache).
  kernel.lookedUp(file);
  map.since = kernel.errseqSample(file);
  // O_TRUNC empties the page cache first, dirty pages included, without writing them back
  // (observed: no WRITE); then fallocate sizes the file to offset + length.
  if (mode === "w+") kernel.truncate(file, 0);
  kernel.invalidate(file);
  if (mode === "w+") kernel.truncate(file, offset + length);
  map.pwrite = pwrite;
  file.maps.add(map);
  fuzzer.maps.push(map);
  if (pwrite) fuzzer.count("= pwrite map");
  else if (mode === "r+" || mode === "w+") fuzzer.count("= map-write map");
  fuzzer.log(`  -> ${map.label}`);
}

function highestEnd(file: FileModel): number {
  return Math.max(file.base, ...[...file.maps].map((map) => map.end));
}

const BAD_OPENS = [
  "mode",
  "w+ without length",
  "offset type",
  "offset",
  "length",
  "past the end",
  "empty",
  "beyond the end",
  "missing",
] as const;

/** An open with bad arguments: what it passes, what it must throw, whether it opens the file. */
interface BadOpen {
  path: string;
  // deno-lint-ignore no-explicit-any
  options: any;
  expected: Expectation;
  /** Whether the library gets as far as opening the file (then FUSE drops its page cache). */
  opens: boolean;
}

export function badOpen(fuzzer: Fuzzer): void {
  const rng = fuzzer.rng;
  const file = rng.pick(fuzzer.files);
  const kind = rng.pick(BAD_OPENS);
  const mode = rng.pick(["r", "r+", "c"] as const);
  const offset = file.base + rng.int(Math.max(1, file.size - file.base));
  const bad = badOpenCase(fuzzer, file, kind, mode, offset);
  let { expected, opens } = bad;
  const what = `open (${kind}) ${file.name} ${
    JSON.stringify(bad.options, (_, value) => typeof value === "bigint" ? `${value}n` : value)
  }`;
  fuzzer.log(what);
  const before = openState(file);
  const outcome = attempt(() => MappedFile.open(bad.path, bad.options));
  let lookupFailed = false;
  if (file.fuse && fuzzer.kernel.rules.outage && (opens || kind === "missing")) {
    expected = { kind: "guardmap", code: "EIO" };
    lookupFailed = opens;
    opens = false;
  }
  expect(outcome, expected, what);
  if (outcome.ok) outcome.value.close();
  assertNothingLeft(file, before, what);
  if (lookupFailed) fuzzer.kernel.lookupFailed(file);
  if (opens) {
    fuzzer.kernel.lookedUp(file);
    fuzzer.kernel.invalidate(file);
    fuzzer.kernel.closeDescriptor(file);
  }
}

/** The arguments of one kind of bad open, and what it must do. */
function badOpenCase(
  fuzzer: Fuzzer,
  file: FileModel,
  kind: typeof BAD_OPENS[number],
  mode: "r" | "r+" | "c",
  offset: number,
): BadOpen {
  const rng = fuzzer.rng;
  const path = file.path;
  const range: Expectation = { kind: "range" };
  const type: Expectation = { kind: "type" };
  switch (kind) {
    case "mode":
      return {
        path,
        options: { mode: rng.pick(["rw", "w", "", "R"]) },
        expected: type,
        opens: false,
      };
    case "w+ without length":
      return { path, options: { mode: "w+", offset }, expected: type, opens: false };
    case "offset type":
      return { path, options: { mode, offset: String(offset) }, expected: type, opens: false };
    case "offset": {
      const bad = rng.pick([-1, NaN, 0.5, Infinity, 2 ** 53 + 2, -1n]);
      return { path, options: { mode, offset: bad }, expected: range, opens: false };
    }
    case "length": {
      const length = rng.pick([0, -5, 1.5, NaN, 0n]);
      return { path, options: { mode, offset, length }, expected: range, opens: false };
    }
    case "past the end": {
      const length = file.size - offset + 1 + rng.int(2 * PAGE);
      return { path, options: { mode, offset, length }, expected: range, opens: true };
    }
    case "empty":
      return { path, options: { mode, offset: file.size }, expected: range, opens: true };
    case "beyond the end": {
      const beyond = file.size + 1 + rng.int(4 * PAGE);
      return { path, options: { mode, offset: beyond }, expected: range, opens: true };
    }
    case "missing":
      return {
        path: `${path}.missing`,
        options: { mode },
        expected: { kind: "notFound" },
        opens: false,
      };
  }
}

export function close(fuzzer: Fuzzer, map: MapModel, twice: boolean): void {
  const what = `close ${map.label}${twice ? " twice" : ""}`;
  fuzzer.log(what);
  const view = map.view;
  expect(attempt(() => map.map.close()), { kind: "ok" }, what);
  if (twice) expect(attempt(() => map.map.close()), { kind: "ok" }, `${what} (again)`);
  map.closed = true;
  fuzzer.maps.splice(fuzzer.maps.indexOf(map), 1);
  map.file.maps.delete(map);
  fuzzer.closedMaps.push(map);
  if (fuzzer.closedMaps.length > 6) fuzzer.closedMaps.shift();
  // close(2) of a FUSE descriptor writes every dirty page of the file back (fuse_flush).
  fuzzer.kernel.closeMap(map.file, map.file.maps.size === 0);
  assert.equal(map.map.closed, true, `${what}: closed`);
  if (view !== undefined) assert.equal(view.length, 0, `${what}: the view was not detached`);
  assert.deepEqual(map.map.faults, { count: 0, fileOffset: undefined }, `${what}: faults`);
}

/** Every call after close, with what it must do (the closed check comes after a few others). */
function callsAfterClose(m: MappedFile): Record<string, [() => unknown, Expectation]> {
  const closed: Expectation = { kind: "closed" };
  return {
    "read": [() => m.read(new Uint8Array(8), 0), closed],
    "write": [() => m.write(new Uint8Array(8), NaN), closed],
    "readArray": [() => m.readArray(Float64Array, 0, 1), closed],
    // The count is checked before anything else.
    "readArray bad count": [() => m.readArray(Float64Array, 0, -1), { kind: "range" }],
    "writeArray": [() => m.writeArray(new Int32Array(2), 0), closed],
    "writeArray bad index": [() => m.writeArray(new Int32Array(2), -1), { kind: "range" }],
    "flush": [() => m.flush({ position: NaN }), closed],
    "advise": [() => m.advise("willneed"), closed],
    // The advice is checked before the map.
    // deno-lint-ignore no-explicit-any
    "advise bogus": [() => m.advise("bogus" as any), { kind: "type" }],
    "prefault": [() => m.prefault({ write: true }), closed],
    "fileSize": [() => m.fileSize(), closed],
    "unsafeView": [() => m.unsafeView(), closed],
    "check": [() => m.check(), closed],
    "close": [() => m.close(), { kind: "ok" }],
  };
}

/** The order the generator picks from (kept: a seed replays its sequence). */
const AFTER_CLOSE = [
  "read",
  "write",
  "readArray",
  "readArray bad count",
  "writeArray",
  "writeArray bad index",
  "flush",
  "advise",
  "advise bogus",
  "prefault",
  "fileSize",
  "unsafeView",
  "check",
  "close",
  "faults",
] as const;

export function afterClose(fuzzer: Fuzzer, map: MapModel): void {
  const call = fuzzer.rng.pick(AFTER_CLOSE);
  const what = `${call} after close of ${map.label}`;
  fuzzer.log(what);
  const m = map.map;
  if (call === "faults") {
    assert.deepEqual(m.faults, { count: 0, fileOffset: undefined }, what);
  } else {
    const [action, expected] = callsAfterClose(m)[call];
    expect(attempt(action), expected, what);
  }
  assert.equal(m.closed, true, `${what}: closed`);
  assert.equal(map.view?.length ?? 0, 0, `${what}: a stale view is not detached`);
}
