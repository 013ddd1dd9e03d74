// Bad input: every case gives a clear, typed error and leaves no mapping or descriptor behind.
import assert from "node:assert/strict";
import { GuardmapError, MappedFile } from "../mod.ts";
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
    (error) => error instanceof GuardmapError && error.code === "NOT_REGULAR_FILE",
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
