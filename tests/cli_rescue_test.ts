// The command-line tool's rescue (cli/rescue.ts) resuming from a mapfile, onto block devices and
// from a SOURCE that shrinks, run as a subprocess the way people run it. The FUSE tests mount
// faultfs (tests/fuse/), so the kernel raises real faults on the mapped pages; nothing is mocked.
import assert from "node:assert/strict";
import { fuseTest, mountFaultFs } from "./fuse/fault_fs.ts";
import { assertBytes, pattern, scratch } from "./util.ts";
import { blocksOf, cli, PAGE, rescueUnderway, slowRescue } from "./cli/_run.ts";

const decoder = new TextDecoder();

Deno.test("cli rescue: resumes from a ddrescue map, reading only what it does not call finished", async () => {
  using dir = scratch();
  const source = dir.path("source.bin");
  const bytes = pattern(0, 16 * PAGE);
  Deno.writeFileSync(source, bytes);
  // As ddrescue 1.2x writes it: no current_pass column, a non-trimmed and a non-scraped block,
  // and the map stops short of the end (the rest counts as non-tried).
  Deno.writeTextFileSync(
    dir.path("disk.map"),
    [
      "# Mapfile. Created by GNU ddrescue version 1.23",
      "# current_pos  current_status",
      "0x00002000     *",
      "#      pos        size  status",
      "0x00000000  0x00002000  +",
      "0x00002000  0x00001000  *",
      "0x00003000  0x00001000  /",
      "0x00004000  0x00004000  +",
      "0x00008000  0x00002000  -",
      "",
    ].join("\n"),
  );
  // The DEST the map belongs to, marked so that a block copied again would show.
  const marker = new Uint8Array(16 * PAGE).fill(0xee);
  Deno.writeFileSync(dir.path("dest.bin"), marker);
  const run = await cli("rescue", source, dir.path("dest.bin"), "-m", dir.path("disk.map"));
  assert.equal(run.code, 0, run.stderr);
  const dest = Deno.readFileSync(dir.path("dest.bin"));
  assert.equal(dest.length, bytes.length);
  // Finished blocks were not copied again: they still hold the marker.
  assertBytes(dest.subarray(0, 2 * PAGE), marker.subarray(0, 2 * PAGE), "first + block");
  assertBytes(dest.subarray(2 * PAGE, 4 * PAGE), bytes.subarray(2 * PAGE, 4 * PAGE), "* and /");
  assertBytes(dest.subarray(4 * PAGE, 8 * PAGE), marker.subarray(0, 4 * PAGE), "second + block");
  assertBytes(dest.subarray(8 * PAGE), bytes.subarray(8 * PAGE), "- and the untried rest");
  assert.deepEqual(blocksOf(Deno.readTextFileSync(dir.path("disk.map"))), [[0, 16 * PAGE, "+"]]);
});

Deno.test("cli rescue: resuming onto a DEST that existed writes zero blocks too (never leaves its old bytes)", async () => {
  using dir = scratch();
  const source = dir.path("source.bin");
  // Zero blocks between pattern blocks: the ones a sparse copy would skip.
  const bytes = pattern(0, 64 * PAGE);
  for (let block = 1; block < 16; block += 2) {
    bytes.fill(0, block * 4 * PAGE, (block + 1) * 4 * PAGE);
  }
  Deno.writeFileSync(source, bytes);
  // An interrupted earlier run onto an existing disk image of 0xff bytes: the first quarter
  // is in DEST and finished in the map, the rest untried.
  const dest = new Uint8Array(64 * PAGE).fill(0xff);
  dest.set(bytes.subarray(0, 16 * PAGE));
  Deno.writeFileSync(dir.path("dest.img"), dest);
  Deno.writeTextFileSync(
    dir.path("dest.map"),
    [
      "# current_pos  current_status  current_pass",
      "0x00010000     ?               1",
      "#      pos        size  status",
      "0x00000000  0x00010000  +",
      "0x00010000  0x00030000  ?",
      "",
    ].join("\n"),
  );
  // Chunks of 16 KiB, so that each zero block is a whole chunk (the case a sparse copy skips).
  const run = await cli(
    "rescue",
    source,
    dir.path("dest.img"),
    "-m",
    dir.path("dest.map"),
    "--block",
    "16KiB",
  );
  assert.equal(run.code, 0, run.stderr);
  assertBytes(Deno.readFileSync(dir.path("dest.img")), bytes, "DEST after the resumed run");
});

Deno.test("cli rescue: a map that says bytes were rescued into a DEST that does not exist is refused", async () => {
  using dir = scratch();
  const source = dir.path("source.bin");
  Deno.writeFileSync(source, pattern(0, 4 * PAGE));
  Deno.writeTextFileSync(
    dir.path("dest.map"),
    ["# current_pos  current_status", "0x0 +", "0x0 0x4000 +", ""].join("\n"),
  );
  const run = await cli("rescue", source, dir.path("gone.img"), "-m", dir.path("dest.map"));
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /gone\.img did not exist, but the map .* says 16384 bytes were rescued/);
  assert.equal(run.stderr.trim().split("\n").length, 1);
  assert.throws(() => Deno.statSync(dir.path("gone.img")), Deno.errors.NotFound);
});

fuseTest(
  "cli rescue: SOURCE truncated during the rescue: the rest is bad, the map is saved",
  async () => {
    await using fs = await mountFaultFs({ maxReadahead: PAGE });
    using dir = scratch();
    const { bytes, dest, mapPath, child } = await slowRescue(fs, dir);
    const kept = 2 ** 20 + 3 * PAGE;
    Deno.truncateSync(fs.backing("data.bin"), kept);
    await fs.invalidate("data.bin");
    const output = await child.output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 1, stderr);
    assert.match(stderr, new RegExp(`was truncated to ${kept} bytes during the rescue`));
    const blocks = blocksOf(Deno.readTextFileSync(mapPath));
    assert.deepEqual(
      blocks.at(-1),
      [kept, bytes.length - kept, "-"],
      Deno.readTextFileSync(mapPath),
    );
    assert.ok(blocks.slice(0, -1).every((block) => block[2] === "+"), "all before the end rescued");
    assertBytes(
      Deno.readFileSync(dest).subarray(0, kept),
      bytes.subarray(0, kept),
      "DEST up to the end",
    );
  },
);

/** Attaches `image` to a free loop device (root); `detach` undoes it. */
function loopDevice(image: string): { device: string; [Symbol.dispose](): void } {
  const attach = new Deno.Command("losetup", { args: ["-f", "--show", image] }).outputSync();
  assert.ok(attach.success, decoder.decode(attach.stderr));
  const device = decoder.decode(attach.stdout).trim();
  return {
    device,
    [Symbol.dispose]: () => void new Deno.Command("losetup", { args: ["-d", device] }).outputSync(),
  };
}

const CAN_LOOP = Deno.uid() === 0 && new Deno.Command("losetup", { args: ["--version"] })
  .outputSync().success;
if (!CAN_LOOP && Deno.env.get("CI") !== "true") {
  console.log("SKIPPED cli rescue onto a block device: needs root and losetup");
}
Deno.test({
  name: "cli rescue: onto a block device (a disk), which it cannot resize",
  ignore: !CAN_LOOP && Deno.env.get("CI") !== "true",
  fn: async () => {
    using dir = scratch();
    const source = dir.path("source.bin");
    const bytes = pattern(3, 64 * PAGE);
    Deno.writeFileSync(source, bytes);
    const image = dir.path("disk.img");
    Deno.writeFileSync(image, new Uint8Array(128 * PAGE).fill(0xff));
    {
      using loop = loopDevice(image);
      const run = await cli("rescue", source, loop.device, "-m", dir.path("disk.map"));
      assert.equal(run.code, 0, run.stderr);
    }
    const disk = Deno.readFileSync(image);
    assertBytes(disk.subarray(0, bytes.length), bytes, "the device after the rescue");
    assertBytes(disk.subarray(bytes.length), new Uint8Array(64 * PAGE).fill(0xff), "past it");
    // A device smaller than SOURCE is a usage error, before anything is written.
    Deno.writeFileSync(image, new Uint8Array(16 * PAGE));
    using small = loopDevice(image);
    const refused = await cli("rescue", source, small.device, "-m", dir.path("small.map"));
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /holds 65536 bytes, SOURCE needs 262144/);
  },
});

fuseTest(
  "cli rescue: SOURCE truncated during a resumed rescue keeps what earlier runs rescued",
  async () => {
    await using fs = await mountFaultFs({ maxReadahead: PAGE });
    using dir = scratch();
    const MiB = 2 ** 20;
    const bytes = pattern(0, 2 * MiB);
    Deno.writeFileSync(fs.backing("data.bin"), bytes);
    // An earlier run rescued the second MiB into DEST; the first is still to do.
    const dest = dir.path("rescued.bin");
    const old = new Uint8Array(2 * MiB).fill(0xee);
    old.set(bytes.subarray(MiB), MiB);
    Deno.writeFileSync(dest, old);
    const mapPath = dir.path("rescued.map");
    Deno.writeTextFileSync(
      mapPath,
      ["# current_pos  current_status", "0x0 ?", "0x0 0x100000 ?", "0x100000 0x100000 +", ""]
        .join("\n"),
    );
    await fs.delay({ operations: "read", file: "data.bin", delayMs: 20 });
    // Act once the copy is under way (reads reach the daemon), not during start-up.
    const child = await rescueUnderway(fs, dest, mapPath);
    const kept = MiB / 2;
    Deno.truncateSync(fs.backing("data.bin"), kept);
    await fs.invalidate("data.bin");
    const output = await child.output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 1, stderr);
    assert.deepEqual(blocksOf(Deno.readTextFileSync(mapPath)), [
      [0, kept, "+"],
      [kept, MiB - kept, "-"],
      [MiB, MiB, "+"],
    ]);
    const after = Deno.readFileSync(dest);
    assertBytes(after.subarray(0, kept), bytes.subarray(0, kept), "rescued before the end");
    assertBytes(after.subarray(MiB), bytes.subarray(MiB), "the MiB an earlier run rescued");
  },
);
