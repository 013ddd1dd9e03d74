/**
 * The fuzz test's checks of state against the model: the backing files, what a map reads,
 * what a successful flush left in the file, and that a failed open left nothing behind.
 *
 * @module
 */
import assert from "node:assert/strict";
import { dirname } from "node:path";
import { mappingsOf } from "../util.ts";
import type { Fuzzer } from "./fuzzer.ts";
import { type FileModel, firstDifference, type MapModel, readRange } from "./model.ts";

/** Every backing file holds what the model says, and has the model's size. */
export function audit(fuzzer: Fuzzer): void {
  for (const file of fuzzer.files) {
    assert.equal(Deno.statSync(file.backing).size, file.size, `size of ${file.name}`);
    const end = Math.min(file.size, file.base + file.span);
    if (end <= file.base) continue;
    const actual = readRange(file.backing, file.base, end);
    const expected = file.disk.subarray(0, end - file.base);
    const at = firstDifference(actual, expected);
    assert.equal(
      at,
      -1,
      `${file.name} at file offset ${file.base + at} holds ${actual[at]}, the model ` +
        `${expected[at]} (a shared map shows ${file.data[at]}; ` +
        `${pageState(fuzzer, file, file.pageOf(file.base + at))})`,
    );
  }
}

/** A page's state in the model, for a failure message. */
export function pageState(fuzzer: Fuzzer, file: FileModel, page: number): string {
  if (!file.fuse) return `page ${page}`;
  const kernel = fuzzer.kernel;
  return `page ${page} at ${file.pageStart(page)}: cached ${file.cached[page]}, dirty ` +
    `${file.dirty[page]}, ${kernel.readFails(file, page) ? "read fails" : "readable"}, ` +
    `${kernel.writeFails(file, page) ? "write-back fails" : "write-back works"}`;
}

/** `actual` (read at file offset `from` through `map`) is what the map must show. */
export function compare(
  fuzzer: Fuzzer,
  map: MapModel,
  from: number,
  actual: Uint8Array,
  what: string,
): void {
  for (let i = 0; i < actual.length; i++) {
    const { value, orZero } = map.byteAt(from + i);
    if (actual[i] === value || (orZero && actual[i] === 0)) continue;
    const page = map.file.pageOf(from + i);
    assert.fail(
      `${what}: byte at file offset ${from + i} is ${actual[i]}, the model says ${value}` +
        `${orZero ? " or 0" : ""} (${pageState(fuzzer, map.file, page)}; ${
          map.salvaged.has(page) ? "salvaged" : map.privatePages.has(page) ? "private" : "shared"
        })`,
    );
  }
}

/** After a successful flush, the file holds what the map shows for the range. */
export function assertFlushed(
  fuzzer: Fuzzer,
  map: MapModel,
  from: number,
  to: number,
  what: string,
): void {
  const file = map.file;
  const end = Math.min(to, file.size);
  if (end <= from) return;
  const actual = readRange(file.backing, from, end);
  for (let at = from; at < end; at++) {
    const expected = file.data[at - file.base];
    if (actual[at - from] === expected) continue;
    assert.fail(
      `${what}: flush() reported success, but the file holds ${actual[at - from]} at file ` +
        `offset ${at} where the map shows ${expected} (${
          pageState(fuzzer, file, file.pageOf(at))
        })`,
    );
  }
  if (file.fuse) {
    // The written pages are on disk now; the model's disk must agree (checked by audit).
    file.disk.set(file.data.subarray(from - file.base, end - file.base), from - file.base);
  }
}

/** The descriptors on the file (or its directory) and the file's mappings, before an open. */
export interface OpenState {
  descriptors: number;
  mappings: number;
}

export function openState(file: FileModel): OpenState {
  return { descriptors: descriptorsOn(file.path), mappings: mappingsOf(file.path).length };
}

/**
 * The process's descriptors that name `path` or its directory (what an open of `path` opens).
 * Only those: the runtime's own threads and pending async operations open and close other
 * descriptors at any moment, so the process's total is no measure of one open (it was off by
 * one, once in a few hundred runs, with nothing of guardmap's open).
 */
function descriptorsOn(path: string): number {
  const names = [path, `${path} (deleted)`, dirname(path)];
  let count = 0;
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (names.includes(Deno.readLinkSync(`/proc/self/fd/${entry.name}`))) count++;
    } catch {
      // Closed between the listing and the readlink: not one of ours.
    }
  }
  return count;
}

/** An open (failed, or closed again) left no descriptor and no mapping behind. */
export function assertNothingLeft(file: FileModel, before: OpenState, what: string): void {
  assert.equal(descriptorsOn(file.path), before.descriptors, `${what}: a descriptor was left open`);
  assert.equal(mappingsOf(file.path).length, before.mappings, `${what}: a mapping was left`);
}
