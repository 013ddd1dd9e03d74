/**
 * How the fuzz test chooses arguments: positions and lengths inside a window (often at a page
 * boundary), bad positions, ranges for flush/advise/prefault, and element types.
 *
 * @module
 */
import type { ElementArray, ElementArrayConstructor } from "../../mod.ts";
import type { Fuzzer } from "./fuzzer.ts";
import { type MapModel, PAGE } from "./model.ts";

/** A position and length in a window. */
export interface Span {
  position: number;
  length: number;
}

/** A range option of flush, advise and prefault. */
export interface RangeOption {
  position?: number;
  length?: number;
}

/** Element types for readArray/writeArray, 1 to 8 bytes wide. */
export const ELEMENT_TYPES: readonly ElementArrayConstructor<ElementArray>[] = [
  Uint8Array,
  Int16Array,
  Uint16Array,
  Int32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
];

export function typeName(type: ElementArrayConstructor<ElementArray>): string {
  return (type as unknown as { name: string }).name;
}

/** A position and length inside the window, often across or next to a page boundary. */
export function span(fuzzer: Fuzzer, map: MapModel, longest: number): Span {
  const rng = fuzzer.rng;
  let position: number;
  if (rng.chance(0.3)) {
    const page = map.file.pageOf(map.offset + rng.int(map.length));
    position = map.file.pageStart(page) - map.offset + rng.range(-3, 3);
  } else {
    position = rng.int(map.length + 1);
  }
  position = Math.max(0, Math.min(map.length, position));
  const room = Math.min(longest, map.length - position);
  const length = rng.chance(0.3) ? Math.min(room, rng.range(1, 16)) : rng.range(0, room);
  return { position, length };
}

/** A bad position: negative, NaN, fractional, infinite, past the window, or past 2^53. */
export function badPosition(fuzzer: Fuzzer, map: MapModel): number {
  return fuzzer.rng.pick([
    -1,
    -4096,
    NaN,
    0.5,
    map.length / 3 + 0.25,
    Infinity,
    map.length + 1 + fuzzer.rng.int(PAGE),
    2 ** 53 + 2,
  ]);
}

/** A range for flush/advise/prefault: the whole window, part of it, or a bad one. */
export function rangeOption(fuzzer: Fuzzer, map: MapModel): RangeOption {
  const rng = fuzzer.rng;
  const roll = rng.next();
  if (roll < 0.3) return {};
  const { position, length } = span(fuzzer, map, 6 * PAGE);
  if (roll < 0.45) return { position };
  if (roll < 0.92) return { position, length };
  if (roll < 0.96) return { position: badPosition(fuzzer, map), length };
  return { position, length: rng.pick([-1, NaN, 1.5, map.length + 1, Infinity]) };
}

/** A range inside one page of the window. */
export function pageRange(fuzzer: Fuzzer, map: MapModel): Span {
  const file = map.file;
  const rng = fuzzer.rng;
  const start = file.pageStart(file.pageOf(map.offset + rng.int(map.length)));
  const from = Math.max(start, map.offset) - map.offset;
  const to = Math.min(start + PAGE, map.end) - map.offset;
  const position = rng.range(from, to - 1);
  return { position, length: rng.range(1, to - position) };
}
