/**
 * The proof that `import` from JSR works for a new user: a clean `git clone` of this checkout,
 * `tools/dev package`, a real `deno publish --token T` to a loopback registry in JSR's layout
 * (tests/jsr/registry.ts, on 127.0.0.1), then a program that imports
 * `jsr:@guardmap/guardmap@<version>` in a new process with exactly the README's flags, a fresh
 * DENO_DIR, its own HOME, no GUARDMAP_LIB and no Zig on PATH (tests/jsr/app.ts):
 *
 * - it maps a file, reads it, and gets a MappedIOError from a truncation; a MapPool read and a
 *   run of a kernel in its own directory;
 * - a corrupted file in guardmap's cache is reported and replaced, and the program still works;
 * - with the registry stopped, it runs again with `--cached-only`, and so does a second app
 *   whose fresh DENO_DIR saw only `deno cache app.ts` (the pool's worker module is in the graph);
 * - a file tampered with in the registry gives Deno's integrity error.
 *
 * It publishes what is committed (a clone sees nothing else). Linux only: the prebuilt library
 * for x86_64 Linux is the one the program loads here.
 *
 * @module
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Registry, serveRegistry, sha256 } from "./jsr/registry.ts";
import {
  type App,
  cacheApp,
  documentedFlags,
  makeApp,
  patternSum,
  runApp,
  systemPath,
} from "./jsr/app.ts";
import { pattern, scratch } from "./util.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const linux = Deno.build.os === "linux" && Deno.build.arch === "x86_64";
// A first `tools/dev package` compiles two targets; on 2 busy cores that can take minutes.
const PACKAGE_TIMEOUT_MS = 600_000;
const COMMAND_TIMEOUT_MS = 180_000;

/** Runs a command to completion (killed after `timeoutMs`) and returns its exit code and output. */
async function command(
  program: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number; output: string }> {
  const result = await new Deno.Command(program, {
    args,
    cwd: options.cwd,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(options.timeoutMs ?? COMMAND_TIMEOUT_MS),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: result.code,
    output: decoder.decode(result.stdout) + decoder.decode(result.stderr),
  };
}

async function mustRun(
  what: string,
  program: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<string> {
  const result = await command(program, args, options);
  assert.equal(result.code, 0, `${what} failed (exit ${result.code}):\n${result.output}`);
  return result.output;
}

/** The pinned Zig tools/dev exported (ZIG, GUARDMAP_ZIG), else the checkout's, else PATH's. */
function zigPath(): string {
  const exported = Deno.env.get("ZIG") ?? Deno.env.get("GUARDMAP_ZIG");
  if (exported !== undefined) return exported;
  const local = join(ROOT, ".tools", "zig", "ziglang", "zig");
  try {
    if (Deno.statSync(local).isFile) return local;
  } catch {
    // Not installed under .tools: tools/dev then looks on PATH itself.
  }
  return "zig";
}

/**
 * Clones the committed HEAD of this checkout into `dir` and runs `tools/dev package` there,
 * with the pinned Deno and Zig first on PATH (the clone has no .tools of its own).
 */
async function cloneAndPackage(dir: string): Promise<string> {
  const head = (await mustRun("git rev-parse", "git", ["-C", ROOT, "rev-parse", "HEAD"])).trim();
  await mustRun("git clone", "git", ["clone", "--quiet", "--no-checkout", ROOT, dir]);
  await mustRun("git checkout", "git", ["-C", dir, "checkout", "--quiet", "--detach", head]);
  const zig = zigPath();
  const tools = [dirname(Deno.execPath()), ...(zig.includes("/") ? [dirname(zig)] : [])];
  const path = [...tools, Deno.env.get("PATH") ?? systemPath()].join(":");
  await mustRun("tools/dev package", "bash", [join(dir, "tools", "dev"), "package"], {
    cwd: dir,
    env: { PATH: path },
    timeoutMs: PACKAGE_TIMEOUT_MS,
  });
  return head;
}

/** The version in the clone's deno.json: what `deno publish` publishes. */
function versionOf(dir: string): string {
  return JSON.parse(Deno.readTextFileSync(join(dir, "deno.json"))).version;
}

/** The one cached library file of the app, checked to be named by its content's SHA-256. */
function cachedLibrary(app: App): string {
  const names = [...Deno.readDirSync(app.cacheDir)].map((entry) => entry.name)
    .filter((name) => name.startsWith("libguardmap-"));
  assert.equal(names.length, 1, `cache ${app.cacheDir}: ${names}`);
  const path = join(app.cacheDir, names[0]);
  const named = /^libguardmap-([0-9a-f]{64})\.so$/.exec(names[0])?.[1];
  assert.equal(sha256(Deno.readFileSync(path)), named, `${path} does not match its name`);
  return path;
}

function assertWorked(run: { code: number; stderr: string; report: unknown }, what: string): void {
  assert.equal(run.code, 0, `${what}: the program failed:\n${run.stderr}`);
  // deno-lint-ignore no-explicit-any
  const report = run.report as any;
  // The prebuilt library from the package, through the cache (no local build, no Zig).
  assert.equal(report.library.source, "cache", `${what}: library from ${report.library.source}`);
  assert.deepEqual(report.head, [...pattern(0, 4)], `${what}: map read`);
  assert.deepEqual(report.truncation, { name: "MappedIOError", reason: "truncated", bytes: 4096 });
  assert.deepEqual(report.poolHead, [...pattern(0, 4)], `${what}: MapPool read`);
}

async function assertStopped(registry: Registry): Promise<void> {
  await assert.rejects(fetch(registry.url), "the stopped registry still answers");
}

Deno.test({
  name: "jsr: a clean clone, packaged and published to a loopback registry, works when imported",
  ignore: !linux,
  async fn(t) {
    const started = performance.now();
    using space = scratch();
    const clone = space.path("clone");
    const head = await cloneAndPackage(clone);
    const version = versionOf(clone);
    const registryDir = space.path("registry");
    const registry = serveRegistry({ dir: registryDir });
    const app = makeApp(space.path("app"), `jsr:@guardmap/guardmap@${version}`);
    const flags = documentedFlags(app);
    try {
      await t.step(`deno publish of ${head.slice(0, 12)} (version ${version})`, async () => {
        const output = await mustRun("deno publish", Deno.execPath(), ["publish", "--token", "T"], {
          cwd: clone,
          env: { JSR_URL: registry.url },
        });
        assert.match(output, /Successfully published @guardmap\/guardmap@/);
        assert.ok(
          registry.requests.some((line) => line.startsWith("POST /api/scopes/guardmap/")),
          `no upload reached the registry: ${registry.requests.join("; ")}`,
        );
      });

      await t.step(
        "imported with the documented flags: map, truncation, MapPool read",
        async () => {
          const run = await runApp(app, {
            registryUrl: registry.url,
            flags,
            steps: "map,pool-read",
          });
          assertWorked(run, "first run");
          assert.ok(registry.requests.some((line) => line.includes("_meta.json 200")));
          cachedLibrary(app);
        },
      );

      // Needs the pool engineer's fix in workers/map_pool.ts: a kernel outside guardmap's
      // directory (always so for a JSR user) is granted to the workers when the host may read
      // it. Before it: "Requires read access to .../kernel.ts".
      await t.step("MapPool run of a kernel in the app's own directory", async () => {
        const run = await runApp(app, { registryUrl: registry.url, flags, steps: "pool" });
        assert.equal(run.code, 0, `the program failed:\n${run.stderr}`);
        assert.equal(run.report.poolSum, patternSum(8192));
      });

      await t.step(
        "a corrupted cache file is reported and replaced; the program works",
        async () => {
          const path = cachedLibrary(app);
          const bytes = Deno.readFileSync(path);
          bytes.fill(0xcc, 4096, 8192); // Code the loader would map, overwritten.
          Deno.writeFileSync(path, bytes);
          const run = await runApp(app, {
            registryUrl: registry.url,
            flags,
            steps: "map,pool-read",
          });
          assertWorked(run, "run with a corrupted cache");
          assert.match(run.stderr, /did not verify/, "the corruption was not reported");
          assert.ok(run.stderr.includes(path), "the report does not name the cached file");
          assert.equal(run.report.library.repaired, 1);
          assert.equal(run.report.library.path, path);
          assert.equal(cachedLibrary(app), path);
        },
      );

      // A second app whose DENO_DIR saw only `deno cache app.ts`, never a pool started online:
      // the worker's module must be in the graph that `deno cache` fetches.
      const cachedApp = makeApp(space.path("app-cached"), `jsr:@guardmap/guardmap@${version}`);
      await t.step("deno cache of a new app, in a fresh DENO_DIR", async () => {
        await cacheApp(cachedApp, registry.url);
      });

      await t.step("with the registry stopped, --cached-only still works", async () => {
        await registry.stop();
        await assertStopped(registry);
        const run = await runApp(app, {
          registryUrl: registry.url,
          flags,
          steps: "map,pool-read",
          cachedOnly: true,
        });
        assertWorked(run, "--cached-only run");
        const cached = await runApp(cachedApp, {
          registryUrl: registry.url,
          flags: documentedFlags(cachedApp),
          steps: "map,pool-read",
          cachedOnly: true,
        });
        assertWorked(cached, "--cached-only run after only deno cache");
      });

      await t.step(
        "a file tampered with in the registry fails Deno's integrity check",
        async () => {
          const tampered = registry.filePath("@guardmap/guardmap", version, "mod.ts");
          Deno.writeTextFileSync(tampered, "\n// tampered\n", { append: true });
          await using again = serveRegistry({ dir: registryDir });
          const fresh = makeApp(space.path("app-fresh"), `jsr:@guardmap/guardmap@${version}`);
          const run = await runApp(fresh, {
            registryUrl: again.url,
            flags: documentedFlags(fresh),
            steps: "map",
          });
          assert.notEqual(run.code, 0, "a tampered module was accepted");
          assert.match(
            run.stderr,
            /Integrity check failed/,
            `not Deno's integrity error:\n${run.stderr}`,
          );
          assert.ok(
            run.stderr.includes("mod.ts"),
            `the error does not name mod.ts:\n${run.stderr}`,
          );
        },
      );
    } finally {
      await registry.stop();
    }
    console.log(
      `jsr registry test: ${((performance.now() - started) / 1000).toFixed(1)} s ` +
        `(clone, package, publish, deno cache, 7 program runs)`,
    );
  },
});
