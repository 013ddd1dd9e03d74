/**
 * A process that loads guardmap from a packaged copy (tools/package.ts: packagedCopy) the way a
 * JSR user's program does, for tests/library_cache_test.ts and bench/load_bench.ts:
 *
 *   deno run FLAGS probe.ts PACKAGE_DIR DATA_FILE [--go FILE --ready FILE] [--maps] [--mapped]
 *     [--tamper] [--pool] [--web-worker] [--web-workers N] [--write-memory-file]
 *
 * It maps DATA_FILE and reads its first 4 bytes, then prints one JSON line: the library's
 * `libraryInfo()`, the bytes read, the time the first `MappedFile.open` took, and with --pool or
 * --web-worker what a MapPool worker process or a Web Worker reported about its own load.
 * With --go it first creates --ready and waits until --go exists (to start many loads at once).
 * --maps adds this process's /proc/self/maps lines. --mapped adds, for each libguardmap file
 * mapped, its device, inode, path and the SHA-256 of its content read back through
 * /proc/self/map_files (needs root). --tamper replaces the cached file (appending bytes) after this
 * process loaded it, before --pool starts workers. --web-workers N first starts N Web Workers at
 * once, each maps DATA_FILE, leaves it open and reports its load; they are terminated before this
 * thread loads the library; the report then says how many copies of libguardmap are mapped, how
 * many memory files hold one, and how long the workers' maps took to be released. --pool,
 * --web-worker and --web-workers need `info_kernel.ts`, `info_web_worker.ts` and
 * `map_web_worker.ts` in PACKAGE_DIR (the test writes them). Without --allow-all, /proc/self
 * files are read through libc (Deno asks for --allow-all there). --write-memory-file tries to
 * write into and to grow the memory file the library was loaded from, and reports what happened.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { pathToFileURL as toFileUrl } from "node:url";

const [packageDir, dataFile, ...rest] = Deno.args;
const flag = (name: string): string | undefined => {
  const at = rest.indexOf(name);
  return at < 0 ? undefined : rest[at + 1];
};

async function waitForGo(ready: string, go: string): Promise<void> {
  Deno.writeTextFileSync(ready, `${Deno.pid}`);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    try {
      Deno.statSync(go);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
  throw new Error(`probe: ${go} did not appear within 60 s`);
}

const go = flag("--go");
if (go !== undefined) await waitForGo(flag("--ready")!, go);

/** A /proc/self file: through Deno when --allow-all is granted, else through libc (--allow-ffi). */
function readProc(path: string): Uint8Array {
  try {
    return Deno.readFileSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
  }
  const libc = Deno.dlopen("libc.so.6", {
    open: { parameters: ["buffer", "i32"], result: "i32" },
    read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    close: { parameters: ["i32"], result: "i32" },
  });
  try {
    const fd = libc.symbols.open(new TextEncoder().encode(`${path}\0`), 0);
    if (fd < 0) throw new Error(`probe: cannot open ${path}`);
    const chunks: Uint8Array[] = [];
    // Bounded: at most 4096 chunks of 64 KiB.
    for (let round = 0; round < 4096; round++) {
      const chunk = new Uint8Array(1 << 16);
      const count = Number(libc.symbols.read(fd, chunk, BigInt(chunk.byteLength)));
      if (count <= 0) break;
      chunks.push(chunk.subarray(0, count));
    }
    libc.symbols.close(fd);
    const bytes = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0));
    chunks.reduce((at, chunk) => (bytes.set(chunk, at), at + chunk.byteLength), 0);
    return bytes;
  } finally {
    libc.close();
  }
}

/** This process's /proc/self/maps lines that name libguardmap. */
function libraryMaps(): string[] {
  const maps = new TextDecoder().decode(readProc("/proc/self/maps"));
  return maps.split("\n").filter((line) => line.includes("libguardmap"));
}

/** Each libguardmap file mapped: device, inode, path, and its content's SHA-256 (or why not). */
function mappedLibraries(): Record<string, unknown>[] {
  const files = new Map<string, Record<string, unknown>>();
  for (const line of libraryMaps()) {
    const [range, , , device, inode, ...path] = line.split(/\s+/);
    if (files.has(`${device}:${inode}`)) continue;
    const file: Record<string, unknown> = { device, inode: Number(inode), path: path.join(" ") };
    try {
      const bytes = readProc(`/proc/self/map_files/${range}`);
      file.sha256 = createHash("sha256").update(bytes).digest("hex");
    } catch (error) {
      file.error = String(error);
    }
    files.set(`${device}:${inode}`, file);
  }
  return [...files.values()];
}

/** How many of this process's descriptors are libguardmap memory files (null: not readable). */
function memoryFiles(): number | null {
  let names: string[];
  try {
    names = [...Deno.readDirSync("/proc/self/fd")].map((entry) => entry.name);
  } catch {
    return null; // Deno asks for --allow-all.
  }
  return names.filter((name) => {
    try {
      return Deno.readLinkSync(`/proc/self/fd/${name}`).startsWith("/memfd:libguardmap");
    } catch {
      return false; // Closed meanwhile (the listing's own descriptor).
    }
  }).length;
}

/** Starts `count` Web Workers at once; each maps `dataFile`, keeps it open and reports. */
async function mapInWebWorkers(count: number): Promise<unknown[]> {
  const script = toFileUrl(join(packageDir, "map_web_worker.ts"));
  const workers = Array.from({ length: count }, () => new Worker(script, { type: "module" }));
  const replies = await Promise.all(workers.map((worker) =>
    new Promise((resolve, reject) => {
      worker.onmessage = (event) => resolve(event.data);
      worker.onerror = (event) => {
        event.preventDefault();
        reject(new Error(event.message));
      };
      worker.postMessage(dataFile);
    })
  ));
  for (const worker of workers) worker.terminate();
  return replies;
}

const webWorkers = Number(flag("--web-workers") ?? 0);
const webWorkerReplies = webWorkers > 0 ? await mapInWebWorkers(webWorkers) : undefined;

const guardmap = await import(toFileUrl(join(packageDir, "mod.ts")).href);
const library = await import(toFileUrl(join(packageDir, "ffi", "library.ts")).href);
const started = performance.now();
const file = guardmap.MappedFile.open(dataFile);
const openMs = performance.now() - started;
const bytes = new Uint8Array(4);
file.read(bytes, 0);
file.close();
const info: { path: string } = library.libraryInfo();
const report: Record<string, unknown> = {
  info,
  bytes: [...bytes],
  openMs,
};

if (rest.includes("--maps")) {
  // What this process has mapped (needs --allow-all in Deno 2.9).
  report.maps = Deno.readTextFileSync("/proc/self/maps").split("\n");
}

if (rest.includes("--mapped")) report.mapped = mappedLibraries();

if (webWorkerReplies !== undefined) {
  report.webWorkers = webWorkerReplies;
  report.libraryCopies = new Set(libraryMaps().map((line) => line.split(/\s+/)[4])).size;
  report.memoryFiles = memoryFiles();
  // The terminated workers' maps are released by the library's reaper (every 500 ms).
  const data = Deno.realPathSync(dataFile);
  const started = performance.now();
  report.releasedMs = null;
  while (performance.now() - started < 30_000) {
    if (!new TextDecoder().decode(readProc("/proc/self/maps")).includes(data)) {
      report.releasedMs = Math.round(performance.now() - started);
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

if (rest.includes("--write-memory-file")) {
  // Tries to change the loaded memory file (the byte at 0 written with its own value, one byte
  // more): its seals must refuse both.
  const attempt = (change: () => void): string => {
    try {
      change();
      return "changed";
    } catch (error) {
      return error instanceof Error ? error.name : String(error);
    }
  };
  const first = Deno.readFileSync(info.path).subarray(0, 1);
  report.memoryFileChanges = {
    write: attempt(() => {
      using file = Deno.openSync(info.path, { write: true });
      file.writeSync(first);
    }),
    grow: attempt(() => {
      using file = Deno.openSync(info.path, { write: true });
      file.truncateSync(file.statSync().size + 1);
    }),
  };
}

if (rest.includes("--tamper")) {
  // Another actor replaces the cached file after this process loaded it: the workers started
  // below must not load it.
  const path = info.path;
  Deno.writeFileSync(`${path}.tampered`, new Uint8Array([...Deno.readFileSync(path), 1, 2, 3]));
  Deno.renameSync(`${path}.tampered`, path);
}

if (rest.includes("--pool")) {
  // The kernel lies in the packaged copy, which the workers may read.
  const kernel = toFileUrl(join(packageDir, "info_kernel.ts"));
  await using pool = new guardmap.MapPool({ workers: 2 });
  const pooled = await pool.open(dataFile);
  report.poolInfo = await pooled.run(kernel, "libraryInfoOfWorker");
  const read = new Uint8Array(4);
  await pooled.read(read, 0);
  report.poolBytes = [...read];
}

if (rest.includes("--web-worker")) {
  const worker = new Worker(toFileUrl(join(packageDir, "info_web_worker.ts")), {
    type: "module",
  });
  report.webWorkerInfo = await new Promise((resolve, reject) => {
    worker.onmessage = (event) => resolve(event.data);
    worker.onerror = (event) => reject(new Error(event.message));
    worker.postMessage(dataFile);
  });
  worker.terminate();
}

console.log(JSON.stringify(report));
