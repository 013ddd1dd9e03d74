/**
 * The set-up and probes of tests/library_cache_test.ts: a packaged copy of this checkout without
 * zig-out, fresh probe processes, and what they report.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { libraryPath, native } from "../../ffi/library.ts";
import { sha256Hex } from "../../ffi/library_prebuilt.ts";
import { packagedCopy } from "../../tools/package.ts";
import { pattern, type Scratch, scratch, writePattern } from "../util.ts";

export const PROBE = fileURLToPath(new URL("./probe.ts", import.meta.url));
export const SWAPPER = fileURLToPath(new URL("./swapper.ts", import.meta.url));
export const linux = Deno.build.os === "linux";
export const ci = Deno.env.get("CI") === "true";

export const INFO_KERNEL = `import { libraryInfo, type LibraryInfo } from "./ffi/library.ts";
export function libraryInfoOfWorker(_view: Uint8Array): LibraryInfo | undefined {
  return libraryInfo();
}
`;
export const INFO_WEB_WORKER = `import { MappedFile } from "./mod.ts";
import { libraryInfo } from "./ffi/library.ts";
self.onmessage = (event: MessageEvent<string>) => {
  MappedFile.open(event.data).close();
  self.postMessage(libraryInfo());
};
`;
export const MAP_WEB_WORKER = `import { MappedFile } from "./mod.ts";
import { libraryInfo } from "./ffi/library.ts";
let kept: MappedFile | undefined;
self.onmessage = (event: MessageEvent<string>) => {
  kept = MappedFile.open(event.data); // Left open: the worker is terminated with it.
  const bytes = new Uint8Array(4);
  kept.read(bytes, 0);
  self.postMessage({ info: libraryInfo(), bytes: [...bytes] });
};
`;

export interface Setup {
  space: Scratch;
  packageDir: string;
  cacheDir: string;
  dataFile: string;
  sha256: string;
  /** The file the cached library must be (named by its SHA-256). */
  cachedPath: string;
}

/** A packaged copy of guardmap, a data file and an empty cache directory, in a scratch dir. */
export function setUp(): Setup {
  native(); // This checkout's library (built here if needed): the one to package.
  const space = scratch();
  const packageDir = space.path("package");
  const packaged = packagedCopy(packageDir, libraryPath()!);
  Deno.writeTextFileSync(join(packageDir, "info_kernel.ts"), INFO_KERNEL);
  Deno.writeTextFileSync(join(packageDir, "info_web_worker.ts"), INFO_WEB_WORKER);
  Deno.writeTextFileSync(join(packageDir, "map_web_worker.ts"), MAP_WEB_WORKER);
  const dataFile = space.path("data.bin");
  writePattern(dataFile, 8192);
  const cacheDir = space.path("cache");
  const name = linux ? `libguardmap-${packaged.sha256}.so` : "";
  return {
    space,
    packageDir,
    cacheDir,
    dataFile,
    sha256: packaged.sha256,
    cachedPath: join(cacheDir, name),
  };
}

export interface ProbeResult {
  code: number;
  stderr: string;
  // deno-lint-ignore no-explicit-any
  report: any;
}

/** Runs the probe in a new process with only the environment a user's program would have. */
export async function probe(
  setup: Setup,
  options: { flags?: string[]; args?: string[]; env?: Record<string, string> } = {},
): Promise<ProbeResult> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/root",
    NO_COLOR: "1",
    GUARDMAP_CACHE: setup.cacheDir,
    ...options.env,
  };
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir !== undefined) env.DENO_DIR = denoDir;
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--no-prompt",
      ...(options.flags ?? ["--allow-all"]),
      PROBE,
      setup.packageDir,
      setup.dataFile,
      ...(options.args ?? []),
    ],
    clearEnv: true,
    env,
    stdin: "null",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout).trim();
  const stderr = new TextDecoder().decode(output.stderr);
  const last = stdout.split("\n").at(-1) ?? "";
  return { code: output.code, stderr, report: last.startsWith("{") ? JSON.parse(last) : undefined };
}

export function assertLoaded(result: ProbeResult, what: string): void {
  assert.equal(result.code, 0, `${what}: the probe failed:\n${result.stderr}`);
  assert.deepEqual(result.report.bytes, [...pattern(0, 4)], `${what}: wrong bytes read`);
}

/** The names in a cache directory, sorted. */
export function cacheEntries(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((entry) => entry.name).sort();
}

/** The inodes of the mappings of files under `path` in a probe's /proc/self/maps lines. */
export function mappedInodes(maps: string[], path: string): number[] {
  return [
    ...new Set(
      maps.filter((line) => line.includes(path)).map((line) => Number(line.split(/\s+/)[4])),
    ),
  ];
}

/** Starts `count` probes, releases them together once all wait, and returns their results. */
export async function loadAtOnce(
  setup: Setup,
  tag: string,
  count: number,
  args: string[] = ["--maps"],
  env: Record<string, string> = {},
): Promise<ProbeResult[]> {
  const go = setup.space.path(`go-${tag}`);
  const runs = Array.from({ length: count }, (_, i) =>
    probe(setup, {
      args: ["--go", go, "--ready", setup.space.path(`ready-${tag}-${i}`), ...args],
      env,
    }));
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const ready = [...Deno.readDirSync(setup.space.dir)]
      .filter((entry) => entry.name.startsWith(`ready-${tag}-`)).length;
    if (ready === count) break;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  Deno.writeTextFileSync(go, "");
  return await Promise.all(runs);
}

/** Every probe loaded the cached file, and the cache holds that one verified file only. */
export function assertOneFile(setup: Setup, results: ProbeResult[], what: string): void {
  const name = `libguardmap-${setup.sha256}.so`;
  for (const [i, result] of results.entries()) {
    assertLoaded(result, `${what}, process ${i}`);
    assert.equal(result.report.info.source, "cache");
    assert.equal(result.report.info.path, join(setup.cacheDir, name));
    assert.equal(result.report.info.sha256, setup.sha256);
    // Each mapped the file that is there now (the loser of a race maps the winner's file).
    const inodes = mappedInodes(result.report.maps, setup.cacheDir);
    assert.deepEqual(inodes, [Deno.statSync(setup.cachedPath).ino], `${what}, process ${i}`);
  }
  // One complete file, no temporary or moved-aside file left behind.
  assert.deepEqual(cacheEntries(setup.cacheDir), [name], what);
  assert.equal(sha256Hex(Deno.readFileSync(setup.cachedPath)), setup.sha256, what);
}
