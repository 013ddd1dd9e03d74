/**
 * The least permissions a JSR user needs, as the README documents them, checked the way a user
 * meets them: this checkout's library packaged into the module tree (tools/package.ts), stored
 * as a version in a loopback registry in JSR's layout (tests/jsr/registry.ts), and imported as
 * `jsr:@guardmap/guardmap@<version>` by a program run in a new process with exactly the flags of
 * each case (tests/jsr/app.ts), a fresh DENO_DIR, no GUARDMAP_LIB and no Zig on PATH.
 *
 * Each case drops one flag of the documented set and checks that the error names that flag, or,
 * for the cache's flags on Linux, that guardmap still works from a memory file and writes nothing.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { libraryPath, native } from "../ffi/library.ts";
import { packagedCopy } from "../tools/package.ts";
import { serveRegistry, sha256, storeDirectory } from "./jsr/registry.ts";
import { type App, type AppRun, documentedFlags, makeApp, patternSum, runApp } from "./jsr/app.ts";
import { pattern, scratch } from "./util.ts";

const VERSION = "0.0.0-permissions";
const linux = Deno.build.os === "linux";

/** The documented flags with `flag`'s entry replaced (or dropped when `replacement` is omitted). */
function without(app: App, flag: string, replacement?: string): string[] {
  const flags = documentedFlags(app);
  const index = flags.findIndex((entry) => entry === flag || entry.startsWith(`${flag}=`));
  assert.notEqual(index, -1, `${flag} is not in the documented set`);
  flags.splice(index, 1, ...(replacement === undefined ? [] : [replacement]));
  return flags;
}

function cacheEntries(app: App): string[] {
  try {
    return [...Deno.readDirSync(app.cacheDir)].map((entry) => entry.name).sort();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

function emptyCache(app: App): void {
  try {
    Deno.removeSync(app.cacheDir, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** Asserts that the run failed with an error that names `flag` (and, if given, `path`). */
function assertNamesFlag(run: AppRun, flag: string, path?: string): void {
  assert.notEqual(run.code, 0, `the run succeeded without ${flag}:\n${run.stdout}`);
  assert.match(run.stderr, new RegExp(`${flag}\\b`), `the error does not name ${flag}`);
  if (path !== undefined) assert.ok(run.stderr.includes(path), `the error does not name ${path}`);
}

Deno.test({
  name: "permissions: the documented flags suffice for a JSR user, and a missing one is named",
  ignore: !linux,
  async fn(t) {
    native(); // This checkout's library (built if needed): the one to package.
    using space = scratch();
    const tree = space.path("package");
    packagedCopy(tree, libraryPath()!);
    Deno.writeTextFileSync(
      join(tree, "deno.json"),
      JSON.stringify({ name: "@guardmap/guardmap", version: VERSION, exports: "./mod.ts" }),
    );
    const registryDir = space.path("registry");
    storeDirectory(registryDir, { scope: "guardmap", name: "guardmap", version: VERSION }, tree);
    await using registry = serveRegistry({ dir: registryDir });
    const app = makeApp(space.path("app"), `jsr:@guardmap/guardmap@${VERSION}`);
    const run = (flags: string[], steps: string) =>
      runApp(app, { registryUrl: registry.url, flags, steps });

    await t.step("the documented set: map, read, a truncation, a write, MapPool read", async () => {
      const result = await run(documentedFlags(app), "map,write,pool-read");
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(result.report.head, [...pattern(0, 4)]);
      assert.deepEqual(result.report.truncation, {
        name: "MappedIOError",
        reason: "truncated",
        bytes: 4096,
      });
      assert.equal(result.report.written, 42);
      assert.deepEqual(result.report.poolHead, [...pattern(0, 4)]);
      assert.equal(result.report.library.source, "cache");
      // The library went into the cache, under its SHA-256.
      const entries = cacheEntries(app);
      assert.equal(entries.length, 1, `cache: ${entries}`);
      const hash = /^libguardmap-([0-9a-f]{64})\.so$/.exec(entries[0])?.[1];
      assert.equal(sha256(Deno.readFileSync(join(app.cacheDir, entries[0]))), hash);
    });

    // Needs the pool engineer's fix in workers/map_pool.ts (kernels outside guardmap's
    // directory are granted to the workers when the host may read them): before it, a kernel
    // in the app's own directory fails with "Requires read access to .../kernel.ts".
    await t.step("the documented set: MapPool run of a kernel in the app's directory", async () => {
      const result = await run(documentedFlags(app), "pool");
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.report.poolSum, patternSum(8192));
    });

    await t.step("without read access to the kernel: run's error names --allow-read", async () => {
      const flags = without(app, "--allow-read", `--allow-read=${app.dataDir},${app.cacheDir}`);
      assertNamesFlag(await run(flags, "pool"), "--allow-read", app.kernel);
    });

    await t.step("without --allow-ffi: the error names --allow-ffi", async () => {
      assertNamesFlag(await run(without(app, "--allow-ffi"), "map"), "--allow-ffi");
    });

    await t.step("without read access to the data: the error names --allow-read", async () => {
      const flags = without(app, "--allow-read", `--allow-read=${app.kernel},${app.cacheDir}`);
      assertNamesFlag(await run(flags, "map"), "--allow-read", join(app.dataDir, "map.bin"));
    });

    await t.step("without write access to the data: mode r+ names --allow-write", async () => {
      const flags = without(app, "--allow-write", `--allow-write=${app.cacheDir}`);
      assertNamesFlag(await run(flags, "write"), "--allow-write", join(app.dataDir, "write.bin"));
    });

    await t.step("without --allow-run: MapPool's error names --allow-run", async () => {
      assertNamesFlag(await run(without(app, "--allow-run"), "pool-read"), "--allow-run");
    });

    // On Linux the cache's flags are optional: without them the library is loaded from an
    // anonymous memory file (each process decodes it again). Elsewhere their absence is an
    // error that names them (ffi/library_cache.ts).
    await t.step("without --allow-env: works from a memory file, writes no cache", async () => {
      emptyCache(app);
      const result = await run(without(app, "--allow-env"), "map,pool-read");
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.report.truncation.name, "MappedIOError");
      assert.equal(result.report.library.source, "memory file");
      assert.deepEqual(cacheEntries(app), []);
    });

    await t.step("without write access to the cache: works from a memory file", async () => {
      emptyCache(app);
      const flags = without(app, "--allow-write", `--allow-write=${app.dataDir}`);
      const result = await run(flags, "map");
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.report.truncation.name, "MappedIOError");
      assert.equal(result.report.library.source, "memory file");
      assert.deepEqual(cacheEntries(app), []);
    });
  },
});
