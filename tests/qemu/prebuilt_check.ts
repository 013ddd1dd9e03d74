// What a JSR user on Linux aarch64 gets: the library packaged as ffi/prebuilt/aarch64_linux.ts,
// written to a fresh cache, checked against its SHA-256 and loaded, then guarding a real fault.
// tools/test.sh runs this file by name with the aarch64 Deno under qemu-user, after packaging the
// aarch64 library and with GUARDMAP_CACHE set to an empty directory (the checkout's own build is
// x86_64 and cannot load there). It is not a `*_test.ts` file: natively it would test nothing.
import assert from "node:assert/strict";
import { libraryInfo, MappedFile, MappedIOError } from "../../mod.ts";
import { pageSize, scratch, writePattern } from "../util.ts";

Deno.test("aarch64: the packaged library loads from a fresh cache, verified, and guards", () => {
  assert.equal(Deno.build.arch, "aarch64", "run this with the aarch64 Deno");
  using tmp = scratch();
  const path = tmp.path("data.bin");
  const page = pageSize();
  writePattern(path, 16 * page);
  using map = MappedFile.open(path);
  const info = libraryInfo();
  assert.equal(info?.source, "cache", JSON.stringify(info));
  assert.match(info?.path ?? "", new RegExp(`libguardmap-${info?.sha256}\\.so$`));
  Deno.truncateSync(path, 2 * page);
  assert.throws(() => map.read(new Uint8Array(4 * page), 0), (error: unknown) => {
    assert.ok(error instanceof MappedIOError, String(error));
    assert.equal(error.bytesTransferred, 2 * page);
    assert.equal(error.fileOffset, 2 * page);
    return true;
  });
});
