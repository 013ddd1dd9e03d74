/**
 * A process that loads guardmap from a packaged copy (tools/package.ts: packagedCopy) the way a
 * JSR user's program does, for tests/library_cache_test.ts and bench/load_bench.ts:
 *
 *   deno run FLAGS probe.ts PACKAGE_DIR DATA_FILE [--go FILE --ready FILE] [--maps] [--tamper] [--pool]
 *     [--web-worker]
 *
 * It maps DATA_FILE and reads its first 4 bytes, then prints one JSON line: the library's
 * `libraryInfo()`, the bytes read, the time the first `MappedFile.open` took, and with --pool or
 * --web-worker what a MapPool worker process or a Web Worker reported about its own load.
 * With --go it first creates --ready and waits until --go exists (to start many loads at once).
 * --maps adds this process's /proc/self/maps lines. --tamper replaces the cached file (appending
 * bytes) after this process loaded it, before --pool starts workers. --pool and --web-worker need `info_kernel.ts` and `info_web_worker.ts` in PACKAGE_DIR (the test
 * writes them).
 *
 * @module
 */
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
