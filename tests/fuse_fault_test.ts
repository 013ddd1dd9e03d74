// Real I/O faults end to end: every test mounts faultfs (tests/fuse/), a passthrough FUSE file
// system that answers EIO/ENOSPC on command, maps a file through it and lets the kernel raise
// the real condition: a READ answered with EIO is a failing page fault (SIGBUS), a WRITE
// answered with EIO is a failing write-back (msync reports it), a FALLOCATE answered with
// ENOSPC is a full disk. Nothing is mocked.
//
// Page cache: a page read successfully stays cached and a later fault would never be seen, so
// the tests drop it with `fs.invalidate()` (the kernel unmaps and drops the file's pages).
// `map.advise("dontneed")` is not enough: on a shared file mapping it only unmaps the pages,
// the next touch finds them in the page cache again without asking the file system.
//
// Skipping (project standard): in CI (CI=true) these tests always run, and fail when FUSE is
// unavailable; elsewhere they are skipped, with a warning, on a machine without FUSE.
import assert from "node:assert/strict";
import { GuardmapError, MappedFile, MappedIOError } from "../mod.ts";
import { fuseTest, isMounted, mountFaultFs } from "./fuse/fault_fs.ts";
import { mappingsOf, openDescriptors, pageSize, pattern, prefaultTest } from "./util.ts";

const PAGE = pageSize();
const READAHEAD = 131_072; // the kernel's default FUSE readahead window (max_readahead)
const FILE_BYTES = 1_048_576;

/** A predicate for assert.throws: a MappedIOError with these fields. */
function isFault(expected: Partial<MappedIOError>) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof MappedIOError, `expected MappedIOError, got ${error}`);
    for (const [key, value] of Object.entries(expected)) {
      assert.equal(error[key as keyof MappedIOError], value, `${key} of ${error.message}`);
    }
    return true;
  };
}

/** Page `index` of `bytes`. */
function pageOf(bytes: Uint8Array, index: number): Uint8Array {
  return bytes.subarray(index * PAGE, (index + 1) * PAGE);
}

/** assert.deepEqual for large byte arrays, with a short message naming the first difference. */
function sameBytes(actual: Uint8Array, expected: Uint8Array, what = "bytes"): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const at = actual.findIndex((byte, index) => byte !== expected[index]);
  if (at !== -1) {
    assert.fail(`${what}: byte ${at} is ${actual[at]}, expected ${expected[at]}`);
  }
}

for (const maxReadahead of [READAHEAD, PAGE]) {
  fuseTest(
    `read EIO in the middle of a window (readahead ${maxReadahead} bytes): first failing page, bytes before it, then healed`,
    async () => {
      await using fs = await mountFaultFs({ maxReadahead });
      assert.match(fs.log(), new RegExp(`max_readahead ${maxReadahead},`));
      const bytes = pattern(0, FILE_BYTES);
      Deno.writeFileSync(fs.backing("data.bin"), bytes);
      const offset = 5_000; // a window that does not start on a page boundary
      using map = MappedFile.open(fs.path("data.bin"), { offset, length: FILE_BYTES - offset });
      // One failing byte: the kernel reads whole pages, so the page holding it fails. The kernel's
      // readahead asks for up to 128 KiB around a fault, and that request fails whole; the kernel
      // then reads the faulting page alone, so the failure is still reported at the right page.
      await fs.fail({ operations: "read", file: "data.bin", offset: 300_000, length: 1 });
      const failingPage = Math.floor(300_000 / PAGE) * PAGE; // 299_008

      const target = new Uint8Array(FILE_BYTES - offset);
      assert.throws(
        () => map.read(target, 0),
        isFault({
          code: "EIO",
          reason: "io",
          operation: "read",
          fileOffset: failingPage,
          position: failingPage - offset,
          bytesTransferred: failingPage - offset,
          fileSize: FILE_BYTES,
          signal: "SIGBUS",
        }),
      );
      sameBytes(
        target.subarray(0, failingPage - offset),
        bytes.subarray(offset, failingPage),
      );
      // The pages before the failing one read on their own, and so do those after it.
      const before = new Uint8Array(failingPage - offset);
      map.read(before, 0);
      sameBytes(before, bytes.subarray(offset, failingPage));
      const after = new Uint8Array(PAGE);
      map.read(after, failingPage + PAGE - offset);
      sameBytes(after, bytes.subarray(failingPage + PAGE, failingPage + 2 * PAGE));

      await fs.heal();
      // A page whose read failed is never cached as valid: the next touch asks the file system
      // again, so the same read now succeeds without invalidating anything.
      target.fill(0);
      assert.equal(map.read(target, 0), FILE_BYTES - offset);
      sameBytes(target, bytes.subarray(offset));
    },
  );
}

fuseTest(
  "a failing range aligned to the readahead window is reported at its first page",
  async () => {
    await using fs = await mountFaultFs();
    const bytes = pattern(0, FILE_BYTES);
    Deno.writeFileSync(fs.backing("data.bin"), bytes);
    using map = MappedFile.open(fs.path("data.bin"));
    const start = 2 * READAHEAD;
    await fs.fail({ operations: "read", file: "data.bin", offset: start, length: 2 * READAHEAD });

    // A read ending right before the range succeeds, although readahead reaches into it.
    const head = new Uint8Array(start);
    map.read(head, 0);
    sameBytes(head, bytes.subarray(0, start));
    // A read across the range fails at its first page, even starting in the middle of a page.
    const target = new Uint8Array(start);
    assert.throws(
      () => map.read(target, start - 100),
      isFault({ fileOffset: start, position: start, bytesTransferred: 100, reason: "io" }),
    );
    sameBytes(target.subarray(0, 100), bytes.subarray(start - 100, start));
    // Inside the range, every page fails where it is.
    assert.throws(
      () => map.read(new Uint8Array(10), start + 3 * READAHEAD / 2 + 7),
      isFault({ fileOffset: start + 3 * READAHEAD / 2 + 7, bytesTransferred: 0 }),
    );
    // After the range, reads succeed.
    const tail = new Uint8Array(FILE_BYTES - 4 * READAHEAD);
    map.read(tail, 4 * READAHEAD);
    sameBytes(tail, bytes.subarray(4 * READAHEAD));
  },
);

prefaultTest(
  "prefault over a failing range reports the first failing page, and the process carries on",
  async () => {
    await using fs = await mountFaultFs();
    const bytes = pattern(0, FILE_BYTES);
    Deno.writeFileSync(fs.backing("data.bin"), bytes);
    const offset = 100;
    using map = MappedFile.open(fs.path("data.bin"), { offset, length: FILE_BYTES - offset });
    const failingPage = 16 * PAGE;
    await fs.fail({ operations: "read", file: "data.bin", offset: failingPage, length: PAGE });

    assert.throws(
      () => map.prefault(),
      isFault({
        code: "EIO",
        reason: "io",
        operation: "prefault",
        fileOffset: failingPage,
        position: failingPage - offset,
      }),
    );
    // Everything before the failing page is in; a prefault of it alone succeeds.
    map.prefault({ length: failingPage - offset });
    // So does a prefault of everything after it.
    map.prefault({ position: failingPage + PAGE - offset });

    await fs.heal();
    map.prefault();
    const target = new Uint8Array(FILE_BYTES - offset);
    map.read(target, 0);
    sameBytes(target, bytes.subarray(offset));
  },
  fuseTest,
);

fuseTest(
  "flush throws MappedIOError when write-back fails; what it reported as written is in the file",
  async () => {
    await using fs = await mountFaultFs();
    const pages = 16;
    const original = pattern(0, pages * PAGE);
    Deno.writeFileSync(fs.backing("data.bin"), original);
    using map = MappedFile.open(fs.path("data.bin"), { mode: "r+", writes: "map" });
    const healthy = new Uint8Array(PAGE).fill(0xa1);
    const doomed = new Uint8Array(PAGE).fill(0xa5);
    map.write(healthy, 1 * PAGE);
    map.write(doomed, 5 * PAGE);
    await fs.fail({ operations: "write", file: "data.bin", offset: 5 * PAGE, length: PAGE });

    // Page 1 is written back alone: that succeeds, and it is in the backing file.
    map.flush({ position: 1 * PAGE, length: PAGE });
    sameBytes(pageOf(Deno.readFileSync(fs.backing("data.bin")), 1), healthy);
    // Page 5 cannot be written back: flush must say so.
    assert.throws(() => map.flush(), isFault({ code: "EIO", operation: "flush", reason: "io" }));
    const file = Deno.readFileSync(fs.backing("data.bin"));
    sameBytes(pageOf(file, 1), healthy);
    sameBytes(
      pageOf(file, 5),
      pageOf(original, 5),
      "the failed page never reached the file",
    );
    const status = await fs.status();
    assert.ok(status.operations.write >= 2, `write-back reached the daemon: ${status.rules}`);
  },
);

fuseTest(
  "after a failed write-back, a later flush never reports data as saved that is not in the file",
  async () => {
    await using fs = await mountFaultFs();
    const pages = 16;
    const original = pattern(0, pages * PAGE);
    Deno.writeFileSync(fs.backing("data.bin"), original);
    using map = MappedFile.open(fs.path("data.bin"), { mode: "r+", writes: "map" });
    const data = new Uint8Array(PAGE).fill(0xa5);
    map.write(data, 5 * PAGE);
    await fs.fail({ operations: "write", file: "data.bin", offset: 5 * PAGE, length: PAGE });
    assert.throws(() => map.flush(), isFault({ code: "EIO", operation: "flush" }));

    // The contract: flush() returning means the data written through the map is in the file.
    // Check it while the device still fails, and again once it has recovered.
    const flushedOrThrew = (when: string): void => {
      let reported = true;
      try {
        map.flush();
      } catch (error) {
        assert.ok(error instanceof MappedIOError, `${when}: ${error}`);
        reported = false;
      }
      if (reported) {
        sameBytes(
          pageOf(Deno.readFileSync(fs.backing("data.bin")), 5),
          data,
          `${when}: flush() reported success, but page 5 of the file does not hold what was ` +
            `written through the map (the kernel marked the page clean when its write-back failed)`,
        );
      }
    };
    flushedOrThrew("while write-back still fails");
    await fs.heal();
    flushedOrThrew("after the device recovered");
  },
);

fuseTest("a refused fsync fails flush, even though the pages were written", async () => {
  await using fs = await mountFaultFs();
  const original = pattern(0, 4 * PAGE);
  Deno.writeFileSync(fs.backing("data.bin"), original);
  using map = MappedFile.open(fs.path("data.bin"), { mode: "r+", writes: "map" });
  const data = new Uint8Array(PAGE).fill(0xd0);
  map.write(data, 2 * PAGE);
  // msync(MS_SYNC) on FUSE writes the dirty pages (WRITE), then asks the file system to make
  // them durable (FSYNC). Without that the data may still be lost: flush must not succeed.
  await fs.fail({ operations: "fsync", file: "data.bin", times: 1 });
  assert.throws(() => map.flush(), isFault({ code: "EIO", operation: "flush", reason: "io" }));
  const status = await fs.status();
  assert.equal(status.operations.fsync, 1, "the FSYNC reached the file system");
  assert.match(status.rules[0], / hits=1$/);
  // The device took the pages (WRITE succeeded); a retry, with the device healthy, succeeds.
  sameBytes(pageOf(Deno.readFileSync(fs.backing("data.bin")), 2), data, "page 2 of the file");
  map.flush();
});

fuseTest(
  "fail after N writes: page-by-page flushes succeed until the device fails, and only those pages are in the file",
  async () => {
    await using fs = await mountFaultFs();
    const original = pattern(0, 8 * PAGE);
    Deno.writeFileSync(fs.backing("data.bin"), original);
    using map = MappedFile.open(fs.path("data.bin"), { mode: "r+", writes: "map" });
    const fills = [0xb0, 0xb1, 0xb2, 0xb3];
    fills.forEach((fill, page) => map.write(new Uint8Array(PAGE).fill(fill), page * PAGE));
    // Each one-page flush is one WRITE request: the first two succeed, every later one fails.
    await fs.fail({ operations: "write", file: "data.bin", after: 2 });

    map.flush({ position: 0, length: PAGE });
    map.flush({ position: PAGE, length: PAGE });
    assert.throws(
      () => map.flush({ position: 2 * PAGE, length: PAGE }),
      isFault({ code: "EIO", operation: "flush" }),
    );
    const file = Deno.readFileSync(fs.backing("data.bin"));
    sameBytes(pageOf(file, 0), new Uint8Array(PAGE).fill(0xb0));
    sameBytes(pageOf(file, 1), new Uint8Array(PAGE).fill(0xb1));
    sameBytes(pageOf(file, 2), pageOf(original, 2));
    sameBytes(pageOf(file, 3), pageOf(original, 3));
  },
);

fuseTest(
  'w+ on a full file system fails at open with GuardmapError "ENOSPC", nothing left mapped',
  async () => {
    await using fs = await mountFaultFs();
    // The kernel forwards fallocate(2) to FUSE (FUSE_FALLOCATE): the file system answers ENOSPC.
    await fs.fail({ operations: "fallocate", errno: "ENOSPC" });
    const path = fs.path("new.bin");
    const descriptors = openDescriptors();
    assert.throws(
      () => MappedFile.open(path, { mode: "w+", length: FILE_BYTES }),
      (error: unknown) => {
        assert.ok(error instanceof GuardmapError, `expected GuardmapError, got ${error}`);
        assert.ok(
          !(error instanceof MappedIOError),
          "an open failure is not a fault on mapped memory",
        );
        assert.equal(error.code, "ENOSPC");
        assert.equal(error.osError, 28);
        return true;
      },
    );
    assert.deepEqual(mappingsOf(path), []);
    assert.equal(openDescriptors(), descriptors);
    // The open created the file and removes it again: nothing is left behind.
    assert.throws(() => Deno.statSync(fs.backing("new.bin")), Deno.errors.NotFound);
    const status = await fs.status();
    // Two: the largest-file probe (a punch past the end, which changes nothing) and the
    // reservation itself.
    assert.equal(status.operations.fallocate, 2, "the fallocate reached the file system");
    assert.match(status.rules[0], / hits=2$/);
  },
);

fuseTest(
  "w+ on a file system that cannot reserve blocks opens, and a full disk surfaces at flush as ENOSPC",
  async () => {
    await using fs = await mountFaultFs();
    // EOPNOTSUPP from FUSE_FALLOCATE: the kernel stops asking (for the whole mount) and guardmap
    // sizes the file without reserving blocks; the full disk can only show at write-back.
    await fs.fail({ operations: "fallocate", errno: "EOPNOTSUPP" });
    await fs.fail({ operations: "write", errno: "ENOSPC" });
    using map = MappedFile.open(fs.path("new.bin"), {
      mode: "w+",
      writes: "map",
      length: 16 * PAGE,
    });
    assert.equal(Deno.statSync(fs.backing("new.bin")).size, 16 * PAGE);
    // The write lands in the page cache (no signal), the write-back fails, flush says so.
    map.write(new Uint8Array(PAGE).fill(7), 0);
    assert.throws(
      () => map.flush(),
      isFault({ code: "ENOSPC", operation: "flush", reason: "io", osError: 28 }),
    );
    sameBytes(pageOf(Deno.readFileSync(fs.backing("new.bin")), 0), new Uint8Array(PAGE));
  },
);

fuseTest(
  "outage then heal: reads and flushes fail during the outage, the same map works after",
  async () => {
    await using fs = await mountFaultFs();
    const pages = 8;
    const original = pattern(0, pages * PAGE);
    Deno.writeFileSync(fs.backing("data.bin"), original);
    using map = MappedFile.open(fs.path("data.bin"), { mode: "r+", writes: "map" });
    const target = new Uint8Array(pages * PAGE);
    map.read(target, 0); // every page cached
    map.write(new Uint8Array(PAGE).fill(0xc0), 0); // page 0 dirty

    await fs.outage();
    assert.equal((await fs.status()).outage, true);
    assert.throws(() => map.flush(), isFault({ code: "EIO", operation: "flush" }));
    // Drop the cached pages, so that touching them must ask the failed file system.
    await fs.invalidate("data.bin");
    assert.throws(
      () => map.read(new Uint8Array(PAGE), 3 * PAGE + 10),
      isFault({ code: "EIO", reason: "io", fileOffset: 3 * PAGE + 10, bytesTransferred: 0 }),
    );
    // A write through the map must read the page first, which fails too.
    assert.throws(
      () => map.write(new Uint8Array(100).fill(0xc2), 2 * PAGE),
      isFault({ code: "EIO", operation: "write", fileOffset: 2 * PAGE, bytesTransferred: 0 }),
    );

    await fs.heal();
    // The same map, not reopened, writes again. A write-back that failed during the outage may
    // still be reported by the first flush (a flush never hides one); retried, flush succeeds,
    // and then the file holds exactly what the map shows, page 0's write included or not.
    const again = new Uint8Array(PAGE).fill(0xc3);
    map.write(again, 3 * PAGE);
    try {
      map.flush();
    } catch (error) {
      isFault({ code: "EIO", operation: "flush" })(error);
      map.flush();
    }
    target.fill(0);
    map.read(target, 0);
    sameBytes(target, Deno.readFileSync(fs.backing("data.bin")));
    sameBytes(target.subarray(PAGE, 3 * PAGE), original.subarray(PAGE, 3 * PAGE));
    sameBytes(pageOf(Deno.readFileSync(fs.backing("data.bin")), 3), again);
  },
);

fuseTest("a slow device delays a read but does not fail it", async () => {
  await using fs = await mountFaultFs();
  const bytes = pattern(0, 4 * PAGE);
  Deno.writeFileSync(fs.backing("data.bin"), bytes);
  using map = MappedFile.open(fs.path("data.bin"));
  await fs.delay({ operations: "read", file: "data.bin", delayMs: 300, times: 1 });
  const started = performance.now();
  const target = new Uint8Array(4 * PAGE);
  map.read(target, 0);
  const elapsed = performance.now() - started;
  sameBytes(target, bytes);
  assert.ok(elapsed >= 250, `the read took ${elapsed.toFixed(0)} ms, the device waited 300`);
  assert.match((await fs.status()).rules[0], / hits=1$/);
});

fuseTest(
  "faultfs: bad commands are refused, and a failed test still unmounts with a map open",
  async () => {
    let mountPath = "";
    let leftOpen: MappedFile | undefined;
    try {
      await using fs = await mountFaultFs();
      mountPath = fs.mountPath;
      await assert.rejects(fs.command("fail read /data.bin ENOTANERRNO"));
      await assert.rejects(fs.command("explode"));
      assert.deepEqual((await fs.status()).rules, [], "a refused command adds no rule");
      Deno.writeFileSync(fs.backing("data.bin"), pattern(0, PAGE));
      leftOpen = MappedFile.open(fs.path("data.bin"));
      throw new Error("the test failed");
    } catch (error) {
      // Disposal ran before this catch: the mount was busy (a map still open), so it fell back
      // to killing the daemon and unmounting lazily.
      assert.equal((error as Error).message, "the test failed");
    }
    assert.equal(isMounted(mountPath), false);
    assert.throws(() => Deno.statSync(mountPath), Deno.errors.NotFound);
    leftOpen?.close();
  },
);
