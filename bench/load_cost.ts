// What loading the prebuilt library costs a process, measured in fresh processes (the loader's
// state is per process, so `deno bench` cannot measure it):
//
//   deno run -A bench/load_cost.ts [--runs 20]
//
// It packages the library into a copy of the module tree (tools/package.ts: packagedCopy; the
// module of `tools/dev package` in ffi/prebuilt/ when there is one, else this checkout's build)
// and runs a child process per measurement, with GUARDMAP_LIB unset:
// - cold: an empty cache directory (decode, write, verify, dlopen);
// - warm: the cache already holds the file (verify, dlopen);
// - plain: GUARDMAP_LIB names the same file (dlopen only: the baseline without the cache).
// Each child times `native()` (the load, once per process) and then the first
// `MappedFile.open`, and the whole first open when the library was not loaded before it.
// The medians of all runs are printed as a table.
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { cachedFileName, cachedLibrary, verifyFile } from "../ffi/library_cache.ts";
import { decodePrebuilt, type Prebuilt } from "../ffi/library_prebuilt.ts";
import { packagedCopy } from "../tools/package.ts";

interface ChildReport {
  loadMs: number;
  openAfterLoadMs: number;
  firstOpenMs: number;
  source: string;
  decoded: boolean;
}

async function child(packageDir: string, dataFile: string, mode: string): Promise<void> {
  const library = await import(pathToFileURL(join(packageDir, "ffi", "library.ts")).href);
  const guardmap = await import(pathToFileURL(join(packageDir, "mod.ts")).href);
  let loadMs = 0;
  let started = performance.now();
  if (mode === "split") {
    library.native();
    loadMs = performance.now() - started;
    started = performance.now();
  }
  const file = guardmap.MappedFile.open(dataFile);
  const openMs = performance.now() - started;
  file.close();
  const info = library.libraryInfo();
  const report: ChildReport = {
    loadMs,
    openAfterLoadMs: mode === "split" ? openMs : 0,
    firstOpenMs: mode === "split" ? 0 : openMs,
    source: info.source,
    decoded: info.decoded === true,
  };
  console.log(JSON.stringify(report));
}

async function runChild(
  packageDir: string,
  dataFile: string,
  mode: string,
  env: Record<string, string>,
): Promise<ChildReport> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", fileURLToPath(import.meta.url), "--child", packageDir, dataFile, mode],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", NO_COLOR: "1", ...env },
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(output.stdout).trim();
  if (!output.success) {
    throw new Error(`child failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return JSON.parse(text.split("\n").at(-1)!);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The parts of a load, in this process (warmed up, so a lower bound for a fresh process). */
function phases(prebuilt: Prebuilt, dir: string, runs: number): void {
  const decode: number[] = [];
  const cold: number[] = [];
  const verify: number[] = [];
  for (let run = 0; run < runs; run++) {
    let started = performance.now();
    decodePrebuilt(prebuilt);
    decode.push(performance.now() - started);
    started = performance.now();
    const { path } = cachedLibrary(prebuilt, join(dir, `${run}`));
    cold.push(performance.now() - started);
    started = performance.now();
    if (verifyFile(path, prebuilt.sha256) !== "ok") throw new Error(`${path} did not verify`);
    verify.push(performance.now() - started);
  }
  console.log(
    `in-process medians: decode ${median(decode).toFixed(2)} ms; decode+write+link+verify ` +
      `into an empty cache ${median(cold).toFixed(2)} ms; verify ${median(verify).toFixed(2)} ms`,
  );
}

/** A packaged copy in `dir`: the stripped module of `tools/dev package` if there is one. */
async function prepare(
  dir: string,
): Promise<{ packageDir: string; prebuilt: Prebuilt; what: string }> {
  const { native, libraryPath } = await import("../ffi/library.ts");
  native();
  const packageDir = join(dir, "package");
  const packaged = packagedCopy(packageDir, libraryPath()!);
  const module = packaged.modulePath.split("/").at(-1)!;
  let what = `this checkout's build (${packaged.libraryBytes} B, not stripped)`;
  try {
    const generated = new URL(`../ffi/prebuilt/${module}`, import.meta.url);
    Deno.copyFileSync(fileURLToPath(generated), packaged.modulePath);
    what = "the module of `tools/dev package` (stripped)";
  } catch {
    // No `tools/dev package` output: the checkout's own build is packaged instead.
  }
  const prebuilt = (await import(pathToFileURL(packaged.modulePath).href)).prebuilt;
  return { packageDir, prebuilt, what };
}

/** Runs the children, cold, warm and plain in turn in each run; reports by name. */
async function measure(
  dir: string,
  packageDir: string,
  prebuilt: Prebuilt,
  runs: number,
): Promise<Map<string, ChildReport[]>> {
  const dataFile = join(dir, "data.bin");
  Deno.writeFileSync(dataFile, new Uint8Array(4096));
  const warmCache = join(dir, "warm");
  const reports = new Map<string, ChildReport[]>();
  const add = (name: string, report: ChildReport) =>
    reports.set(name, [...reports.get(name) ?? [], report]);
  // Fill the warm cache once, outside the measurements.
  await runChild(packageDir, dataFile, "split", { GUARDMAP_CACHE: warmCache });
  for (let run = 0; run < runs; run++) {
    for (const mode of ["split", "whole"]) {
      const suffix = mode === "split" ? "" : ", first open";
      const cold = join(dir, `cold-${run}-${mode}`);
      add(`cold${suffix}`, await runChild(packageDir, dataFile, mode, { GUARDMAP_CACHE: cold }));
      add(
        `warm${suffix}`,
        await runChild(packageDir, dataFile, mode, { GUARDMAP_CACHE: warmCache }),
      );
      const cached = join(cold, cachedFileName(prebuilt));
      add(`plain${suffix}`, await runChild(packageDir, dataFile, mode, { GUARDMAP_LIB: cached }));
    }
  }
  return reports;
}

function printTable(reports: Map<string, ChildReport[]>): void {
  console.log(
    "| load | source | decoded | native() | (min) | first open after it | first open | (min) |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  const least = (values: number[]) => Math.min(...values).toFixed(2);
  const load = (name: string) => median(reports.get(name)!.map((r) => r.loadMs));
  const open = (name: string) =>
    median(reports.get(`${name}, first open`)!.map((r) => r.firstOpenMs));
  for (const name of ["cold", "warm", "plain"]) {
    const split = reports.get(name)!;
    const decoded = split.filter((report) => report.decoded).length;
    console.log(
      `| ${name} | ${split[0].source} | ${decoded}/${split.length} | ${load(name).toFixed(2)} | ` +
        `${least(split.map((r) => r.loadMs))} | ` +
        `${median(split.map((r) => r.openAfterLoadMs)).toFixed(2)} | ${open(name).toFixed(2)} | ` +
        `${least(reports.get(`${name}, first open`)!.map((r) => r.firstOpenMs))} |`,
    );
  }
  for (const name of ["cold", "warm"]) {
    console.log(
      `${name} adds to a plain dlopen: ${(load(name) - load("plain")).toFixed(2)} ms to ` +
        `native(), ${(open(name) - open("plain")).toFixed(2)} ms to the first MappedFile.open`,
    );
  }
}

async function main(runs: number): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "guardmap-load-" });
  try {
    const { packageDir, prebuilt, what } = await prepare(dir);
    const reports = await measure(dir, packageDir, prebuilt, runs);
    console.log(`packaged: ${what}; ${runs} runs each, medians in ms`);
    printTable(reports);
    phases(prebuilt, join(dir, "phases"), runs);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

if (Deno.args[0] === "--child") {
  await child(Deno.args[1], Deno.args[2], Deno.args[3]);
} else {
  const at = Deno.args.indexOf("--runs");
  await main(at >= 0 ? Number(Deno.args[at + 1]) : 20);
}
