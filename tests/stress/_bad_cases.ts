/**
 * The rows of bad_input.ts: each bad input, what it must give, and how to run it. Not a script
 * (runners skip `_` files).
 *
 * A row passes when its call gives a typed error (TypeError, RangeError, a Deno.errors class,
 * or a GuardmapError with a stable code) whose message, with the scratch paths taken out,
 * contains at least one word of every group in `mentions` (the argument it names, and what is
 * wrong with it): the exact wording belongs to the library. Rows marked `typed-or-works` may
 * instead accept the input deliberately, and then their `run` checks that the call did what it
 * said (a call that silently did nothing throws a plain Error, which fails the row).
 *
 * @module
 */
import { join } from "node:path";
import { MappedFile, MapPool } from "../../mod.ts";

/** What a row's process gets. */
export interface CaseContext {
  /** Scratch directory of this row. */
  dir: string;
  /** A file of FILE_BYTES pattern bytes in `dir`. */
  file: string;
}

/** One row of the table. */
export interface BadCase {
  /** Unique id (also what `--case` takes). */
  id: string;
  /** The call, as the table shows it. */
  call: string;
  /** The item of issue 10 it comes from, if any. */
  issue?: number;
  /** `typed`: must throw a typed error; `typed-or-works`: or succeed correctly; `works`: succeed. */
  expect: "typed" | "typed-or-works" | "works";
  /** Groups of words; the message must contain one word of each group (case-insensitive). */
  mentions: string[][];
  /** How long the row's process may take; default 8000 ms. */
  timeoutMs?: number;
  /** The call. */
  run: (context: CaseContext) => unknown;
}

/** Size of the scratch file: 2 MiB, so that pool reads of 1 MiB or more fit. */
export const FILE_BYTES = 2 * 1024 * 1024;

/** The byte at offset `i` of the scratch file. */
export const fileByte = (i: number): number => (i * 13 + 5) & 0xff;

const POSITION = [["position"]];
const sh = (command: string, ...args: string[]) => {
  const result = new Deno.Command(command, { args }).outputSync();
  if (!result.success) throw new Error(`${command} ${args.join(" ")} failed`);
};
const fifo = (dir: string) => {
  // Not named "fifo": the message quotes the path, which must not count as naming the kind.
  const path = join(dir, "special");
  sh("mkfifo", path);
  return path;
};
const mappingsOf = (path: string) =>
  Deno.readTextFileSync("/proc/self/maps").split("\n").filter((line) => line.includes(path))
    .length;
const openMap = (context: CaseContext) => MappedFile.open(context.file, { mode: "r+" });
const pools: MapPool[] = [];
async function poolFile(context: CaseContext) {
  const pool = new MapPool({ workers: 1, startTimeoutMs: 3000 });
  pools.push(pool);
  return await pool.open(context.file, { mode: "r+" });
}

/** Closes the pools the rows started (a pool left running at exit may leave a /dev/shm file). */
export async function closePools(): Promise<void> {
  await Promise.allSettled(pools.map((pool) => pool.close()));
}

/** The same bad values for every numeric argument. */
const BAD_NUMBERS: [string, unknown][] = [
  ["a numeric string", "8"],
  ["negative", -1],
  ["NaN", NaN],
  ["a bigint", 8n],
  ["huge (2^60)", 2 ** 60],
  ["fractional", 1.5],
];

/** Rows for one numeric argument of one method, for every value of BAD_NUMBERS. */
function numberRows(
  method: string,
  argument: string,
  call: (context: CaseContext, value: never) => unknown,
  options: { allowBigint?: boolean; mentions?: string[][] } = {},
): BadCase[] {
  const values = BAD_NUMBERS.filter(([label]) => !(options.allowBigint && label === "a bigint"));
  return values.map(([label, value]) => ({
    id: `${method}.${argument}=${label.replaceAll(" ", "_")}`,
    call: `${method}: ${argument} ${label}`,
    expect: "typed" as const,
    mentions: options.mentions ?? [[argument]],
    run: (context: CaseContext) => call(context, value as never),
  }));
}

/** A row where an argument has the wrong type altogether. */
function wrongType(
  method: string,
  argument: string,
  label: string,
  run: (context: CaseContext) => unknown,
  mentions: string[][] = [[argument]],
): BadCase {
  return {
    id: `${method}.${argument}=${label.replaceAll(" ", "_")}`,
    call: `${method}: ${argument} ${label}`,
    expect: "typed",
    mentions,
    run,
  };
}

/** Calls `write` with an ArrayBuffer: a TypeError naming it, or a real write of every byte. */
function writeArrayBuffer(map: { write(source: never, position: number): unknown }) {
  const buffer = new Uint8Array([9, 8, 7, 6]).buffer;
  return map.write(buffer as never, 0);
}

const RESIZABLE_BYTES = 1536 * 1024;

/** Named rows: the inputs of issue 10, items 5, 7, 8 and 9. */
const NAMED: BadCase[] = [
  {
    id: "fifo-r",
    call: 'MappedFile.open(a FIFO, { mode: "r" })',
    issue: 5,
    expect: "typed",
    mentions: [["fifo", "regular file", "pipe"]],
    timeoutMs: 5000,
    run: ({ dir }) => MappedFile.open(fifo(dir)),
  },
  {
    id: "fifo-c",
    call: 'MappedFile.open(a FIFO, { mode: "c" })',
    issue: 5,
    expect: "typed",
    mentions: [["fifo", "regular file", "pipe"]],
    timeoutMs: 5000,
    run: ({ dir }) => MappedFile.open(fifo(dir), { mode: "c" }),
  },
  {
    id: "fifo-pool",
    call: "MapPool.open(a FIFO) (startTimeoutMs 3000)",
    issue: 5,
    expect: "typed",
    mentions: [["fifo", "regular file", "pipe"]],
    timeoutMs: 12000,
    run: async ({ dir }) => {
      await using pool = new MapPool({ workers: 1, startTimeoutMs: 3000 });
      return await pool.open(fifo(dir));
    },
  },
  {
    id: "socket",
    call: "MappedFile.open(a Unix socket)",
    issue: 9,
    expect: "typed",
    mentions: [["socket", "regular file"]],
    run: ({ dir }) => {
      // Not named "socket": the message quotes the path, which must not count as naming it.
      const path = join(dir, "endpoint");
      const listener = Deno.listen({ transport: "unix", path });
      try {
        return MappedFile.open(path);
      } finally {
        listener.close();
      }
    },
  },
  {
    id: "proc-status",
    call: "MappedFile.open(/proc/self/status)",
    expect: "typed",
    mentions: [["empty", "size", "regular file", "proc"]],
    run: () => MappedFile.open("/proc/self/status"),
  },
  {
    id: "proc-maps-length",
    call: "MappedFile.open(/proc/self/maps, { length: 4096 })",
    expect: "typed",
    mentions: [["length", "end of the file", "size", "regular file", "proc"]],
    run: () => MappedFile.open("/proc/self/maps", { length: 4096 }),
  },
  {
    id: "symlink-loop",
    call: "MappedFile.open(a symlink loop)",
    issue: 9,
    expect: "typed",
    mentions: [["symlink", "symbolic link", "loop", "ELOOP", "levels"]],
    run: ({ dir }) => {
      Deno.symlinkSync(join(dir, "b"), join(dir, "a"));
      Deno.symlinkSync(join(dir, "a"), join(dir, "b"));
      return MappedFile.open(join(dir, "a"));
    },
  },
  {
    id: "nul-in-path",
    call: "MappedFile.open(a path with a NUL byte)",
    issue: 9,
    expect: "typed",
    mentions: [["path"], ["nul", "null", "\\0", "zero byte", "\\u0000"]],
    run: ({ dir }) => MappedFile.open(`${dir}/a\0b`),
  },
  {
    id: "path-4096",
    call: "MappedFile.open(a path of 4,096 bytes)",
    issue: 9,
    expect: "typed",
    mentions: [["path"], ["long", "4095", "4096", "4,095", "4,096", "PATH_MAX"]],
    run: ({ dir }) => {
      let path = dir;
      while (path.length < 4096 - 101) path += `/${"x".repeat(100)}`;
      path += `/${"x".repeat(4096 - path.length - 1)}`;
      if (new TextEncoder().encode(path).length !== 4096) throw new Error("test bug: length");
      return MappedFile.open(path);
    },
  },
  {
    id: "name-300",
    call: "MappedFile.open(a file name of 300 bytes)",
    issue: 9,
    expect: "typed",
    mentions: [["name", "component"], ["long", "255", "NAME_MAX"]],
    run: ({ dir }) => MappedFile.open(join(dir, "y".repeat(300))),
  },
  {
    id: "w+-past-largest-file",
    call: 'MappedFile.open(path, { mode: "w+", offset: 2n ** 62n, length: 4096 })',
    issue: 9,
    expect: "typed",
    mentions: [["largest", "too large", "maximum", "EFBIG", "file size", "limit"]],
    run: ({ dir }) =>
      MappedFile.open(join(dir, "big"), { mode: "w+", offset: 2n ** 62n, length: 4096 }),
  },
  {
    id: "map-cap",
    call: "the 4,097th open map",
    issue: 9,
    expect: "typed",
    mentions: [["4096", "4,096"], ["cap", "limit", "most", "maximum", "too many", "allows"]],
    run: ({ file }) => {
      const held: MappedFile[] = [];
      // length 8192: the message quotes the window, which must not count as naming the cap.
      for (let i = 0; i < 5000; i++) held.push(MappedFile.open(file, { length: 8192 }));
      return `opened ${held.length} maps without an error`;
    },
  },
  {
    id: "write-arraybuffer",
    call: "MappedFile.write(an ArrayBuffer, 0)",
    issue: 8,
    expect: "typed-or-works",
    mentions: [["source"]],
    run: (context) => {
      using map = openMap(context);
      const written = writeArrayBuffer(map);
      const back = new Uint8Array(4);
      map.read(back, 0);
      if (written !== 4 || back.join() !== "9,8,7,6") {
        throw new Error(`write(ArrayBuffer) returned ${written} and wrote ${back.join()}`);
      }
      return "accepted and wrote all 4 bytes";
    },
  },
  {
    id: "read-arraybuffer",
    call: "MappedFile.read(an ArrayBuffer, 0)",
    issue: 8,
    expect: "typed-or-works",
    mentions: [["target"]],
    run: (context) => {
      using map = openMap(context);
      const buffer = new ArrayBuffer(4);
      const read = map.read(buffer as never, 1);
      const got = [...new Uint8Array(buffer)];
      if (read !== 4 || got.join() !== [1, 2, 3, 4].map(fileByte).join()) {
        throw new Error(`read(ArrayBuffer) returned ${read} and read ${got.join()}`);
      }
      return "accepted and read all 4 bytes";
    },
  },
  wrongType(
    "MappedFile.write",
    "source",
    "a plain array",
    (c) => openMap(c).write([1, 2] as never, 0),
  ),
  wrongType("MappedFile.write", "source", "a string", (c) => openMap(c).write("ab" as never, 0)),
  wrongType(
    "MappedFile.read",
    "target",
    "a plain array",
    (c) => openMap(c).read([0, 0] as never, 0),
  ),
  wrongType("MappedFile.read", "target", "a string", (c) => openMap(c).read("ab" as never, 0)),
  {
    id: "open-mode-string",
    call: 'MappedFile.open(path, "r+")',
    issue: 8,
    expect: "typed",
    mentions: [["options"]],
    run: ({ file }) => MappedFile.open(file, "r+" as never),
  },
  {
    id: "open-mode-null",
    call: "MappedFile.open(path, { mode: null })",
    issue: 8,
    expect: "typed",
    mentions: [["mode"]],
    run: ({ file }) => MappedFile.open(file, { mode: null as never }),
  },
  {
    id: "close-after-structuredClone",
    call: "close() after structuredClone(view.buffer, { transfer })",
    issue: 7,
    expect: "works",
    mentions: [],
    run: (context) =>
      closeAfterTransfer(context, (buffer) => {
        structuredClone(buffer, { transfer: [buffer] });
      }),
  },
  {
    id: "close-after-postMessage",
    call: "close() after postMessage(view.buffer, [view.buffer])",
    issue: 7,
    expect: "works",
    mentions: [],
    run: (context) =>
      closeAfterTransfer(context, (buffer) => {
        const channel = new MessageChannel();
        channel.port1.postMessage(buffer, [buffer]);
        channel.port1.close();
        channel.port2.close();
      }),
  },
  {
    id: "pool-read-resizable",
    call: "PoolFile.read(1.5 MiB view of a resizable ArrayBuffer)",
    issue: 9,
    expect: "typed-or-works",
    mentions: [["target"], ["resizable"]],
    timeoutMs: 12000,
    run: async (context) => {
      const file = await poolFile(context);
      const buffer = new ArrayBuffer(RESIZABLE_BYTES, { maxByteLength: 2 * RESIZABLE_BYTES });
      const target = new Uint8Array(buffer, 0, RESIZABLE_BYTES);
      const read = await file.read(target, 0);
      for (let i = 0; i < RESIZABLE_BYTES; i++) {
        if (target[i] !== fileByte(i)) throw new Error(`byte ${i}: ${target[i]}`);
      }
      if (read !== RESIZABLE_BYTES) throw new Error(`read returned ${read}`);
      return `accepted and read ${read} bytes`;
    },
  },
];

function closeAfterTransfer(context: CaseContext, transfer: (buffer: ArrayBuffer) => void) {
  const map = openMap(context);
  const view = map.unsafeView();
  transfer(view.buffer as ArrayBuffer);
  map.close();
  if (!map.closed) throw new Error("close() returned but the map says it is open");
  const left = mappingsOf(context.file);
  if (left > 0) throw new Error(`close() returned but ${left} mappings of the file remain`);
  return "closed and unmapped";
}

/** Wrong types for every argument of every public method. */
const MATRIX: BadCase[] = [
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

/** Every row, named ones first. */
export const CASES: BadCase[] = [...NAMED, ...MATRIX];

/** How many of CASES are named rows (the rest are the argument matrix). */
export const NAMED_ROWS: number = NAMED.length;
