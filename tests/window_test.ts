// MappedFile (in-process) and PoolFile (through a worker) share one window module
// (ffi/window.ts): the same bad argument must get the same error, word for word, and the same
// real fault (a file truncated under the map) the same MappedIOError, field for field.
import assert from "node:assert/strict";
import { MappedFile, MappedIOError, MapPool } from "../mod.ts";
import { scratch, writePattern } from "./util.ts";

/** What a call's error says: its class, message and, for a MappedIOError, every field. */
interface Outcome {
  kind: string;
  message: string;
  fields?: Record<string, unknown>;
}

const FAULT_FIELDS = [
  "code",
  "status",
  "path",
  "osError",
  "operation",
  "position",
  "fileOffset",
  "bytesTransferred",
  "reason",
  "fileSize",
  "signal",
  "rangeIndex",
] as const;

function outcomeOf(error: unknown): Outcome {
  assert.ok(error instanceof Error, `expected an Error, got ${error}`);
  const outcome: Outcome = { kind: error.constructor.name, message: error.message };
  if (error instanceof MappedIOError) {
    outcome.fields = Object.fromEntries(FAULT_FIELDS.map((name) => [name, error[name]]));
  }
  return outcome;
}

/** The error `call` throws or rejects with; fails the test when it succeeds. */
async function failure(what: string, call: () => unknown): Promise<Outcome> {
  try {
    await call();
  } catch (error) {
    return outcomeOf(error);
  }
  throw new assert.AssertionError({ message: `${what} succeeded; it should have failed` });
}

/** A call made the same way on either transport (results are awaited either way). */
type WindowCall = [
  string,
  (file: MappedFile | Awaited<ReturnType<MapPool["open"]>>) => unknown,
];

const BAD_ARGUMENTS: WindowCall[] = [
  ["read into an ArrayBuffer", (f) => f.read(new ArrayBuffer(4) as never, 0)],
  ["read at a string position", (f) => f.read(new Uint8Array(4), "8" as never)],
  ["read past the window", (f) => f.read(new Uint8Array(100), 16_330)],
  ["read at a fractional position", (f) => f.read(new Uint8Array(4), 1.5)],
  ["write from a plain array", (f) => f.write([1, 2] as never, 0)],
  ["flush with a number for a range", (f) => f.flush(3 as never)],
  ["flush past the window", (f) => f.flush({ position: 16_000, length: 1000 })],
  ["prefault with write: 'yes'", (f) => f.prefault({ write: "yes" as never })],
  ["advise an unknown advice", (f) => f.advise("often" as never)],
  ["advise a range with a bigint length", (f) => f.advise("normal", { length: 8n as never })],
  ["readMany with a string position", (f) => f.readMany(new Uint8Array(8), ["8"] as never, 4)],
  ["readMany past the window", (f) => f.readMany(new Uint8Array(8), [0, 16_382], 4)],
  ["readMany into a short target", (f) => f.readMany(new Uint8Array(7), [0, 4], 4)],
  ["readMany with a negative length", (f) => f.readMany(new Uint8Array(8), [0], -1)],
];

const FAULTS: WindowCall[] = [
  ["read across the truncated end", (f) => f.read(new Uint8Array(8192), 4096)],
  ["write across the truncated end", (f) => f.write(new Uint8Array(8192), 4096)],
  ["readMany whose second range is past the end", (f) => {
    return f.readMany(new Uint8Array(300), [0, 9000, 100], 100);
  }],
  ["prefault of the whole window", (f) => f.prefault()],
];

Deno.test("MappedFile and PoolFile refuse the same bad arguments with the same words", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 16_384);
  using map = MappedFile.open(path, { mode: "r+" });
  await using pool = new MapPool({ workers: 1 });
  const file = await pool.open(path, { mode: "r+" });
  for (const [what, call] of BAD_ARGUMENTS) {
    const inProcess = await failure(`MappedFile: ${what}`, () => call(map));
    const throughWorker = await failure(`PoolFile: ${what}`, () => call(file));
    assert.deepEqual(throughWorker, inProcess, what);
  }
});

Deno.test("MappedFile and PoolFile report the same truncation fault with the same fields", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 16_384);
  using map = MappedFile.open(path, { mode: "r+", writes: "map" });
  await using pool = new MapPool({ workers: 1 });
  const file = await pool.open(path, { mode: "r+", writes: "map" });
  // A real fault: the pages past the new end are gone for both maps.
  Deno.truncateSync(path, 5000);
  for (const [what, call] of FAULTS) {
    const inProcess = await failure(`MappedFile: ${what}`, () => call(map));
    const throughWorker = await failure(`PoolFile: ${what}`, () => call(file));
    assert.equal(inProcess.kind, "MappedIOError", `${what}: ${inProcess.message}`);
    assert.equal(inProcess.fields?.reason, "truncated", what);
    assert.deepEqual(throughWorker, inProcess, what);
  }
});

Deno.test("MappedFile and PoolFile check arguments before the map's state: same error when closed", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 16_384);
  const map = MappedFile.open(path, { mode: "r+" });
  await using pool = new MapPool({ workers: 1 });
  const file = await pool.open(path, { mode: "r+" });
  map.close();
  await file.close();
  const GOOD: WindowCall[] = [
    ["read", (f) => f.read(new Uint8Array(4), 0)],
    ["write", (f) => f.write(new Uint8Array(4), 0)],
    ["readMany", (f) => f.readMany(new Uint8Array(8), [0, 4], 4)],
    ["flush", (f) => f.flush()],
    ["prefault", (f) => f.prefault()],
    ["advise", (f) => f.advise("normal")],
  ];
  for (const [what, call] of [...BAD_ARGUMENTS, ...GOOD]) {
    const inProcess = await failure(`closed MappedFile: ${what}`, () => call(map));
    const throughWorker = await failure(`closed PoolFile: ${what}`, () => call(file));
    assert.deepEqual(throughWorker, inProcess, `closed: ${what}`);
  }
  const closed = await failure("closed read", () => file.read(new Uint8Array(4), 0));
  assert.equal(closed.kind, "MapClosedError");
});
