/**
 * A user's program that imports guardmap from a (loopback) JSR registry, run in a new process
 * with exactly the flags a test gives it, a fresh `DENO_DIR`, its own `HOME` (so the library
 * cache is `<home>/.cache/guardmap`), no `GUARDMAP_LIB` and no Zig on `PATH`: what a new user of
 * `jsr:@guardmap/guardmap` has.
 *
 * The program (`app.ts` in the app's directory) takes a comma-separated list of steps:
 * - `map`: maps a file, reads it, truncates it under the map and reads again (MappedIOError);
 * - `write`: maps a file in mode `"r+"` and writes through the map;
 * - `pool-read`: a MapPool `read`;
 * - `pool`: that and a `run` of the kernel `kernel.ts`, which lies in the app's own directory
 *   (outside guardmap's);
 *
 * and prints one JSON line with what each step saw and where the library came from
 * (`libraryInfo()`: its source, path and how many cache files were repaired).
 *
 * @module
 */
import { delimiter, join } from "node:path";

/** The variables guardmap reads (the cache's location, and a library to use instead). */
export const ENV_READ = ["GUARDMAP_LIB", "GUARDMAP_CACHE", "XDG_CACHE_HOME", "HOME"];

/** How long one run of the program may take before it is killed and the test fails. */
const RUN_TIMEOUT_MS = 120_000;

/** An app directory with its program, kernel, data directory, home and Deno cache. */
export interface App {
  readonly dir: string;
  readonly dataDir: string;
  readonly kernel: string;
  readonly home: string;
  /** `<home>/.cache/guardmap`: where guardmap keeps its library. */
  readonly cacheDir: string;
  readonly denoDir: string;
  readonly script: string;
}

/** What one run printed and how it ended. */
export interface AppRun {
  code: number;
  stdout: string;
  stderr: string;
  /** The JSON line the program prints when all its steps ran, else `undefined`. */
  // deno-lint-ignore no-explicit-any
  report: any;
}

const KERNEL = `/** Sums the bytes of the view (runs inside a MapPool worker). */
export function sum(view: Uint8Array): number {
  let total = 0;
  for (const byte of view) total += byte;
  return total;
}
`;

function program(specifier: string): string {
  return `import { libraryInfo, MapPool, MappedFile, MappedIOError } from "${specifier}";
const [stepList, dataDir] = Deno.args;
const steps = stepList.split(",");
const report: Record<string, unknown> = {};
// The data files are written by the test before each run: the program itself writes nothing
// (except by truncating map.bin), so that a missing --allow-write is guardmap's error.
const data = (name: string) => dataDir + "/" + name;
if (steps.includes("map")) {
  const path = data("map.bin");
  using map = MappedFile.open(path);
  const head = new Uint8Array(4);
  map.read(head, 0);
  report.head = [...head];
  Deno.truncateSync(path, 4096);
  try {
    map.read(new Uint8Array(65536), 0);
    report.truncation = "no error";
  } catch (error) {
    if (!(error instanceof MappedIOError)) throw error;
    report.truncation = { name: error.name, reason: error.reason, bytes: error.bytesTransferred };
  }
}
if (steps.includes("write")) {
  const path = data("write.bin");
  using map = MappedFile.open(path, { mode: "r+" });
  map.write(new Uint8Array([42]), 100);
  map.flush();
  report.written = Deno.readFileSync(path)[100];
}
if (steps.includes("pool") || steps.includes("pool-read")) {
  const path = data("pool.bin");
  await using pool = new MapPool({ workers: 1 });
  const file = await pool.open(path);
  const head = new Uint8Array(4);
  await file.read(head, 0);
  report.poolHead = [...head];
  if (steps.includes("pool")) {
    report.poolSum = await file.run(new URL("./kernel.ts", import.meta.url), "sum");
  }
}
const info = libraryInfo();
report.library = { source: info?.source, path: info?.path, repaired: info?.repaired.length };
console.log(JSON.stringify(report));
`;
}

/** The data files the program maps, and their lengths; each holds the pattern `(i * 7 + 3) & 0xff`. */
export const DATA_FILES: Record<string, number> = {
  "map.bin": 65536,
  "write.bin": 8192,
  "pool.bin": 8192,
};

function writeData(app: App): void {
  for (const [name, length] of Object.entries(DATA_FILES)) {
    const bytes = new Uint8Array(length).map((_, i) => (i * 7 + 3) & 0xff);
    Deno.writeFileSync(join(app.dataDir, name), bytes);
  }
}

/** The sum of the pattern bytes of a file of `length` bytes (what the `pool` step's run returns). */
export function patternSum(length: number): number {
  let total = 0;
  for (let i = 0; i < length; i++) total += (i * 7 + 3) & 0xff;
  return total;
}

/** Creates an app in `dir` whose program imports `specifier` (e.g. `jsr:@guardmap/guardmap@1.0.0`). */
export function makeApp(dir: string, specifier: string): App {
  const app: App = {
    dir,
    dataDir: join(dir, "data"),
    kernel: join(dir, "kernel.ts"),
    home: join(dir, "home"),
    cacheDir: join(dir, "home", ".cache", "guardmap"),
    denoDir: join(dir, "deno_dir"),
    script: join(dir, "app.ts"),
  };
  for (const path of [app.dataDir, app.home]) Deno.mkdirSync(path, { recursive: true });
  Deno.writeTextFileSync(app.kernel, KERNEL);
  Deno.writeTextFileSync(app.script, program(specifier));
  return app;
}

/**
 * The flags the README documents for a JSR user, for this app: FFI; read and write for the data
 * and the cache; read for the kernel; the variables guardmap reads; running Deno (MapPool).
 */
export function documentedFlags(app: App): string[] {
  return [
    "--allow-ffi",
    `--allow-read=${app.dataDir},${app.kernel},${app.cacheDir}`,
    `--allow-write=${app.dataDir},${app.cacheDir}`,
    `--allow-env=${ENV_READ.join(",")}`,
    `--allow-run=${Deno.execPath()}`,
  ];
}

/** `PATH` with the system's directories only, none of which holds a `zig`. */
export function systemPath(): string {
  const dirs = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];
  return dirs.filter((dir) => !isFile(join(dir, "zig"))).join(delimiter);
}

/** The whole environment of the app's Deno: its home, its DENO_DIR, the registry at `registryUrl`. */
function appEnv(app: App, registryUrl: string): Record<string, string> {
  return {
    PATH: systemPath(),
    HOME: app.home,
    DENO_DIR: app.denoDir,
    JSR_URL: registryUrl,
    NO_COLOR: "1",
    // Nothing but the loopback registry: no look-up of newer Deno releases.
    DENO_NO_UPDATE_CHECK: "1",
  };
}

/**
 * `deno cache` of the app's program (and nothing else) into its DENO_DIR, as a user does before
 * going offline; throws with Deno's output when it fails.
 */
export async function cacheApp(app: App, registryUrl: string): Promise<void> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["cache", app.script],
    cwd: app.dir,
    clearEnv: true,
    env: appEnv(app, registryUrl),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(RUN_TIMEOUT_MS),
  }).output();
  if (!output.success) {
    throw new Error(`deno cache ${app.script} failed:\n${new TextDecoder().decode(output.stderr)}`);
  }
}

/** Runs the app's program with exactly `flags`, against the registry at `registryUrl`. */
export async function runApp(
  app: App,
  options: { registryUrl: string; flags: string[]; steps: string; cachedOnly?: boolean },
): Promise<AppRun> {
  writeData(app);
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      ...(options.cachedOnly ? ["--cached-only"] : []),
      ...options.flags,
      app.script,
      options.steps,
      app.dataDir,
    ],
    cwd: app.dir,
    clearEnv: true,
    env: appEnv(app, options.registryUrl),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(RUN_TIMEOUT_MS),
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  const last = stdout.trim().split("\n").at(-1) ?? "";
  return {
    code: output.code,
    stdout,
    stderr,
    report: last.startsWith("{") ? JSON.parse(last) : undefined,
  };
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
