/**
 * The prebuilt library's verified cache (ffi/library_cache.ts), exercised the way a JSR user's
 * program meets it: each test packages this checkout's library into a copy of the module tree
 * (tools/package.ts: packagedCopy, the same generated module `tools/dev package` writes) that has
 * no zig/zig-out, and runs tests/library_cache/probe.ts against that copy in fresh processes
 * with GUARDMAP_LIB unset and GUARDMAP_CACHE pointing at a scratch directory.
 *
 * @module
 */
import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { sha256Hex } from "../ffi/library_prebuilt.ts";
import { pattern } from "./util.ts";
import {
  assertLoaded,
  assertOneFile,
  cacheEntries,
  ci,
  linux,
  loadAtOnce,
  mappedInodes,
  probe,
  type ProbeResult,
  setUp,
  SWAPPER,
} from "./library_cache/_setup.ts";

Deno.test({
  name: "library cache: 8 processes loading at once into an empty or a corrupt cache all load " +
    "one verified file",
  ignore: !linux,
  async fn() {
    const base = setUp();
    using _space = base.space;
    const count = 8;
    for (let round = 0; round < 2; round++) {
      const cacheDir = base.space.path(`cache-${round}`);
      const setup = { ...base, cacheDir, cachedPath: join(cacheDir, basename(base.cachedPath)) };
      const results = await loadAtOnce(setup, `empty-${round}`, count);
      assertOneFile(setup, results, `empty cache, round ${round}`);
      for (const [i, result] of results.entries()) {
        // No process ever saw a partly written file under the final name.
        assert.deepEqual(result.report.info.repaired, [], `process ${i}: ${result.stderr}`);
      }
      const decoded = results.filter((result) => result.report.info.decoded).length;
      assert.ok(decoded >= 1, "no process decoded the embedded library into the empty cache");
      console.log(`empty cache, round ${round}: ${decoded} of ${count} processes decoded`);

      // The same file replaced by a loadable library with other bytes (a second name keeps its
      // inode from being reused): all of them at once detect it, and none maps it.
      const good = Deno.readFileSync(setup.cachedPath);
      Deno.removeSync(setup.cachedPath);
      Deno.writeFileSync(setup.cachedPath, new Uint8Array([...good, 1, 2, 3, 4]));
      Deno.linkSync(setup.cachedPath, base.space.path(`tampered-${round}`));
      const tampered = await loadAtOnce(setup, `corrupt-${round}`, count);
      assertOneFile(setup, tampered, `corrupt cache, round ${round}`);
      const repairs = tampered.filter((result) => result.report.info.repaired.length > 0).length;
      assert.ok(repairs >= 1, "no process reported the corrupt file");
      console.log(`corrupt cache, round ${round}: ${repairs} of ${count} processes repaired it`);
    }
  },
});

Deno.test({
  name: "library cache: while another build is renamed over the cache file again and again, 40 " +
    "processes loading (16 more through GUARDMAP_LIB and its hash) each map exactly the file " +
    "they verified",
  ignore: !linux,
  async fn() {
    const setup = setUp();
    using _space = setup.space;
    assertLoaded(await probe(setup), "first load");
    // Two valid builds under names of their own, so that their inodes stay: the good one and
    // one that loads as well (an ELF file ignores bytes appended to it) with another SHA-256.
    const good = setup.space.path("good.so");
    const other = setup.space.path("other.so");
    Deno.linkSync(setup.cachedPath, good);
    Deno.writeFileSync(other, new Uint8Array([...Deno.readFileSync(good), 1, 2, 3, 4]));
    const otherInode = Deno.statSync(other).ino;
    const stop = setup.space.path("stop");
    const swapper = new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--allow-all", SWAPPER, good, other, setup.cachedPath, stop],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const results: ProbeResult[] = [];
    // And 16 more given the file as a MapPool host gives it to its workers.
    const given = { GUARDMAP_LIB: setup.cachedPath, GUARDMAP_LIB_SHA256: setup.sha256 };
    try {
      for (let batch = 0; batch < 7; batch++) {
        const env = batch < 5 ? {} : given;
        results.push(...await loadAtOnce(setup, `swap-${batch}`, 8, ["--mapped"], env));
      }
    } finally {
      Deno.writeTextFileSync(stop, "");
    }
    const swapped = await swapper.output();
    const stderr = new TextDecoder().decode(swapped.stderr);
    assert.ok(swapped.success, `the swapper failed: ${stderr}`);
    const renames = Number(new TextDecoder().decode(swapped.stdout).trim());
    let hashed = 0;
    for (const [i, result] of results.entries()) {
      const what = `process ${i}`;
      assertLoaded(result, what);
      const info = result.report.info;
      assert.equal(info.sha256, setup.sha256, what);
      const mapped = result.report.mapped;
      assert.equal(mapped.length, 1, `${what} mapped ${JSON.stringify(mapped)}`);
      assert.notEqual(
        mapped[0].inode,
        otherInode,
        `${what} reported source ${info.source}, SHA-256 ${info.sha256}, but mapped the other build`,
      );
      if (mapped[0].sha256 !== undefined) {
        assert.equal(
          mapped[0].sha256,
          info.sha256,
          `${what}: the mapped file is not the verified one`,
        );
        hashed++;
      }
    }
    // Reading /proc/self/map_files needs root (CAP_SYS_ADMIN); CI runs as root.
    if (ci) assert.equal(hashed, results.length, results[0].report.mapped[0].error);
    const sawOther = results.filter((result) => result.report.info.repaired.length > 0).length;
    const sources = results.map((result) => result.report.info.source);
    console.log(
      `${renames} renames; ${sawOther} of ${results.length} processes found the other build and ` +
        `replaced it; sources: ${sources.filter((source) => source === "cache").length} cache, ` +
        `${sources.filter((source) => source === "GUARDMAP_LIB").length} GUARDMAP_LIB, ` +
        `${sources.filter((source) => source === "memory file").length} memory file; ` +
        `${hashed} mapped files hashed through /proc/self/map_files`,
    );
    assert.ok(sawOther > 0, "no process met the other build: the race was not exercised");
  },
});

Deno.test({
  name: "library cache: 20 Web Workers loading from a memory file share one copy of the " +
    "library, and their maps work and are released",
  ignore: !linux,
  async fn() {
    const setup = setUp();
    using _space = setup.space;
    const cases: [string, { flags?: string[]; env?: Record<string, string>; args?: string[] }][] = [
      // --allow-all (to read /proc/self/maps directly); the cache directory cannot be made.
      ["no usable cache", {
        env: { GUARDMAP_CACHE: join(setup.dataFile, "cache") },
        args: ["--write-memory-file"],
      }],
      // The probe then reads /proc/self/maps through libc.
      ["without --allow-env", { flags: ["--allow-ffi", "--allow-read", "--allow-write"] }],
    ];
    for (const [what, options] of cases) {
      const args = ["--web-workers", "20", ...options.args ?? []];
      const result = await probe(setup, { ...options, args });
      assertLoaded(result, what);
      const report = result.report;
      assert.equal(report.info.source, "memory file", what);
      assert.equal(report.webWorkers.length, 20, what);
      for (const [i, reply] of report.webWorkers.entries()) {
        assert.equal(reply.info.source, "memory file", `${what}, worker ${i}`);
        assert.deepEqual(reply.bytes, [...pattern(0, 4)], `${what}, worker ${i}`);
      }
      const copies = `${report.libraryCopies} copies of libguardmap mapped, ` +
        `${report.memoryFiles ?? "?"} memory files`;
      assert.equal(report.libraryCopies, 1, `${what}: ${copies}`);
      if (report.memoryFiles !== null) assert.equal(report.memoryFiles, 1, `${what}: ${copies}`);
      const loads = [
        report.info,
        ...report.webWorkers.map((reply: { info: unknown }) => reply.info),
      ];
      const decoded = loads.filter((info) => info.decoded).length;
      assert.equal(decoded, 1, `${what}: ${decoded} of ${loads.length} loads decoded the library`);
      assert.notEqual(report.releasedMs, null, `${what}: the workers' maps were not released`);
      if (options.args !== undefined) {
        // Sealed: nothing can change the library after it was verified.
        const changes = report.memoryFileChanges;
        assert.deepEqual(changes, { write: "PermissionDenied", grow: "PermissionDenied" }, what);
      }
      console.log(
        `${what}: ${report.libraryCopies} copy mapped, ${report.memoryFiles ?? "?"} memory ` +
          `file(s), ${decoded} decode(s) for ${loads.length} loads; maps released after ` +
          `${report.releasedMs} ms`,
      );
    }
  },
});

Deno.test({
  name: "library cache: a corrupt or replaced file is reported, replaced and never loaded",
  ignore: !linux,
  async fn() {
    const setup = setUp();
    using _space = setup.space;
    assertLoaded(await probe(setup), "first load");
    const good = Deno.readFileSync(setup.cachedPath);
    const tampered = [
      // A library that still loads (an ELF file ignores bytes appended to it): without the
      // check, dlopen would take it.
      ["replaced by a loadable library", new Uint8Array([...good, 1, 2, 3, 4])],
      ["truncated", good.subarray(0, good.byteLength >> 1)],
      ["one byte flipped", good.map((byte, i) => i === 4096 ? byte ^ 0xff : byte)],
    ] as const;
    for (const [index, [what, bytes]] of tampered.entries()) {
      Deno.removeSync(setup.cachedPath);
      Deno.writeFileSync(setup.cachedPath, bytes);
      // A second name keeps the tampered inode allocated, so its number cannot be reused.
      Deno.linkSync(setup.cachedPath, setup.space.path(`tampered-${index}`));
      const badInode = Deno.statSync(setup.cachedPath).ino!;
      const result = await probe(setup, { args: ["--maps"] });
      assertLoaded(result, what);
      const info = result.report.info;
      assert.equal(info.source, "cache", what);
      assert.equal(info.decoded, true, what);
      assert.equal(info.repaired.length, 1, what);
      assert.match(info.repaired[0], /did not verify .*SHA-256.*replaced and not loaded/, what);
      assert.match(result.stderr, /guardmap: .* did not verify/, `${what}: no warning printed`);
      // The process mapped the new file, never the tampered one.
      const inodes = mappedInodes(result.report.maps, setup.cachedPath);
      assert.deepEqual(inodes, [Deno.statSync(setup.cachedPath).ino], what);
      assert.ok(!inodes.includes(badInode), `${what}: the tampered file was loaded`);
      assert.equal(sha256Hex(Deno.readFileSync(setup.cachedPath)), setup.sha256, what);
      assert.deepEqual(cacheEntries(setup.cacheDir), [`libguardmap-${setup.sha256}.so`], what);
    }
    // A file that verifies is used as it is: same inode, nothing decoded.
    const inode = Deno.statSync(setup.cachedPath).ino;
    const warm = await probe(setup);
    assertLoaded(warm, "warm load");
    assert.equal(warm.report.info.decoded, false);
    assert.equal(Deno.statSync(setup.cachedPath).ino, inode, "a verified file was rewritten");
  },
});

Deno.test({
  name: "library cache: MapPool workers and Web Workers load the cached file without decoding",
  ignore: !linux,
  async fn() {
    const setup = setUp();
    using _space = setup.space;
    const result = await probe(setup, { args: ["--pool", "--web-worker"] });
    assertLoaded(result, "host");
    const host = result.report.info;
    assert.equal(host.source, "cache");
    const worker = result.report.poolInfo;
    assert.equal(worker.source, "GUARDMAP_LIB", "the worker did not take the host's file");
    assert.equal(worker.path, host.path);
    assert.equal(worker.sha256, setup.sha256, "the worker did not verify the file");
    assert.notEqual(worker.decoded, true);
    assert.deepEqual(result.report.poolBytes, [...pattern(0, 4)]);
    const web = result.report.webWorkerInfo;
    assert.equal(web.source, "cache");
    assert.equal(web.path, host.path);
    assert.equal(web.decoded, false, "the Web Worker decoded the embedded library again");

    // The cached file replaced after the host loaded it: a worker checks it and refuses it.
    const tampered = await probe(setup, { args: ["--tamper", "--pool"] });
    assertLoaded(tampered, "host, tampered cache");
    assert.notEqual(tampered.report.poolInfo.source, "GUARDMAP_LIB", "a worker loaded it");
    assert.equal(tampered.report.poolInfo.source, "memory file");
    assert.deepEqual(tampered.report.poolBytes, [...pattern(0, 4)]);
  },
});

Deno.test({
  name: "library cache: no permission to write it gives a memory file, and the reason names " +
    "the path and the flag",
  ignore: !linux,
  async fn() {
    const setup = setUp();
    using _space = setup.space;
    // Everything a user grants, except writing to the cache.
    const flags = [
      "--allow-ffi",
      "--allow-env",
      "--allow-read",
      `--allow-write=${setup.dataFile}`,
      "--allow-run",
    ];
    const result = await probe(setup, { flags, args: ["--pool"] });
    assertLoaded(result, "no --allow-write for the cache");
    const info = result.report.info;
    assert.equal(info.source, "memory file");
    assert.match(info.path, /^\/proc\/self\/fd\/\d+$/);
    assert.ok(
      info.note.includes(`grant --allow-write=${setup.cacheDir}`),
      `the reason does not name the path and the flag: ${info.note}`,
    );
    assert.equal(result.report.poolInfo.source, "memory file", "the pool's worker");
    assert.throws(() => Deno.statSync(setup.cacheDir), Deno.errors.NotFound);

    // No --allow-env to find the cache: the reason names the variables.
    const noEnv = await probe(setup, {
      flags: ["--allow-ffi", "--allow-read", "--allow-write"],
    });
    assertLoaded(noEnv, "no --allow-env");
    assert.equal(noEnv.report.info.source, "memory file");
    assert.match(noEnv.report.info.note, /--allow-env=GUARDMAP_CACHE,XDG_CACHE_HOME,HOME/);

    // Where no memory file can be made either (FFI granted for the cache only, so libc cannot
    // be opened), the error names the path and the flag.
    const denied = await probe(setup, {
      flags: [`--allow-ffi=${setup.cacheDir}`, "--allow-env", "--allow-read"],
    });
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /NO_LIBRARY|could not be loaded/);
    assert.ok(
      denied.stderr.includes(`grant --allow-write=${setup.cacheDir}`),
      `the error does not name the path and the flag:\n${denied.stderr}`,
    );
  },
});

/** The absolute path of the libc this process has mapped (Linux). */
function libcPath(): string {
  const line = Deno.readTextFileSync("/proc/self/maps").split("\n")
    .find((entry) => /\/libc[.-][^/]*so/.test(entry));
  assert.ok(line !== undefined, "no libc in /proc/self/maps");
  return line.split(/\s+/).slice(5).join(" ");
}

Deno.test({
  name: "library cache: a scoped --allow-ffi: /proc/self/fd or the cache's own path (and " +
    "libc's path for a memory file), as the README says",
  ignore: !linux,
  async fn() {
    const setup = setUp();
    using _space = setup.space;
    const rest = ["--allow-env", "--allow-read", "--allow-write"];
    const cached = await probe(setup, { flags: ["--allow-ffi=/proc/self/fd", ...rest] });
    assertLoaded(cached, "--allow-ffi=/proc/self/fd");
    assert.equal(cached.report.info.source, "cache");
    assert.equal(cached.report.info.path, setup.cachedPath);
    // A grant of the cache's directory alone loads the verified file by its path.
    const cacheOnly = await probe(setup, { flags: [`--allow-ffi=${setup.cacheDir}`, ...rest] });
    assertLoaded(cacheOnly, `--allow-ffi=${setup.cacheDir}`);
    assert.equal(cacheOnly.report.info.source, "cache");
    // Neither: the error names the descriptor's path to grant.
    const neither = await probe(setup, { flags: ["--allow-ffi=/nonexistent", ...rest] });
    assert.notEqual(neither.code, 0);
    assert.match(neither.stderr, /Requires ffi access to "\/proc\/self\/fd\/\d+"/);

    // No cache (no --allow-env to find it): a memory file, made through libc.
    const noEnv = ["--allow-read", "--allow-write"];
    const memory = await probe(setup, {
      flags: [`--allow-ffi=/proc/self/fd,${libcPath()}`, ...noEnv],
    });
    assertLoaded(memory, `--allow-ffi=/proc/self/fd,${libcPath()}`);
    assert.equal(memory.report.info.source, "memory file");
    const noLibc = await probe(setup, { flags: ["--allow-ffi=/proc/self/fd", ...noEnv] });
    assert.notEqual(noLibc.code, 0);
    assert.match(
      noLibc.stderr,
      /memory file failed too: .*libc's absolute path .*\/proc\/self\/fd/,
    );
  },
});

/** Mounts a read-only tmpfs at `dir`; false (and says why) where that is not possible. */
function mountReadOnly(dir: string): boolean {
  Deno.mkdirSync(dir, { recursive: true });
  try {
    const output = new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", dir],
      stderr: "piped",
    }).outputSync();
    if (output.success) return true;
    console.log(`mount failed: ${new TextDecoder().decode(output.stderr).trim()}`);
  } catch (error) {
    console.log(`mount could not run: ${error}`);
  }
  return false;
}

Deno.test({
  name: "library cache: on a read-only file system the library comes from a memory file",
  ignore: !linux,
  async fn() {
    const setup = setUp();
    using _space = setup.space;
    const readOnly = setup.space.path("read-only");
    if (!mountReadOnly(readOnly)) {
      if (ci) throw new Error("CI: a read-only tmpfs could not be mounted (needs root)");
      console.log("SKIPPED: cannot mount a read-only tmpfs here (not root)");
      return;
    }
    try {
      const cacheDir = join(readOnly, "guardmap");
      const result = await probe({ ...setup, cacheDir });
      assertLoaded(result, "read-only cache");
      const info = result.report.info;
      assert.equal(info.source, "memory file");
      assert.ok(info.note.includes(cacheDir), `the reason does not name the path: ${info.note}`);
      assert.match(info.note, /Read-only file system/);
    } finally {
      new Deno.Command("umount", { args: [readOnly] }).outputSync();
    }
  },
});
