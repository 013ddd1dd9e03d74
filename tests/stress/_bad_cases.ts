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
import { ARGUMENT_ROWS } from "./_bad_arguments.ts";
import {
  type BadCase,
  type CaseContext,
  fifo,
  fileByte,
  mappingsOf,
  openMap,
  poolFile,
  writeArrayBuffer,
  wrongType,
} from "./_bad_rows.ts";

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

/** Every row, named ones first. */
export const CASES: BadCase[] = [...NAMED, ...ARGUMENT_ROWS];

/** How many of CASES are named rows (the rest are the argument rows). */
export const NAMED_ROWS: number = NAMED.length;
