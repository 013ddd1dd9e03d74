/**
 * `guardmap sum FILE`: the checksum of a file or a range of it, read through guarded copies.
 * An unreadable byte stops it with the offset named: it never prints a checksum of bytes it
 * did not read.
 *
 * sha256 comes from `node:crypto` (native code in Deno); xxh3 (64-bit, seed 0) and crc32c
 * (Castagnoli) from `hash-wasm`, a maintained dependency-free WebAssembly package, rather
 * than hand-written JavaScript: xxh3 needs 64-bit multiplies that JavaScript only has as
 * BigInt, which would make it slower than the disk.
 *
 * @module
 */
import { MappedIOError } from "../mod.ts";
import { parseCommand, rangeOptions } from "./args.ts";
import { Progress } from "./progress.ts";
import { openSource } from "./source.ts";
import { UsageError } from "./units.ts";

/** The help text of `sum`. */
export const SUM_HELP = `Usage: guardmap sum FILE [options]

Prints the checksum of FILE (or of a range of it) as "HEX  FILE", like sha256sum. Every byte is
read through guarded copies; on an unreadable byte it prints no checksum, names the offset and
exits with 1.

Options:
  -a, --algorithm A  sha256 (default), xxh3 (XXH3-64, seed 0) or crc32c
  --offset N         first byte (default 0)
  --length N         bytes to sum (default: to the end of the file)
  --isolated         read in a MapPool worker process (needs --allow-run)
  -h, --help         show this help

Numbers accept units (4KiB, 1MiB = 2^20, 1M = 10^6, 0x1000).
Exit status: 0 printed, 1 an I/O error (no checksum printed), 2 usage error, 3 other failure.
`;

/** A running checksum. */
export interface Hasher {
  /** Adds bytes. */
  update(bytes: Uint8Array): void;
  /** The checksum as lower-case hexadecimal. */
  digest(): string;
}

/** The algorithms `sum` knows. */
export const ALGORITHMS = ["sha256", "xxh3", "crc32c"] as const;
/** One of {@linkcode ALGORITHMS}. */
export type Algorithm = typeof ALGORITHMS[number];

const CRC32C_POLYNOMIAL = 0x82f63b78;
const CHUNK_BYTES = 4 * 2 ** 20;

/**
 * A new hasher for `algorithm`.
 *
 * @example
 * ```ts
 * import { createHasher } from "./sum.ts";
 * const hasher = await createHasher("crc32c");
 * hasher.update(new TextEncoder().encode("123456789"));
 * console.log(hasher.digest()); // "e3069283"
 * ```
 */
export async function createHasher(algorithm: Algorithm): Promise<Hasher> {
  if (algorithm === "sha256") {
    // Loaded here: Node's crypto layer adds about 15 ms to the start of every other command.
    const { createHash } = await import("node:crypto");
    const hash = createHash("sha256");
    return { update: (bytes) => hash.update(bytes), digest: () => hash.digest("hex") };
  }
  // Loaded only when asked for: it is a WebAssembly module that every other command can skip.
  const { createCRC32, createXXHash3 } = await import("hash-wasm");
  const hash = algorithm === "xxh3" ? await createXXHash3() : await createCRC32(CRC32C_POLYNOMIAL);
  hash.init();
  return { update: (bytes) => hash.update(bytes), digest: () => hash.digest("hex") };
}

/**
 * Runs `guardmap sum` with `args`; returns the exit status.
 *
 * @example
 * ```ts
 * import { sum } from "./sum.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array(10));
 * console.log(await sum([path, "--algorithm", "crc32c"])); // 0
 * ```
 */
export async function sum(args: string[]): Promise<number> {
  const parsed = parseCommand("sum", args, {
    algorithm: { type: "string", short: "a" },
    offset: { type: "string" },
    length: { type: "string" },
    isolated: { type: "boolean" },
  }, ["FILE"]);
  if (parsed.help) {
    console.log(SUM_HELP);
    return 0;
  }
  const algorithm = parsed.values.algorithm ?? "sha256";
  if (!ALGORITHMS.includes(algorithm as Algorithm)) {
    throw new UsageError(`--algorithm must be one of ${ALGORITHMS.join(", ")}, got "${algorithm}"`);
  }
  const path = parsed.positionals[0];
  await using source = await openSource(path, { isolated: parsed.values.isolated === true });
  const { offset, length } = rangeOptions(parsed, source.size);
  const hasher = await createHasher(algorithm as Algorithm);
  const buffer = new Uint8Array(Math.min(CHUNK_BYTES, Math.max(length, 1)));
  const progress = new Progress("sum", length);
  for (let done = 0; done < length;) {
    const chunk = buffer.subarray(0, Math.min(buffer.length, length - done));
    try {
      await source.read(chunk, offset + done);
    } catch (error) {
      if (!(error instanceof MappedIOError)) throw error;
      progress.done();
      console.error(
        `guardmap sum: ${path}: cannot read byte ${error.fileOffset} (${error.code}` +
          `${error.reason === "truncated" ? ", the file was truncated" : ""}); no checksum ` +
          `printed. Run "guardmap scan ${path}" for every unreadable range, or ` +
          `"guardmap rescue" to copy what is readable`,
      );
      return 1;
    }
    hasher.update(chunk);
    done += chunk.length;
    progress.update(done, 0);
  }
  progress.done();
  console.log(`${hasher.digest()}  ${path}`);
  return 0;
}
