/**
 * The prebuilt libguardmap that `tools/dev package` embeds in the package, for this platform.
 *
 * Each packaged target is one generated module, `ffi/prebuilt/<arch>_<os>.ts` (gitignored,
 * named in deno.json's `publish.include`), holding the stripped library gzip-compressed and
 * base64-encoded, with its SHA-256. It is imported here once, when this module loads, with a
 * literal specifier per platform: `deno cache`, `deno compile` and JSR's manifest checksums then
 * cover every platform's module (about 30-40 KB each), while a process parses only its own. A
 * checkout that never ran `tools/dev package` has no such module: the import fails, is caught,
 * and {@linkcode embeddedLibrary} is `undefined`.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import type { Prebuilt } from "./prebuilt_type.ts";

export type { Prebuilt };

/** Why there is no embedded library, when there is none (for the NO_LIBRARY message). */
let missingReason = "";

async function importEmbedded(): Promise<Prebuilt | undefined> {
  const platform = `${Deno.build.arch}-${Deno.build.os}`;
  try {
    // One literal specifier per packaged target (tools/dev's prebuilt_targets), so that
    // `deno cache`, `deno compile` and JSR see them. No case for a target that is not packaged:
    // its module would be missing from the published package.
    switch (platform) {
      case "x86_64-linux":
        return (await import("./prebuilt/x86_64_linux.ts")).prebuilt;
      case "aarch64-linux":
        return (await import("./prebuilt/aarch64_linux.ts")).prebuilt;
      case "x86_64-windows":
        return (await import("./prebuilt/x86_64_windows.ts")).prebuilt;
    }
    missingReason = `no prebuilt library is packaged for ${platform}`;
  } catch (error) {
    const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
    missingReason = `no prebuilt library for ${platform} in this copy (run \`tools/dev package\`` +
      ` to make one): ${message}`;
  }
  return undefined;
}

const embedded: Prebuilt | undefined = await importEmbedded();

/**
 * The library embedded for this platform, or `undefined` (with the reason) when there is none.
 *
 * @example
 * ```ts
 * import { embeddedLibrary } from "./library_prebuilt.ts";
 * const found = embeddedLibrary();
 * console.log(found.prebuilt?.sha256 ?? found.reason);
 * ```
 */
export function embeddedLibrary(): { prebuilt?: Prebuilt; reason: string } {
  return embedded === undefined ? { reason: missingReason } : { prebuilt: embedded, reason: "" };
}

/**
 * The SHA-256 of `bytes`, lower-case hex.
 *
 * @example
 * ```ts
 * import { sha256Hex } from "./library_prebuilt.ts";
 * console.log(sha256Hex(new Uint8Array(0)).slice(0, 8)); // "e3b0c442"
 * ```
 */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Decodes an embedded library and checks it against its own SHA-256 (synchronously: `native()`
 * is synchronous).
 *
 * @example
 * ```ts
 * import { decodePrebuilt, embeddedLibrary } from "./library_prebuilt.ts";
 * const { prebuilt } = embeddedLibrary();
 * if (prebuilt !== undefined) console.log(decodePrebuilt(prebuilt).byteLength);
 * ```
 */
export function decodePrebuilt(prebuilt: Prebuilt): Uint8Array {
  const compressed = Buffer.from(prebuilt.gzipBase64, "base64");
  const bytes = new Uint8Array(gunzipSync(compressed));
  const sha256 = sha256Hex(bytes);
  if (bytes.byteLength !== prebuilt.byteLength || sha256 !== prebuilt.sha256) {
    throw new Error(
      `the embedded library for ${prebuilt.target} decodes to ${bytes.byteLength} B with ` +
        `SHA-256 ${sha256}, not ${prebuilt.byteLength} B with ${prebuilt.sha256}: ` +
        "the generated module is damaged; run `tools/dev package` again",
    );
  }
  return bytes;
}
