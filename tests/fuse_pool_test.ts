// The FUSE fault tests through MapPool: a worker process maps the file on faultfs; the host sees
// MappedIOError for faults the worker's guarded copies catch, and WorkerCrashedError when a
// kernel touches a failing page directly (the worker dies of SIGBUS and is restarted).
import assert from "node:assert/strict";
import { MappedIOError, MapPool, WorkerCrashedError } from "../mod.ts";
import { fuseTest, mountFaultFs } from "./fuse/fault_fs.ts";
import { assertBytes, pageSize, pattern, poolTimeouts, prefaultTest } from "./util.ts";

const PAGE = pageSize();
const KERNELS = new URL("./kernels/kernels.ts", import.meta.url);

function isFault(expected: Partial<MappedIOError>) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof MappedIOError, `expected MappedIOError, got ${error}`);
    for (const [key, value] of Object.entries(expected)) {
      assert.equal(error[key as keyof MappedIOError], value, `${key}: ${error.message}`);
    }
    return true;
  };
}

fuseTest(
  "pool: read EIO mid-window reports the failing page; after heal the read works",
  async () => {
    await using fs = await mountFaultFs();
    const bytes = pattern(0, 64 * PAGE);
    Deno.writeFileSync(fs.backing("data.bin"), bytes);
    await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
    const file = await pool.open(fs.path("data.bin"), { offset: 1000 });
    await fs.fail({ operations: "read", file: "data.bin", offset: 20 * PAGE + 5, length: 1 });
    const target = new Uint8Array(40 * PAGE);
    await assert.rejects(
      () => file.read(target, 0),
      isFault({
        code: "EIO",
        reason: "io",
        fileOffset: 20 * PAGE,
        bytesTransferred: 20 * PAGE - 1000,
      }),
    );
    assertBytes(target.subarray(0, 20 * PAGE - 1000), bytes.subarray(1000, 20 * PAGE));
    assert.equal(pool.restarts, 0);
    await fs.heal();
    await file.read(target, 0);
    assertBytes(target, bytes.subarray(1000, 1000 + 40 * PAGE));
  },
);

prefaultTest(
  "pool: prefault over a page that answers EIO reports that page; after heal it succeeds",
  async () => {
    await using fs = await mountFaultFs();
    Deno.writeFileSync(fs.backing("data.bin"), pattern(0, 64 * PAGE));
    await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
    const file = await pool.open(fs.path("data.bin"), { offset: 1000 });
    await fs.fail({ operations: "read", file: "data.bin", offset: 20 * PAGE + 5, length: 1 });
    // As in the test above: a read meets the page first.
    await assert.rejects(() => file.read(new Uint8Array(40 * PAGE), 0), isFault({ code: "EIO" }));
    await assert.rejects(() => file.prefault(), isFault({ fileOffset: 20 * PAGE }));
    assert.equal(pool.restarts, 0);
    await fs.heal();
    await file.prefault();
  },
  fuseTest,
);

fuseTest(
  "pool: a failed write-back makes flush throw; what it reported is in the file",
  async () => {
    await using fs = await mountFaultFs();
    Deno.writeFileSync(fs.backing("data.bin"), pattern(0, 8 * PAGE));
    await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
    const file = await pool.open(fs.path("data.bin"), { mode: "r+", writes: "map" });
    const healthy = new Uint8Array(PAGE).fill(0x11);
    await file.write(healthy, 0);
    await file.flush({ position: 0, length: PAGE });
    assert.deepEqual(Deno.readFileSync(fs.backing("data.bin")).subarray(0, PAGE), healthy);
    await fs.fail({ operations: "write", file: "data.bin", offset: 5 * PAGE, length: PAGE });
    await file.write(new Uint8Array(PAGE).fill(0x55), 5 * PAGE);
    await assert.rejects(() => file.flush(), isFault({ code: "EIO", operation: "flush" }));
    // Still failing: the next flush must not claim success.
    await assert.rejects(() => file.flush(), isFault({ operation: "flush" }));
    assert.notDeepEqual(
      Deno.readFileSync(fs.backing("data.bin")).subarray(5 * PAGE, 6 * PAGE),
      new Uint8Array(PAGE).fill(0x55),
    );
    await fs.heal();
    await file.flush();
    assert.deepEqual(
      Deno.readFileSync(fs.backing("data.bin")).subarray(5 * PAGE, 6 * PAGE),
      new Uint8Array(PAGE).fill(0x55),
    );
  },
);

fuseTest(
  "pool: a kernel reading a failing page outside the guard kills only its worker",
  async () => {
    await using fs = await mountFaultFs();
    const bytes = pattern(0, 16 * PAGE);
    Deno.writeFileSync(fs.backing("data.bin"), bytes);
    await using pool = new MapPool({ ...poolTimeouts(), workers: 1 });
    const file = await pool.open(fs.path("data.bin"));
    await fs.fail({ operations: "read", file: "data.bin", offset: 9 * PAGE, length: PAGE });
    await fs.invalidate("data.bin");
    await assert.rejects(() => file.run(KERNELS, "touch", 9 * PAGE + 1), (error: unknown) => {
      return error instanceof WorkerCrashedError && error.signal === "SIGBUS";
    });
    // The next call runs on the restarted worker; healthy pages read fine.
    assert.equal(await file.run(KERNELS, "touch", 2 * PAGE), bytes[2 * PAGE]);
    assert.equal(pool.restarts, 1);
  },
);

fuseTest("pool: an outage fails calls, and the same pool file works after heal", async () => {
  await using fs = await mountFaultFs();
  const bytes = pattern(0, 8 * PAGE);
  Deno.writeFileSync(fs.backing("data.bin"), bytes);
  await using pool = new MapPool({ ...poolTimeouts(), workers: 2 });
  const file = await pool.open(fs.path("data.bin"), { mode: "r+", writes: "map" });
  await fs.outage();
  await fs.invalidate("data.bin");
  await assert.rejects(() => file.read(new Uint8Array(PAGE), 3 * PAGE), isFault({ code: "EIO" }));
  await file.write(new Uint8Array(10).fill(7), 0).catch(() => {});
  await assert.rejects(() => file.flush(), MappedIOError);
  await fs.heal();
  const page = new Uint8Array(PAGE);
  await file.read(page, 3 * PAGE);
  assertBytes(page, bytes.subarray(3 * PAGE, 4 * PAGE));
  await file.write(new Uint8Array(10).fill(9), 100);
  await file.flush().catch(() => file.flush()); // An error from the outage may be reported once.
  assert.deepEqual(
    Deno.readFileSync(fs.backing("data.bin")).subarray(100, 110),
    new Uint8Array(10).fill(9),
  );
  assert.equal(pool.restarts, 0);
});
