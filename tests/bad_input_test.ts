// Bad input: every case gives a clear, typed error and leaves no mapping or descriptor behind.
import assert from "node:assert/strict";
import {
  FileTooLargeError,
  type GuardmapError,
  MappedFile,
  MapPool,
  NotRegularFileError,
} from "../mod.ts";
import { openDescriptors, runScript, scratch, writePattern } from "./util.ts";

function mapsOfThisProcess(dir: string): number {
  return Deno.readTextFileSync("/proc/self/maps").split("\n")
    .filter((line) => line.includes(dir)).length;
}

/** Asserts that `open` throws what `check` expects and leaves nothing open. */
function refuses(dir: string, open: () => unknown, check: (error: unknown) => boolean) {
  const descriptors = openDescriptors();
  assert.throws(open, (error: unknown) => {
    assert.ok(error instanceof Error && error.message.length > 20, `unclear: ${error}`);
    return check(error);
  });
  assert.equal(openDescriptors(), descriptors, "a descriptor was left open");
  assert.equal(mapsOfThisProcess(dir), 0, "a mapping was left behind");
}

const isRange = (error: unknown) => error instanceof RangeError;
const isType = (error: unknown) => error instanceof TypeError;

Deno.test("offsets and lengths: negative, NaN, fractional, huge", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 10_000);
  const bad: [number | bigint, string][] = [
    [-1, "negative"],
    [-1n, "negative bigint"],
    [NaN, "NaN"],
    [0.5, "fractional"],
    [Infinity, "infinite"],
    [2 ** 53, "unsafe integer"],
    [2n ** 63n, "past 2^63 - 1"],
  ];
  for (const [value] of bad) {
    refuses(tmp.dir, () => MappedFile.open(path, { offset: value }), isRange);
    refuses(tmp.dir, () => MappedFile.open(path, { length: value }), isRange);
  }
  refuses(tmp.dir, () => MappedFile.open(path, { length: 0 }), isRange);
  refuses(tmp.dir, () => MappedFile.open(path, { offset: 2n ** 62n, length: 2n ** 62n }), isRange);
  refuses(tmp.dir, () => MappedFile.open(path, { offset: "1" as unknown as number }), isType);
  refuses(tmp.dir, () => MappedFile.open(path, { mode: "rw" as "r" }), isType);
  refuses(tmp.dir, () => MappedFile.open(tmp.path("new.bin"), { mode: "w+" }), isType);
});

Deno.test("windows past the end of the file in modes r, r+ and c", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 10_000);
  for (const mode of ["r", "r+", "c"] as const) {
    refuses(tmp.dir, () => MappedFile.open(path, { mode, length: 10_001 }), isRange);
    refuses(tmp.dir, () => MappedFile.open(path, { mode, offset: 9_999, length: 2 }), isRange);
    refuses(tmp.dir, () => MappedFile.open(path, { mode, offset: 10_001 }), isRange);
    refuses(tmp.dir, () => MappedFile.open(path, { mode, offset: 6n * 2n ** 30n }), isRange);
  }
  // Exactly at the end is fine.
  MappedFile.open(path, { offset: 9_999 }).close();
});

Deno.test("empty files and a window at the very end are refused", () => {
  using tmp = scratch();
  const empty = tmp.path("empty.bin");
  Deno.writeFileSync(empty, new Uint8Array(0));
  refuses(tmp.dir, () => MappedFile.open(empty), (error) => {
    return error instanceof RangeError && /empty/.test(error.message);
  });
  const path = tmp.path("data.bin");
  writePattern(path, 100);
  refuses(tmp.dir, () => MappedFile.open(path, { offset: 100 }), isRange);
});

Deno.test("missing files, directories and other non-files", () => {
  using tmp = scratch();
  refuses(
    tmp.dir,
    () => MappedFile.open(tmp.path("missing.bin")),
    (error) => error instanceof Deno.errors.NotFound && /missing\.bin/.test(error.message),
  );
  refuses(
    tmp.dir,
    () => MappedFile.open(tmp.path("no/such/dir/file.bin"), { mode: "w+", length: 1 }),
    (error) => error instanceof Deno.errors.NotFound,
  );
  refuses(tmp.dir, () => MappedFile.open(tmp.dir), (e) => e instanceof Deno.errors.IsADirectory);
  refuses(
    tmp.dir,
    () => MappedFile.open(tmp.dir, { mode: "r+" }),
    (e) => e instanceof Deno.errors.IsADirectory,
  );
  refuses(
    tmp.dir,
    () => MappedFile.open("/dev/null"),
    (error) =>
      error instanceof NotRegularFileError && error.code === "NOT_REGULAR_FILE" &&
      error.kind === "character device" &&
      /not a regular file: character device/.test(error.message),
  );
  refuses(tmp.dir, () => MappedFile.open(""), isType);
});

Deno.test("no permission: Deno's --allow-read/--allow-write are not bypassed by FFI", async () => {
  using tmp = scratch();
  const path = tmp.path("secret.bin");
  writePattern(path, 100);
  const allowed = tmp.path("allowed.bin");
  writePattern(allowed, 100);
  const library = new URL("../zig/", import.meta.url).pathname;
  const result = await runScript(
    `
    import { MappedFile } from "GUARDMAP_MOD";
    const tryOpen = (path, mode) => {
      try { MappedFile.open(path, { mode }).close(); return "opened"; }
      catch (error) { return error.name; }
    };
    console.log(tryOpen(${JSON.stringify(path)}, "r"));
    console.log(tryOpen(${JSON.stringify(allowed)}, "r"));
    console.log(tryOpen(${JSON.stringify(allowed)}, "r+"));
  `,
    ["--allow-ffi", `--allow-read=${allowed},${library}`],
  );
  assert.equal(result.stdout.trim(), "NotCapable\nopened\nNotCapable", result.stderr);
  assert.equal(result.code, 0, result.stderr);
});

/** Asserts a TypeError whose message names `argument`. */
const namesArgument = (argument: string) => (error: unknown) =>
  error instanceof TypeError && error.message.includes(argument);

Deno.test("read and write refuse what is not a typed array or DataView, naming the argument", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const original = writePattern(path, 100);
  using map = MappedFile.open(path, { mode: "r+" });
  const notViews: unknown[] = [new ArrayBuffer(4), [1, 2], "ab", null, undefined, 7, {}];
  for (const value of notViews) {
    assert.throws(() => map.write(value as Uint8Array, 0), namesArgument("write: source"));
    assert.throws(() => map.read(value as Uint8Array, 0), namesArgument("read: target"));
    assert.throws(
      () => map.readMany(value as Uint8Array, [0], 1),
      namesArgument("readMany: target"),
    );
  }
  assert.throws(
    () => map.read(new Uint8Array(2), "5" as unknown as number),
    namesArgument("position"),
  );
  assert.throws(
    () => map.write(new Uint8Array(2), null as unknown as number),
    namesArgument("position"),
  );
  assert.deepEqual(Deno.readFileSync(path), original, "nothing was written");
});

Deno.test("open options: a bare mode string, null values and unknown keys are TypeErrors", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 100);
  const open = (options: unknown) => () => MappedFile.open(path, options as { mode: "r" });
  refuses(tmp.dir, open("r+"), namesArgument('{ mode: "r+" }'));
  refuses(tmp.dir, open(null), namesArgument("options"));
  refuses(tmp.dir, open({ mode: null }), namesArgument("options.mode"));
  refuses(tmp.dir, open({ offset: null }), namesArgument("options.offset"));
  refuses(tmp.dir, open({ length: null }), namesArgument("options.length"));
  refuses(tmp.dir, open({ writes: null }), namesArgument("options.writes"));
  refuses(tmp.dir, open({ salvage: "yes" }), namesArgument("options.salvage"));
  refuses(tmp.dir, open({ mod: "r+" }), namesArgument('unknown key "mod"'));
});

Deno.test("pool calls check their arguments the same way", async () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  writePattern(path, 100);
  await using pool = new MapPool({ workers: 1 });
  await assert.rejects(
    () => pool.open(path, "r+" as unknown as { mode: "r" }),
    namesArgument("options"),
  );
  await assert.rejects(
    () => pool.open(path, { mode: null } as unknown as { mode: "r" }),
    namesArgument("options.mode"),
  );
  const file = await pool.open(path, { mode: "r+" });
  for (const value of [new ArrayBuffer(4), [1], "ab"] as unknown[]) {
    await assert.rejects(() => file.write(value as Uint8Array, 0), namesArgument("write: source"));
    await assert.rejects(() => file.read(value as Uint8Array, 0), namesArgument("read: target"));
    await assert.rejects(
      () => file.readMany(value as Uint8Array, [0], 1),
      namesArgument("readMany: target"),
    );
  }
  await assert.rejects(
    () => file.read(new Uint8Array(1), "1" as unknown as number),
    namesArgument("position"),
  );
});

Deno.test("paths: NUL, too long, a name too long, ELOOP, ENOTDIR, w+ past the largest file", () => {
  using tmp = scratch();
  refuses(
    tmp.dir,
    () => MappedFile.open(tmp.path("a\0b")),
    namesArgument("path must not contain a NUL"),
  );
  const isCode = (code: string, pattern: RegExp) => (error: unknown) =>
    error instanceof Error && (error as GuardmapError).code === code && pattern.test(error.message);
  refuses(
    tmp.dir,
    () => MappedFile.open("/" + "a/".repeat(2100) + "f"),
    isCode("ENAMETOOLONG", /the path is too long \(ENAMETOOLONG\): 4202 bytes/),
  );
  refuses(
    tmp.dir,
    () => MappedFile.open(tmp.path("n".repeat(300))),
    isCode("ENAMETOOLONG", /is 300 bytes, and most file systems allow at most 255/),
  );
  refuses(
    tmp.dir,
    () => MappedFile.open(tmp.path("n".repeat(300)), { mode: "w+", length: 10 }),
    isCode("ENAMETOOLONG", /is 300 bytes/),
  );
  Deno.symlinkSync(tmp.path("b"), tmp.path("a"));
  Deno.symlinkSync(tmp.path("a"), tmp.path("b"));
  refuses(
    tmp.dir,
    () => MappedFile.open(tmp.path("a")),
    (error) =>
      error instanceof Deno.errors.FilesystemLoop && isCode("ELOOP", /symbolic links/)(error),
  );
  const file = tmp.path("file.bin");
  const original = writePattern(file, 100);
  refuses(
    tmp.dir,
    () => MappedFile.open(`${file}/x`),
    (error) =>
      error instanceof Deno.errors.NotADirectory && isCode("ENOTDIR", /not a directory/)(error),
  );
  // 2^62 bytes: past any Linux file system's largest file (ext4: 16 TiB, tmpfs: 2^63 - 1 is
  // refused as ENOSPC by the space check instead). Either way the file is not touched.
  refuses(
    tmp.dir,
    () => MappedFile.open(file, { mode: "w+", length: 2n ** 62n }),
    (error) => error instanceof FileTooLargeError || (error as GuardmapError).code === "ENOSPC",
  );
  assert.deepEqual(Deno.readFileSync(file), original, "w+ left the file as it was");
});

Deno.test('"w+" through a dangling symbolic link creates its target, as open(2) does', () => {
  using tmp = scratch();
  Deno.symlinkSync(tmp.path("target.bin"), tmp.path("link.bin"));
  using map = MappedFile.open(tmp.path("link.bin"), { mode: "w+", length: 10 });
  map.write(new Uint8Array([5]), 9);
  map.flush();
  assert.equal(Deno.statSync(tmp.path("target.bin")).size, 10);
  assert.ok(Deno.lstatSync(tmp.path("link.bin")).isSymlink);
});

Deno.test("window ranges, options, positions and element types: TypeErrors naming the argument", () => {
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const original = writePattern(path, 100);
  using map = MappedFile.open(path, { mode: "r+" });
  const target = new Uint8Array(16);
  const calls: [() => unknown, string, string][] = [
    [() => map.readMany(target, "0,8" as never, 8), "readMany: positions must", 'string "0,8"'],
    [() => map.readMany(target, [0, "8"] as never, 8), "readMany: positions[1] must", "number 8"],
    [() => map.readMany(target, [0, 8n] as never, 8), "readMany: positions[1] must", "8n"],
    [() => map.readMany(target, [0], "8" as never), "readMany: length must", 'string "8"'],
    [() => map.flush({ position: "8" as never }), "flush: range.position must", "number 8"],
    [() => map.flush({ position: 8n as never }), "flush: range.position must", "Number(8n)"],
    [() => map.flush({ length: "8" as never }), "flush: range.length must", 'string "8"'],
    [() => map.flush({ length: 8n as never }), "flush: range.length must", "bigint 8n"],
    [() => map.flush({ position: null as never }), "flush: range.position must", "null"],
    [() => map.flush("all" as never), "flush: range must be an object", 'string "all"'],
    [() => map.flush({ postion: 8 } as never), 'range has an unknown key "postion"', "length"],
    [() => map.prefault({ position: 8n as never }), "prefault: options.position", "bigint"],
    [() => map.prefault({ length: "8" as never }), "prefault: options.length must", "string"],
    [() => map.prefault(5 as never), "prefault: options must be an object", "{ position: 5 }"],
    [() => map.prefault({ write: "yes" as never }), "prefault: options.write must", '"yes"'],
    [() => map.advise("normal", { length: "8" as never }), "advise: range.length", "string"],
    [() => map.advise("normal", { position: 8n as never }), "advise: range.position", "8n"],
    [() => map.advise("normal", 5 as never), "advise: range must be an object", "number 5"],
    [() => map.advise(3 as never), "advise: advice must be one of", "number 3"],
    [() => map.writeArray([1, 2] as never, 0), "writeArray: values must", "Float64Array.from"],
    [() => map.writeArray(new DataView(new ArrayBuffer(8)) as never, 0), "values", "write()"],
    [() => map.readArray(Array as never, 0, 2), "readArray: type must", "function Array"],
    [() => map.readArray(Object as never, 0, 2), "readArray: type must", "function Object"],
    [() => map.readArray(Float64Array, "1" as never, 2), "readArray: index must", "number 1"],
    [() => map.readArray(Float64Array, 0, 2n as never), "readArray: count must", "bigint 2n"],
  ];
  for (const [call, argument, given] of calls) {
    assert.throws(call, (error: unknown) => {
      assert.ok(error instanceof TypeError, `${argument}: not a TypeError: ${error}`);
      assert.ok(error.message.includes(argument), `does not name ${argument}: ${error.message}`);
      assert.ok(error.message.includes(given), `does not say ${given}: ${error.message}`);
      return true;
    });
  }
  assert.deepEqual(target, new Uint8Array(16), "readMany copied nothing");
  assert.deepEqual(Deno.readFileSync(path), original, "nothing was written");
  // What is right still works: defaults, numbers in any array of numbers.
  map.flush();
  map.prefault({ write: true, position: 8 });
  map.advise("normal", { position: 8, length: 8 });
  assert.equal(map.readMany(target, new Uint32Array([0, 8]) as never, 8), 16);
  assert.deepEqual(target, original.subarray(0, 16));
});
