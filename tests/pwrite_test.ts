// Writes through the file descriptor: `writes: "pwrite"`, and the default (`"auto"`), which is
// the same in modes r+ and w+ on Linux without salvage. MappedFile.write (and PoolFile.write)
// must reach the file and the map, a write past a truncated end must throw and never grow the
// file back, and a device error (faultfs answering EIO or ENOSPC to the WRITE itself) must come
// back from the write call. Real files and real faults, nothing mocked.
import assert from "node:assert/strict";
import { MappedFile, MappedIOError, MapPool, type OpenOptions } from "../mod.ts";
import { fuseTest, mountFaultFs } from "./fuse/fault_fs.ts";
import {
  assertBytes,
  pageSize,
  pattern,
  poolTimeouts,
  runScript,
  scratch,
  writePattern,
} from "./util.ts";

const PAGE = pageSize();

/** Each test runs once with `writes: "pwrite"` and once with the option left out. */
const WAYS: { name: string; writes: Pick<OpenOptions, "writes"> }[] = [
  { name: 'writes: "pwrite"', writes: { writes: "pwrite" } },
  { name: "default writes", writes: {} },
];

for (const { name, writes } of WAYS) {
  Deno.test(`${name}: reaches the file and the map, in modes r+ and w+, at an offset`, () => {
    using dir = scratch();
    const path = dir.path("data.bin");
    writePattern(path, 64 * PAGE);
    {
      using map = MappedFile.open(path, { mode: "r+", offset: 5_000, ...writes });
      const source = new Uint8Array(3 * PAGE + 17).fill(0xab);
      assert.equal(map.write(source, 1_234), source.length);
      const fromMap = new Uint8Array(source.length);
      map.read(fromMap, 1_234);
      assertBytes(fromMap, source, "read back through the map");
      map.flush();
    }
    const file = Deno.readFileSync(path);
    assertBytes(
      file.subarray(6_234, 6_234 + 3 * PAGE + 17),
      new Uint8Array(3 * PAGE + 17).fill(0xab),
    );
    assertBytes(file.subarray(0, 6_234), pattern(0, 6_234), "bytes before are untouched");

    const created = dir.path("created.bin");
    {
      using map = MappedFile.open(created, {
        mode: "w+",
        offset: 2 ** 20,
        length: PAGE,
        ...writes,
      });
      map.writeArray(new Float64Array([1.5, -2.25]), 3);
    }
    const bytes = Deno.readFileSync(created);
    assert.equal(bytes.length, 2 ** 20 + PAGE);
    const values = new Float64Array(bytes.buffer.slice(2 ** 20 + 24, 2 ** 20 + 40));
    assert.deepEqual([...values], [1.5, -2.25]);
  });

  Deno.test(`${name}: past a truncated end throws and leaves the file truncated`, () => {
    using dir = scratch();
    const path = dir.path("data.bin");
    writePattern(path, 16 * PAGE);
    using map = MappedFile.open(path, { mode: "r+", ...writes });
    const kept = 3 * PAGE;
    Deno.truncateSync(path, kept);
    assert.throws(
      () => map.write(new Uint8Array(300).fill(7), kept - 100),
      (error: unknown) => {
        assert.ok(error instanceof MappedIOError, `${error}`);
        assert.equal(error.reason, "truncated");
        assert.equal(error.fileOffset, kept);
        assert.equal(error.bytesTransferred, 100);
        return true;
      },
    );
    assert.equal(Deno.statSync(path).size, kept, "the file was not grown back");
    // Inside the page that holds a new end in its middle, too (a write through the map would
    // not fault there: the kernel serves the rest of that page).
    Deno.truncateSync(path, kept - 1_000);
    assert.throws(
      () => map.write(new Uint8Array(10).fill(7), kept - 900),
      (error: unknown) => {
        assert.ok(error instanceof MappedIOError, `${error}`);
        assert.equal(error.reason, "truncated");
        assert.equal(error.bytesTransferred, 0);
        assert.equal(error.fileOffset, kept - 900);
        return true;
      },
    );
    assert.equal(Deno.statSync(path).size, kept - 1_000);
    // Inside the file, writes still go through.
    assert.equal(map.write(new Uint8Array(10).fill(9), 0), 10);
    assertBytes(Deno.readFileSync(path).subarray(0, 10), new Uint8Array(10).fill(9));
  });

  Deno.test(`pool: ${name} through a worker`, async () => {
    using dir = scratch();
    const path = dir.path("data.bin");
    writePattern(path, 16 * PAGE);
    await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
    const file = await pool.open(path, { mode: "r+", ...writes });
    const source = new Uint8Array(5_000).fill(0x42);
    assert.equal(await file.write(source, 777), source.length);
    await file.flush();
    assertBytes(Deno.readFileSync(path).subarray(777, 5_777), source);
    // Inside the page that holds the new end (where a write through the worker's map would not
    // fault): refused, so the worker really writes with pwrite.
    Deno.truncateSync(path, 2 * PAGE - 1_000);
    await assert.rejects(() => file.write(source.subarray(0, 100), 2 * PAGE - 900), MappedIOError);
    assert.equal(Deno.statSync(path).size, 2 * PAGE - 1_000);
  });

  Deno.test(`${name}: under a low RLIMIT_FSIZE writes through the map instead of dying of SIGXFSZ`, async () => {
    using dir = scratch();
    const path = dir.path("sparse.bin");
    Deno.writeFileSync(path, new Uint8Array(0));
    Deno.truncateSync(path, 64 * 2 ** 20);
    // In a child: the limit is per process. libc's setrlimit through FFI (RLIMIT_FSIZE is 1),
    // after the imports (Deno writes its own caches while it loads modules).
    const result = await runScript(
      `
      import { MappedFile } from "GUARDMAP_MOD";
      const libc = Deno.dlopen("libc.so.6", {
        setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
      });
      const limit = new BigUint64Array([32n << 20n, 32n << 20n]);
      if (libc.symbols.setrlimit(1, new Uint8Array(limit.buffer)) !== 0) throw new Error("setrlimit");
      using map = MappedFile.open(${JSON.stringify(path)}, { mode: "r+", ...${
        JSON.stringify(writes)
      } });
      console.log(map.write(new Uint8Array(16).fill(3), 48 * 2 ** 20));
      map.flush();
    `,
      [
        "--allow-ffi",
        "--allow-read",
        "--allow-write",
        "--allow-env",
        // Deno's V8 code cache is a SQLite file shared by every run on the machine (352 MB here);
        // a write-ahead-log checkpoint into it past the limit killed the child with SIGXFSZ once.
        "--no-code-cache",
      ],
    );
    assert.equal(result.signal, null, `the child died of ${result.signal}: ${result.stderr}`);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), "16");
    using file = Deno.openSync(path);
    file.seekSync(48 * 2 ** 20, Deno.SeekMode.Start);
    const back = new Uint8Array(16);
    assert.equal(file.readSync(back), 16);
    assertBytes(back, new Uint8Array(16).fill(3));
  });

  for (const errno of ["EIO", "ENOSPC"] as const) {
    fuseTest(
      `${name}: ${errno} from the file system comes back from write itself, then heals`,
      async () => {
        await using fs = await mountFaultFs();
        const bytes = pattern(0, 32 * PAGE);
        Deno.writeFileSync(fs.backing("data.bin"), bytes);
        using map = MappedFile.open(fs.path("data.bin"), { mode: "r+", ...writes });
        // Read the page through the map first, so that the map has it mapped when the write
        // fails.
        const first = new Uint8Array(PAGE);
        map.read(first, 5 * PAGE);
        assertBytes(first, bytes.subarray(5 * PAGE, 6 * PAGE));
        await fs.fail({ operations: "write", file: "data.bin", errno });
        const source = new Uint8Array(PAGE).fill(0xcd);
        assert.throws(
          () => map.write(source, 5 * PAGE),
          (error: unknown) => {
            assert.ok(error instanceof MappedIOError, `${error}`);
            assert.equal(error.code, errno);
            assert.equal(error.operation, "write");
            assert.equal(error.fileOffset, 5 * PAGE);
            assert.equal(error.bytesTransferred, 0);
            assert.equal(error.signal, undefined, "no signal: the error came from pwrite");
            return true;
          },
        );
        // Nothing was reported written, nothing reached the backing file, and the map shows
        // what the file holds (the kernel had copied the bytes into the cached page before the
        // WRITE failed; the library drops its entries for that page so it is looked up again).
        const before = bytes.subarray(5 * PAGE, 6 * PAGE);
        assertBytes(Deno.readFileSync(fs.backing("data.bin")).subarray(5 * PAGE, 6 * PAGE), before);
        const seen = new Uint8Array(PAGE);
        map.read(seen, 5 * PAGE);
        assertBytes(seen, before, "the map after the failed write");
        await fs.heal();
        assert.equal(map.write(source, 5 * PAGE), PAGE);
        map.flush();
        assertBytes(Deno.readFileSync(fs.backing("data.bin")).subarray(5 * PAGE, 6 * PAGE), source);
      },
    );
  }
}

Deno.test('writes: "pwrite" is refused with modes r and c, with salvage, and unknown values', () => {
  using dir = scratch();
  const path = dir.path("data.bin");
  writePattern(path, PAGE);
  assert.throws(
    () => MappedFile.open(path, { mode: "r", writes: "pwrite" }),
    /needs mode "r\+" or "w\+" on Linux without salvage: mode "r" cannot write/,
  );
  assert.throws(() => MappedFile.open(path, { mode: "c", writes: "pwrite" }), /keeps its writes/);
  assert.throws(
    () => MappedFile.open(path, { mode: "r+", writes: "pwrite", salvage: true }),
    /salvage cannot be combined/,
  );
  assert.throws(
    // @ts-expect-error: checked at run time as well
    () => MappedFile.open(path, { mode: "r+", writes: "fast" }),
    /writes must be "auto", "map" or "pwrite", got the string "fast"/,
  );
});

Deno.test("pool: salvage is refused, with or without writes", async () => {
  using dir = scratch();
  const path = dir.path("data.bin");
  writePattern(path, PAGE);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
  await assert.rejects(() => pool.open(path, { salvage: true }), /in-process maps/);
  await assert.rejects(
    () => pool.open(path, { mode: "r+", salvage: true, writes: "pwrite" }),
    /in-process maps/,
  );
});
