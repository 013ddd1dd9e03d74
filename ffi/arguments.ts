/**
 * Type checks of the arguments that `MappedFile` (in-process) and `PoolFile` (through a worker)
 * share: window ranges, options objects, position lists, counts and element types. Each failure
 * is a `TypeError` that names the call and the argument, says what was given and what to pass
 * instead. Without them, FFI refuses a string or a bigint with a message that names no argument,
 * and a string, a number or a misspelt key where an options object belongs is read as "no
 * options". Whether a number is in range is left to the range checks (here for counts, in the
 * library for window ranges). Internal.
 *
 * @module
 */
import type { Advice } from "./types.ts";
import { ADVICE } from "./abi.ts";

/** The library's number for each advice name users write. */
const ADVICE_NUMBERS: Record<Advice, number> = {
  normal: ADVICE.normal,
  sequential: ADVICE.sequential,
  random: ADVICE.random,
  willneed: ADVICE.willNeed,
  dontneed: ADVICE.dontNeed,
};

/**
 * The library's number for `advice`, or a `TypeError` naming the argument.
 *
 * @example
 * ```ts
 * import { adviceNumber } from "./arguments.ts";
 * console.log(adviceNumber("willneed")); // 3
 * ```
 */
export function adviceNumber(advice: unknown): number {
  if (typeof advice !== "string" || !Object.hasOwn(ADVICE_NUMBERS, advice)) {
    throw new TypeError(
      `advise: advice must be one of ${Object.keys(ADVICE_NUMBERS).join(", ")}, got ${
        describe(advice)
      }`,
    );
  }
  return ADVICE_NUMBERS[advice as Advice];
}

/**
 * A value as an error message shows it: its type and, when short, the value.
 *
 * @example
 * ```ts
 * import { describe } from "./arguments.ts";
 * console.log(describe("8"), "/", describe(8n)); // the string "8" / the bigint 8n
 * ```
 */
export function describe(value: unknown): string {
  switch (typeof value) {
    case "string":
      return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
    case "bigint":
      return `the bigint ${value}n`;
    case "number":
    case "boolean":
      return `the ${typeof value} ${value}`;
    case "function":
      return `the function ${value.name || "(anonymous)"}`;
    case "undefined":
    case "symbol":
      return String(value);
  }
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of ${value.length} item(s)`;
  return `an object of class ${(value as object).constructor?.name ?? "Object"}`;
}

/** What to pass instead of a value that is almost a number. */
function numberHint(value: unknown): string {
  if (typeof value === "bigint") return `; pass Number(${value}n)`;
  if (typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value))) {
    return `; pass the number ${Number(value)}, not a string`;
  }
  return "";
}

/**
 * Throws a `TypeError` naming argument `name` of `operation` unless `value` is a number.
 * `expected` says what the number is.
 *
 * @example
 * ```ts
 * import { checkNumber } from "./arguments.ts";
 * checkNumber(4096, "read", "position"); // fine
 * ```
 */
export function checkNumber(
  value: unknown,
  operation: string,
  name: string,
  expected = "a number",
): asserts value is number {
  if (typeof value === "number") return;
  throw new TypeError(
    `${operation}: ${name} must be ${expected}, got ${describe(value)}${numberHint(value)}`,
  );
}

/**
 * `value` when it is a non-negative safe integer: a `TypeError` when it is not a number, else a
 * `RangeError`, both naming argument `name` of `operation`.
 *
 * @example
 * ```ts
 * import { checkCount } from "./arguments.ts";
 * console.log(checkCount(3, "readArray", "count")); // 3
 * ```
 */
export function checkCount(value: unknown, operation: string, name: string): number {
  checkNumber(value, operation, name, "a non-negative integer");
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${operation}: ${name} must be a non-negative integer, got ${value}`);
  }
  return value;
}

/**
 * The byte position of element `index` (checked as in {@linkcode checkCount}) of elements of
 * `bytesPerElement` bytes.
 *
 * @example
 * ```ts
 * import { elementPosition } from "./arguments.ts";
 * console.log(elementPosition(3, 8, "readArray")); // 24
 * ```
 */
export function elementPosition(
  index: unknown,
  bytesPerElement: number,
  operation: string,
): number {
  return checkCount(index, operation, "index") * bytesPerElement;
}

/**
 * Checks that argument `name` of `operation` is an options object (or `undefined`) whose keys
 * are all in `keys`, and returns it (`{}` for `undefined`). `example` shows a good value.
 */
function checkOptions(
  value: unknown,
  operation: string,
  name: string,
  keys: readonly string[],
  example: string,
): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    const hint = typeof value === "number"
      ? `; to start at ${value}, write { position: ${value} }`
      : "";
    throw new TypeError(
      `${operation}: ${name} must be an object such as ${example} (or nothing, for the whole ` +
        `window), got ${describe(value)}${hint}`,
    );
  }
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) {
      throw new TypeError(
        `${operation}: ${name} has an unknown key ${JSON.stringify(key)}; the keys are ` +
          keys.join(", "),
      );
    }
  }
  return value as Record<string, unknown>;
}

const RANGE_KEYS = ["position", "length"] as const;
const PREFAULT_KEYS = ["position", "length", "write"] as const;

/** The position and length of a range, defaults applied; their range is the library's to check. */
function rangeOf(
  options: Record<string, unknown>,
  operation: string,
  name: string,
  windowLength: number,
): [number, number] {
  const { position = 0, length } = options;
  checkNumber(position, operation, `${name}.position`, "a number of bytes into the window");
  if (length === undefined) return [position, windowLength - position];
  checkNumber(length, operation, `${name}.length`, "a number of bytes");
  return [position, length];
}

/**
 * The `[position, length]` of the `range` argument of `flush` or `advise` (`length` defaults to
 * the rest of the window of `windowLength` bytes), or a `TypeError` naming what is wrong.
 *
 * @example
 * ```ts
 * import { windowRange } from "./arguments.ts";
 * console.log(windowRange("flush", { position: 10 }, 100)); // [ 10, 90 ]
 * ```
 */
export function windowRange(
  operation: string,
  range: unknown,
  windowLength: number,
): [number, number] {
  const options = checkOptions(
    range,
    operation,
    "range",
    RANGE_KEYS,
    "{ position: 0, length: 4096 }",
  );
  return rangeOf(options, operation, "range", windowLength);
}

/**
 * The `[position, length, write]` of the options of `prefault` (see `windowRange`), `write` as
 * 0 or 1, or a `TypeError` naming what is wrong.
 *
 * @example
 * ```ts
 * import { prefaultRange } from "./arguments.ts";
 * console.log(prefaultRange({ write: true }, 100)); // [ 0, 100, 1 ]
 * ```
 */
export function prefaultRange(options: unknown, windowLength: number): [number, number, 0 | 1] {
  const checked = checkOptions(options, "prefault", "options", PREFAULT_KEYS, "{ write: true }");
  const { write = false } = checked;
  if (typeof write !== "boolean") {
    throw new TypeError(`prefault: options.write must be true or false, got ${describe(write)}`);
  }
  return [...rangeOf(checked, "prefault", "options", windowLength), write ? 1 : 0];
}

/**
 * The `positions` of `readMany` as a `Float64Array` (the array given, when it is one), or a
 * `TypeError` naming the argument or the entry that is not a number. Entries are not converted:
 * `"8"` and `8n` are refused, not read as 8.
 *
 * @example
 * ```ts
 * import { positionList } from "./arguments.ts";
 * console.log(positionList([0, 4096])); // Float64Array(2) [ 0, 4096 ]
 * ```
 */
export function positionList(positions: unknown): Float64Array {
  if (positions instanceof Float64Array) return positions;
  const isList = Array.isArray(positions) ||
    (ArrayBuffer.isView(positions) && !(positions instanceof DataView));
  if (!isList) {
    throw new TypeError(
      `readMany: positions must be an array of numbers (such as [0, 4096]) or a Float64Array, ` +
        `got ${describe(positions)}`,
    );
  }
  const given = positions as ArrayLike<unknown>;
  const list = new Float64Array(given.length);
  for (let index = 0; index < list.length; index++) {
    const position = given[index];
    checkNumber(position, "readMany", `positions[${index}]`, "a number of bytes into the window");
    list[index] = position;
  }
  return list;
}

// The constructor every typed array class inherits from (%TypedArray%), not a global.
const TypedArray = Object.getPrototypeOf(Int8Array);

/**
 * The `BYTES_PER_ELEMENT` of `type` (a typed array class, such as `Float64Array`), or a
 * `TypeError` naming argument `type` of `operation`.
 *
 * @example
 * ```ts
 * import { elementTypeSize } from "./arguments.ts";
 * console.log(elementTypeSize(Float64Array, "readArray")); // 8
 * ```
 */
export function elementTypeSize(type: unknown, operation: string): number {
  if (typeof type === "function" && type.prototype instanceof TypedArray) {
    return (type as unknown as Float64ArrayConstructor).BYTES_PER_ELEMENT;
  }
  throw new TypeError(
    `${operation}: type must be a typed array class such as Float64Array or Uint8Array, got ` +
      describe(type),
  );
}

/**
 * The `BYTES_PER_ELEMENT` of `values` (a typed array, not a `DataView`), or a `TypeError`
 * naming argument `values` of `operation`.
 *
 * @example
 * ```ts
 * import { elementSize } from "./arguments.ts";
 * console.log(elementSize(new Uint16Array(2), "writeArray")); // 2
 * ```
 */
export function elementSize(values: unknown, operation: string): number {
  if (ArrayBuffer.isView(values) && !(values instanceof DataView)) {
    return (values as Float64Array).BYTES_PER_ELEMENT;
  }
  const hint = Array.isArray(values)
    ? "; copy it into one first, such as Float64Array.from(array)"
    : values instanceof DataView
    ? "; write a DataView with write()"
    : "";
  throw new TypeError(
    `${operation}: values must be a typed array such as a Float64Array, got ` +
      `${describe(values)}${hint}`,
  );
}
