/**
 * The argument rows of bad_input.ts: wrong values and wrong types for every argument of every
 * public method. Not a script (runners skip `_` files).
 *
 * @module
 */
import { MappedFile, MapPool } from "../../mod.ts";
import {
  BAD_NUMBERS,
  type BadCase,
  numberRows,
  openMap,
  poolFile,
  POSITION,
  writeArrayBuffer,
  wrongType,
} from "./_bad_rows.ts";

/** Wrong types for every argument of every public method. */
export const ARGUMENT_ROWS: BadCase[] = [
  ...numberRows("MappedFile.read", "position", (c, v) => openMap(c).read(new Uint8Array(8), v)),
  ...numberRows("MappedFile.write", "position", (c, v) => openMap(c).write(new Uint8Array(8), v)),
  ...numberRows(
    "MappedFile.readMany",
    "length",
    (c, v) => openMap(c).readMany(new Uint8Array(64), [0, 8], v),
  ),
  ...numberRows(
    "MappedFile.readMany",
    "positions",
    (c, v) => openMap(c).readMany(new Uint8Array(64), [0, v], 8),
    // A message naming the range ("range 1 [-1, 7)") names the bad entry of positions too.
    { mentions: [["positions", "position", "range"]] },
  ),
  ...numberRows(
    "MappedFile.readArray",
    "index",
    (c, v) => openMap(c).readArray(Float64Array, v, 2),
  ),
  ...numberRows(
    "MappedFile.readArray",
    "count",
    (c, v) => openMap(c).readArray(Float64Array, 0, v),
  ),
  ...numberRows(
    "MappedFile.writeArray",
    "index",
    (c, v) => openMap(c).writeArray(new Float64Array(2), v),
  ),
  ...numberRows("MappedFile.flush", "position", (c, v) => openMap(c).flush({ position: v })),
  ...numberRows("MappedFile.flush", "length", (c, v) => openMap(c).flush({ length: v })),
  ...numberRows("MappedFile.prefault", "position", (c, v) => openMap(c).prefault({ position: v })),
  ...numberRows(
    "MappedFile.advise",
    "length",
    (c, v) => openMap(c).advise("normal", { length: v }),
  ),
  // Offsets and lengths of open take bigints on purpose (files past 2^53 bytes).
  ...numberRows("MappedFile.open", "offset", (c, v) => MappedFile.open(c.file, { offset: v }), {
    allowBigint: true,
  }),
  ...numberRows("MappedFile.open", "length", (c, v) => MappedFile.open(c.file, { length: v }), {
    allowBigint: true,
  }),
  wrongType("MappedFile.open", "path", "a number", () => MappedFile.open(5 as never)),
  wrongType("MappedFile.open", "options", "a number", (c) => MappedFile.open(c.file, 5 as never)),
  wrongType(
    "MappedFile.open",
    "salvage",
    "a string",
    (c) => MappedFile.open(c.file, { salvage: "yes" as never }),
  ),
  wrongType(
    "MappedFile.open",
    "writes",
    "an unknown string",
    (c) => MappedFile.open(c.file, { mode: "r+", writes: "fd" as never }),
  ),
  wrongType(
    "MappedFile.readArray",
    "type",
    "not a typed array class",
    (c) => openMap(c).readArray(Array as never, 0, 2),
  ),
  wrongType(
    "MappedFile.writeArray",
    "values",
    "a plain array",
    (c) => openMap(c).writeArray([1, 2] as never, 0),
  ),
  wrongType(
    "MappedFile.readMany",
    "positions",
    "a string",
    (c) => openMap(c).readMany(new Uint8Array(64), "0,8" as never, 8),
  ),
  wrongType(
    "MappedFile.readMany",
    "target",
    "a plain array",
    (c) => openMap(c).readMany([0, 0] as never, [0], 2),
  ),
  wrongType("MappedFile.flush", "range", "a string", (c) => openMap(c).flush("all" as never)),
  wrongType("MappedFile.prefault", "options", "a number", (c) => openMap(c).prefault(5 as never)),
  wrongType(
    "MappedFile.prefault",
    "write",
    "a string",
    (c) => openMap(c).prefault({ write: "yes" as never }),
  ),
  wrongType(
    "MappedFile.advise",
    "advice",
    "an unknown string",
    (c) => openMap(c).advise("fast" as never),
  ),
  wrongType("MappedFile.advise", "advice", "a number", (c) => openMap(c).advise(3 as never)),
  wrongType(
    "MappedFile.advise",
    "range",
    "a number",
    (c) => openMap(c).advise("normal", 5 as never),
  ),
  wrongType("new MapPool", "options", "a number", () => new MapPool(5 as never)),
  wrongType("new MapPool", "workers", "a string", () => new MapPool({ workers: "2" as never })),
  wrongType(
    "new MapPool",
    "stagingBytes",
    "a string",
    () => new MapPool({ stagingBytes: "65536" as never }),
  ),
  wrongType("new MapPool", "callTimeoutMs", "negative", () => new MapPool({ callTimeoutMs: -1 })),
  wrongType(
    "new MapPool",
    "startTimeoutMs",
    "a string",
    () => new MapPool({ startTimeoutMs: "1000" as never }),
  ),
  wrongType("new MapPool", "restart", "a string", () => new MapPool({ restart: "no" as never })),
  wrongType(
    "new MapPool",
    "maxFailedStarts",
    "NaN",
    () => new MapPool({ restart: { maxFailedStarts: NaN } }),
  ),
  wrongType("MapPool.open", "path", "a number", async () => {
    await using pool = new MapPool({ workers: 1 });
    return await pool.open(5 as never);
  }),
  wrongType("MapPool.open", "options", "a string", async (c) => {
    await using pool = new MapPool({ workers: 1 });
    return await pool.open(c.file, "r+" as never);
  }),
  ...["a numeric string", "negative", "a bigint"].map((label) => {
    const value = BAD_NUMBERS.find(([name]) => name === label)![1];
    return wrongType(
      "PoolFile.read",
      "position",
      label,
      async (c) => await (await poolFile(c)).read(new Uint8Array(8), value as never),
      POSITION,
    );
  }),
  ...["a numeric string", "NaN"].map((label) => {
    const value = BAD_NUMBERS.find(([name]) => name === label)![1];
    return wrongType(
      "PoolFile.write",
      "position",
      label,
      async (c) => await (await poolFile(c)).write(new Uint8Array(8), value as never),
      POSITION,
    );
  }),
  {
    id: "PoolFile.write.source=an_ArrayBuffer",
    call: "PoolFile.write: source an ArrayBuffer",
    expect: "typed-or-works",
    mentions: [["source"]],
    timeoutMs: 12000,
    run: async (context) => {
      const file = await poolFile(context);
      const written = await writeArrayBuffer(file);
      const back = new Uint8Array(4);
      await file.read(back, 0);
      if (written !== 4 || back.join() !== "9,8,7,6") {
        throw new Error(`write(ArrayBuffer) returned ${written} and wrote ${back.join()}`);
      }
      return "accepted and wrote all 4 bytes";
    },
  },
  wrongType(
    "PoolFile.read",
    "target",
    "a plain array",
    async (c) => await (await poolFile(c)).read([0, 0] as never, 0),
  ),
  wrongType(
    "PoolFile.readMany",
    "length",
    "a string",
    async (c) => await (await poolFile(c)).readMany(new Uint8Array(64), [0], "8" as never),
  ),
  wrongType(
    "PoolFile.flush",
    "position",
    "a string",
    async (c) => await (await poolFile(c)).flush({ position: "0" as never }),
  ),
  wrongType(
    "PoolFile.prefault",
    "length",
    "huge (2^60)",
    async (c) => await (await poolFile(c)).prefault({ length: 2 ** 60 }),
  ),
  wrongType(
    "PoolFile.advise",
    "advice",
    "an unknown string",
    async (c) => await (await poolFile(c)).advise("fast" as never),
  ),
  wrongType(
    "PoolFile.run",
    "name",
    "a number",
    async (c) =>
      await (await poolFile(c)).run(new URL("../kernels/kernels.ts", import.meta.url), 5 as never),
    [["name", "function", "export"]],
  ),
];
