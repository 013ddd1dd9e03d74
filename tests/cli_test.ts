// The command-line tool (cli/), run as a subprocess the way people run it. The fault tests mount
// faultfs (tests/fuse/), which answers EIO for chosen byte ranges of a file, so the kernel raises
// real read faults on the CLI's mapped pages; nothing is mocked. Expected bytes always come from
// the backing file, which faultfs never fails.
//
// Page cache: a page read successfully stays cached, and a page whose read failed is not cached
// as valid. Each test writes its file through the backing directory before mapping it, and
// `fs.invalidate()` drops cached pages where a test reads the same file again.
import assert from "node:assert/strict";
import { type FaultFs, fuseTest, mountFaultFs } from "./fuse/fault_fs.ts";
import { assertBytes, pattern, scratch, sparseFile } from "./util.ts";
import { blocksOf, cli, PAGE, slowRescue } from "./cli/_run.ts";

const decoder = new TextDecoder();

const FILE_BYTES = 8 * 2 ** 20;
// Two injected ranges: one that starts and ends inside pages (so the whole pages holding it
// fail), one page-aligned run of three pages. Both lie past the first readahead window.
const FAULTS = [
  { offset: 1_000_000, length: 10_000 }, // pages 244..246: [999_424, 1_011_712)
  { offset: 5 * 2 ** 20, length: 3 * PAGE },
];
const BAD: Array<[number, number]> = [[999_424, 3 * PAGE], [5 * 2 ** 20, 3 * PAGE]];

async function injectFaults(fs: FaultFs): Promise<void> {
  for (const fault of FAULTS) await fs.fail({ operations: "read", file: "data.bin", ...fault });
}

for (const isolated of [false, true]) {
  const mode = isolated ? "--isolated" : "in-process";
  fuseTest(
    `cli scan (${mode}): reports exactly the injected bad pages, mapfile and JSON`,
    async () => {
      await using fs = await mountFaultFs();
      Deno.writeFileSync(fs.backing("data.bin"), pattern(0, FILE_BYTES));
      await injectFaults(fs);
      const extra = isolated ? ["--isolated"] : [];

      const map = await cli("scan", fs.path("data.bin"), ...extra);
      assert.equal(map.code, 1, map.stderr);
      assert.match(map.stdout, /^# Mapfile\. Created by guardmap/);
      assert.deepEqual(blocksOf(map.stdout), [
        [0, BAD[0][0], "+"],
        [BAD[0][0], BAD[0][1], "-"],
        [BAD[0][0] + BAD[0][1], BAD[1][0] - BAD[0][0] - BAD[0][1], "+"],
        [BAD[1][0], BAD[1][1], "-"],
        [BAD[1][0] + BAD[1][1], FILE_BYTES - BAD[1][0] - BAD[1][1], "+"],
      ]);
      assert.match(map.stderr, /2 unreadable ranges/);

      // A range starting mid-page, inside the first bad run: reported from its first byte.
      await fs.invalidate("data.bin");
      const json = await cli(
        "scan",
        fs.path("data.bin"),
        "--json",
        "--offset",
        "1000000",
        ...extra,
      );
      assert.equal(json.code, 1, json.stderr);
      const report = JSON.parse(json.stdout);
      assert.deepEqual(report.badRanges, [
        { offset: 1_000_000, length: BAD[0][0] + BAD[0][1] - 1_000_000, error: "EIO" },
        { offset: BAD[1][0], length: BAD[1][1], error: "EIO" },
      ]);
      assert.equal(report.length, FILE_BYTES - 1_000_000);

      // A range that avoids both: readable, exit 0.
      const clean = await cli("scan", fs.path("data.bin"), "--length", "900000", ...extra);
      assert.equal(clean.code, 0, clean.stderr);
    },
  );
}

fuseTest(
  "cli rescue: copies every good byte; after healing a second run fills only the rest",
  async () => {
    await using fs = await mountFaultFs();
    using dir = scratch();
    const bytes = pattern(0, FILE_BYTES);
    Deno.writeFileSync(fs.backing("data.bin"), bytes);
    await injectFaults(fs);
    const dest = dir.path("rescued.bin");
    const mapPath = dir.path("rescued.map");

    const first = await cli("rescue", fs.path("data.bin"), dest, "--map", mapPath);
    assert.equal(first.code, 1, first.stderr);
    const copy = Deno.readFileSync(dest);
    assert.equal(copy.length, FILE_BYTES);
    const source = Deno.readFileSync(fs.backing("data.bin"));
    let start = 0;
    for (const [offset, length] of BAD) {
      assertBytes(
        copy.subarray(start, offset),
        source.subarray(start, offset),
        `good [${start}, ${offset})`,
      );
      assertBytes(copy.subarray(offset, offset + length), new Uint8Array(length), "bad range");
      start = offset + length;
    }
    assertBytes(copy.subarray(start), source.subarray(start), "good tail");
    const badBlocks = blocksOf(Deno.readTextFileSync(mapPath)).filter((block) => block[2] === "-");
    assert.deepEqual(badBlocks, BAD.map(([offset, length]) => [offset, length, "-"]));

    // A marker in a good range of DEST: a second run that rewrote good bytes would erase it.
    using handle = Deno.openSync(dest, { write: true });
    handle.seekSync(12_345, Deno.SeekMode.Start);
    handle.writeSync(new Uint8Array([0xee]));
    const marked = source[12_345];
    assert.notEqual(marked, 0xee);

    await fs.heal();
    const second = await cli("rescue", fs.path("data.bin"), dest, "--map", mapPath);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, /0 bad ranges/);
    const healed = Deno.readFileSync(dest);
    assert.equal(healed[12_345], 0xee, "the second run rewrote a byte the map called finished");
    healed[12_345] = marked;
    assertBytes(healed, source, "after the second run");
    assert.deepEqual(blocksOf(Deno.readTextFileSync(mapPath)), [[0, FILE_BYTES, "+"]]);
  },
);

fuseTest("cli rescue: SIGINT saves the map and exits 130; the next run resumes", async () => {
  await using fs = await mountFaultFs({ maxReadahead: PAGE });
  using dir = scratch();
  const { bytes, dest, mapPath, child } = await slowRescue(fs, dir);
  child.kill("SIGINT");
  const output = await child.output();
  const stderr = decoder.decode(output.stderr);
  assert.equal(output.code, 130, stderr);
  assert.match(stderr, /^guardmap rescue: interrupted at byte \d+: .* Run the same command again/m);
  const blocks = blocksOf(Deno.readTextFileSync(mapPath));
  assert.equal(blocks[0][2], "+", "some bytes were rescued before the interrupt");
  assert.ok(blocks.some((block) => block[2] === "?"), "the rest is still untried");

  await fs.heal();
  const resumed = await cli("rescue", fs.path("data.bin"), dest, "--map", mapPath);
  assert.equal(resumed.code, 0, resumed.stderr);
  assertBytes(Deno.readFileSync(dest), bytes, "after the resumed run");
});

fuseTest(
  "cli sum: equals sha256sum on a good file, refuses on a bad one naming the offset",
  async () => {
    await using fs = await mountFaultFs();
    Deno.writeFileSync(fs.backing("data.bin"), pattern(0, FILE_BYTES));
    const expected = new Deno.Command("sha256sum", { args: [fs.backing("data.bin")] }).outputSync();
    assert.ok(expected.success);
    const good = await cli("sum", fs.path("data.bin"));
    assert.equal(good.code, 0, good.stderr);
    assert.equal(good.stdout.split(" ")[0], decoder.decode(expected.stdout).split(" ")[0]);

    await fs.invalidate("data.bin");
    await injectFaults(fs);
    for (const algorithm of ["sha256", "xxh3", "crc32c"]) {
      const bad = await cli("sum", fs.path("data.bin"), "--algorithm", algorithm);
      assert.equal(bad.code, 1, bad.stderr);
      assert.equal(bad.stdout, "", "no checksum may be printed");
      assert.match(bad.stderr, new RegExp(`cannot read byte ${BAD[0][0]} \\(EIO\\)`));
    }
    // A range before the faults is still summed.
    const head = await cli("sum", fs.path("data.bin"), "--length", "900000");
    assert.equal(head.code, 0, head.stderr);
  },
);

Deno.test("cli sum: xxh3 and crc32c match independent implementations", async () => {
  using dir = scratch();
  // crc32c's standard check value, and xxhsum 0.8 (`xxhsum -H3`) on these exact files.
  Deno.writeFileSync(dir.path("check.txt"), new TextEncoder().encode("123456789"));
  Deno.writeFileSync(dir.path("empty"), new Uint8Array(0));
  Deno.writeFileSync(dir.path("pattern.bin"), pattern(0, 1_000_003));
  const cases: Array<[string, string, string]> = [
    ["check.txt", "crc32c", "e3069283"],
    ["pattern.bin", "crc32c", "15cc62ac"],
    ["empty", "xxh3", "2d06800538d394c2"],
    ["pattern.bin", "xxh3", "6fb4080543f32e5b"],
  ];
  for (const [name, algorithm, digest] of cases) {
    const run = await cli("sum", dir.path(name), "-a", algorithm);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, `${digest}  ${dir.path(name)}\n`, `${algorithm} of ${name}`);
  }
});

Deno.test("cli dump: hex and typed values at an offset past 4 GiB of a sparse file", async () => {
  using dir = scratch();
  const path = dir.path("sparse.bin");
  const at = 5 * 2 ** 30 + 100;
  sparseFile(path, 6 * 2 ** 30);
  using file = Deno.openSync(path, { write: true });
  file.seekSync(at, Deno.SeekMode.Start);
  file.writeSync(new Uint8Array([0x68, 0x69, 0x21, 0x00, 0x01, 0x02, 0x03, 0x04]));

  const hex = await cli("dump", path, "--offset", String(at), "--length", "8");
  assert.equal(hex.code, 0, hex.stderr);
  assert.equal(hex.stdout, `140000064: 6869 2100 0102 0304${" ".repeat(21)} hi!.....\n`);
  const u32 = await cli("dump", path, "--offset", "5GiB", "--length", "0x70", "-f", "u32");
  assert.equal(u32.code, 0, u32.stderr);
  const lines = u32.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 7);
  assert.equal(lines[6], "140000060: 0 2189672 67305985 0");
  const big = await cli(
    "dump",
    path,
    "--offset",
    String(at + 4),
    "--length",
    "4",
    "-f",
    "u32",
    "--big-endian",
  );
  assert.equal(big.stdout, "140000068: 16909060\n");
});

Deno.test("cli: usage errors print one line and exit 2", async () => {
  using dir = scratch();
  const file = dir.path("file.bin");
  Deno.writeFileSync(file, new Uint8Array(100));
  const cases: Array<[string[], RegExp]> = [
    [[], /missing command/],
    [["frobnicate"], /unknown command "frobnicate"/],
    [["scan"], /expected 1 argument \(FILE\), got 0/],
    [["scan", file, "--bogus"], /Unknown option '--bogus'/],
    [["scan", file, "--block", "12 parsecs"], /--block: "12 parsecs" is not a byte count/],
    [["scan", file, "--offset", "1KiB"], /--offset 1024 is past the end of the file \(100 bytes\)/],
    [["scan", dir.path("missing.bin")], /No such file|not found/i],
    [["sum", file, "-a", "md5"], /--algorithm must be one of sha256, xxh3, crc32c, got "md5"/],
    [["dump", file, "-f", "u16", "--length", "3"], /--length must be a multiple of 2 bytes/],
    [["rescue", file], /expected 2 arguments \(SOURCE DEST\), got 1/],
    [["rescue", file, dir.path("copy"), "--retries", "many"], /--retries must be a whole number/],
    [
      ["rescue", file, dir.path("copy"), "--retries", "-1"],
      /Option '--retries' argument is ambiguous/,
    ],
  ];
  for (const [args, message] of cases) {
    const run = await cli(...args);
    assert.equal(run.code, 2, `${args.join(" ")}: exit ${run.code}: ${run.stderr}`);
    assert.equal(run.stdout, "", args.join(" "));
    assert.equal(run.stderr.trimEnd().split("\n").length, 1, `one line: ${run.stderr}`);
    assert.match(run.stderr, message);
  }
});

Deno.test("cli: --help for the top level and every command", async () => {
  for (
    const args of [["--help"], ["scan", "--help"], ["rescue", "-h"], ["sum", "--help"], [
      "dump",
      "--help",
    ]]
  ) {
    const run = await cli(...args);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^Usage: guardmap /);
    assert.equal(run.stderr, "");
  }
});
