// guardmap's demonstration (the README's main job): a sparse file larger than 4 GiB, a window
// mapped at a high offset, typed data written and read back, and then the file truncated under
// the map, the fault reported as an error while the program carries on; last, a MapPool worker
// absorbing a fault that no guard can catch.
//
//   tools/dev demo
//   deno run --allow-ffi --allow-read --allow-write --allow-env tools/demo.ts
import { join } from "node:path";
import { MappedFile, MappedIOError, MapPool, WorkerCrashedError } from "../mod.ts";

const GiB = 2 ** 30;
const FILE_BYTES = 5 * GiB;
const WINDOW_OFFSET = 4 * GiB + 12_345;
const WINDOW_BYTES = 1 << 20;

function say(text: string): void {
  console.log(text);
}

function virtualSize(): number | undefined {
  try {
    const line = Deno.readTextFileSync("/proc/self/status").split("\n")
      .find((entry) => entry.startsWith("VmSize:"));
    return line === undefined ? undefined : Number(line.split(/\s+/)[1]) * 1024;
  } catch {
    return undefined; // Not Linux, or no --allow-all.
  }
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

const dir = Deno.makeTempDirSync({ prefix: "guardmap-demo-" });
const path = join(dir, "big.bin");
try {
  say(`1. Creating a sparse file of ${FILE_BYTES / GiB} GiB at ${path}`);
  say("   (sparse: it takes no disk space until written).");
  Deno.writeFileSync(path, new Uint8Array(0));
  Deno.truncateSync(path, FILE_BYTES);

  const before = virtualSize();
  using map = MappedFile.open(path, {
    mode: "r+",
    offset: WINDOW_OFFSET,
    length: WINDOW_BYTES,
  });
  const after = virtualSize();
  say(`\n2. Mapped a ${mib(WINDOW_BYTES)} window at file offset ${WINDOW_OFFSET} (past 4 GiB).`);
  if (before !== undefined && after !== undefined) {
    say(`   The process's address space grew by ${mib(after - before)}, not by the offset:`);
    say("   only the window is mapped, from the offset rounded down to a page.");
  } else {
    say("   (Deno needs --allow-all to read /proc/self/status and show the address space.)");
  }

  const values = Float64Array.from({ length: 1000 }, (_, i) => Math.sqrt(i));
  map.writeArray(values, 0);
  map.flush();
  const back = map.readArray(Float64Array, 0, values.length);
  say(`\n3. Wrote ${values.length} float64 values through the map and flushed them to the file.`);
  say(`   Read back through the map: back[999] = ${back[999].toFixed(6)} (sqrt(999)).`);
  using file = Deno.openSync(path);
  file.seekSync(WINDOW_OFFSET + 999 * 8, Deno.SeekMode.Start);
  const bytes = new Uint8Array(8);
  file.readSync(bytes);
  const fromFile = new DataView(bytes.buffer).getFloat64(0, true);
  say(
    `   Read with an ordinary file read at offset ${WINDOW_OFFSET + 999 * 8}: ${
      fromFile.toFixed(6)
    }.`,
  );

  const keptBytes = 8_192;
  say(`\n4. Truncating the file under the map, so that only ${keptBytes} bytes of the window`);
  say("   remain. Touching the rest now makes the kernel raise SIGBUS, which kills a program");
  say("   that reads a memory map directly (numpy.memmap, Bun.mmap, memmap2 ...).");
  Deno.truncateSync(path, WINDOW_OFFSET + keptBytes);
  const everything = new Uint8Array(WINDOW_BYTES);
  try {
    map.read(everything, 0);
    say("   Unexpected: the read succeeded.");
    Deno.exitCode = 1;
  } catch (error) {
    if (!(error instanceof MappedIOError)) throw error;
    say("   guardmap caught the fault and threw MappedIOError instead:");
    say(`     ${error.message}`);
    say(
      `     code ${error.code}, reason ${error.reason}, position ${error.position}, ` +
        `bytesTransferred ${error.bytesTransferred}`,
    );
  }

  const healthy = new Float64Array(4);
  map.read(healthy, 0);
  say("\n5. The program carries on. The part of the window that still exists reads fine:");
  say(`   [${Array.from(healthy, (value) => value.toFixed(3)).join(", ")}]`);
  say("\n6. Code that reads mapped memory directly cannot be guarded. MapPool keeps the map in");
  say("   a worker process instead: a kernel that touches the lost part through a zero-copy view");
  await using pool = new MapPool({ workers: 1 });
  const pooled = await pool.open(path, { offset: WINDOW_OFFSET, length: keptBytes });
  const kernels = new URL("../tests/kernels/kernels.ts", import.meta.url);
  Deno.truncateSync(path, WINDOW_OFFSET + 4096);
  try {
    await pooled.run(kernels, "touch", keptBytes - 1);
    say("   Unexpected: the kernel survived.");
    Deno.exitCode = 1;
  } catch (error) {
    if (!(error instanceof WorkerCrashedError)) throw error;
    say(`   killed its worker (${error.signal}), not this program. The pool restarted it:`);
  }
  const first = new Float64Array(2);
  await pooled.read(first, 0);
  say(
    `   the next call reads [${Array.from(first, (value) => value.toFixed(3)).join(", ")}] ` +
      `(restarts: ${pool.restarts}).`,
  );
  say("\nDone: no crash, no silent corruption.");
} finally {
  Deno.removeSync(dir, { recursive: true });
}
