/**
 * The command-line tool against what people run today, as whole processes on the same file and
 * page-cache state:
 *
 * - reading: `guardmap scan` against `dd bs=1M of=/dev/null` and `ddrescue -f FILE /dev/null`;
 * - checksums: `guardmap sum` (sha256) against `cat FILE | sha256sum`, and `guardmap sum -a xxh3`
 *   against `xxhsum -H3` when xxhsum is installed;
 * - each hot (the file read once before) and cold (page cache dropped before every run:
 *   `drop_caches` as root, otherwise `posix_fadvise(DONTNEED)` through `dd iflag=nocache`);
 * - rescue: `guardmap rescue` against `ddrescue -f` on a faultfs (FUSE) file with injected EIO
 *   ranges, each run with a fresh DEST and map and the file's cached pages dropped; both must
 *   end with the same bytes and the same number of unreadable bytes.
 *
 * ```sh
 * tools/dev cli-bench                     # installs gddrescue (as root), builds, runs this
 * deno run -A bench/cli_compare.ts [--size 2GiB] [--rescue-size 256MiB] [--rounds 3] \
 *   [--only read|rescue]
 * ```
 *
 * Every contender runs `--rounds` times, interleaved; the table gives the best (shortest) wall
 * time of each, since the machine is shared and slower runs measure the neighbours. Times
 * include process start-up (about 40 ms for `deno run`), as a user sees them.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseSize } from "../cli/units.ts";
import { parseMapfile } from "../cli/mapfile.ts";
import { dropPageCache, residentBytes, warmPageCache, writeDataFile } from "./compare/data.ts";
import { mountFaultFs } from "../tests/fuse/fault_fs.ts";

const MAIN = fileURLToPath(new URL("../cli/main.ts", import.meta.url));
const GUARDMAP = [Deno.execPath(), "run", "--allow-all", MAIN];

interface Contender {
  name: string;
  /** The command, run through `sh -c` (for pipes). */
  shell: string;
  /** Run before each timed run (not timed): remove a map, drop the cache. */
  before?: () => Promise<void>;
}

const quote = (word: string) => `'${word.replaceAll("'", "'\\''")}'`;
const command = (words: string[]) => words.map(quote).join(" ");

function onPath(name: string): boolean {
  return new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "null" })
    .outputSync().success;
}

/** Runs `shell` and returns its wall time in seconds; throws if it fails. */
async function timed(shell: string, okCodes: number[] = [0]): Promise<number> {
  const start = performance.now();
  const output = await new Deno.Command("sh", {
    args: ["-c", shell],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - start) / 1000;
  if (!okCodes.includes(output.code)) {
    throw new Error(
      `\`${shell}\` exited ${output.code}: ${new TextDecoder().decode(output.stderr)}`,
    );
  }
  return seconds;
}

/** Drops `path`'s cached pages: drop_caches as root, else posix_fadvise(DONTNEED) via dd. */
async function dropCache(path: string): Promise<string> {
  const dropped = await dropPageCache();
  if (!dropped.ok) await timed(`dd if=${quote(path)} iflag=nocache count=0 status=none`);
  const left = await residentBytes(path);
  if (left !== undefined && left > 0.05 * Deno.statSync(path).size) {
    throw new Error(`could not drop the page cache of ${path}: ${left} bytes still cached`);
  }
  return dropped.ok ? "drop_caches" : "posix_fadvise(DONTNEED)";
}

/** Best wall time of each contender over `rounds` interleaved rounds. */
async function race(contenders: Contender[], rounds: number): Promise<Map<string, number>> {
  const best = new Map<string, number>();
  for (let round = 0; round < rounds; round++) {
    for (const contender of contenders) {
      await contender.before?.();
      const seconds = await timed(
        contender.shell,
        contender.name.includes("rescue") ? [0, 1] : [0],
      );
      best.set(contender.name, Math.min(best.get(contender.name) ?? Infinity, seconds));
      console.error(`  ${contender.name}: ${seconds.toFixed(3)} s`);
    }
  }
  return best;
}

function readContenders(path: string, mapPath: string): Contender[] {
  const removeMap = () => Deno.remove(mapPath).catch(() => {});
  const list: Contender[] = [
    { name: "dd bs=1M", shell: `dd if=${quote(path)} of=/dev/null bs=1M status=none` },
    {
      name: "ddrescue",
      shell: `ddrescue -q -f ${quote(path)} /dev/null ${quote(mapPath)}`,
      before: removeMap,
    },
    { name: "guardmap scan", shell: `${command([...GUARDMAP, "scan", path])} >/dev/null 2>&1` },
    { name: "cat | sha256sum", shell: `cat ${quote(path)} | sha256sum` },
    { name: "guardmap sum", shell: command([...GUARDMAP, "sum", path]) },
  ];
  if (onPath("xxhsum")) {
    list.push({ name: "xxhsum -H3", shell: `xxhsum -H3 ${quote(path)}` });
    list.push({
      name: "guardmap sum -a xxh3",
      shell: command([...GUARDMAP, "sum", "-a", "xxh3", path]),
    });
  }
  return list.filter((contender) => !contender.name.startsWith("ddrescue") || onPath("ddrescue"));
}

interface Row {
  table: string;
  name: string;
  seconds: number;
  bytes: number;
}

async function readBenchmarks(dir: string, size: number, rounds: number): Promise<Row[]> {
  const path = join(dir, "data.bin");
  console.error(`writing ${size} bytes to ${path}`);
  writeDataFile(path, size);
  const contenders = readContenders(path, join(dir, "ddrescue.map"));
  const rows: Row[] = [];
  console.error("hot (the file in the page cache):");
  warmPageCache(path);
  for (const [name, seconds] of await race(contenders, rounds)) {
    rows.push({ table: "hot", name, seconds, bytes: size });
  }
  let how = "";
  const cold = contenders.map((contender) => ({
    ...contender,
    before: async () => {
      await contender.before?.();
      how = await dropCache(path);
    },
  }));
  console.error("cold (the page cache dropped before every run):");
  for (const [name, seconds] of await race(cold, rounds)) {
    rows.push({ table: `cold (${how})`, name, seconds, bytes: size });
  }
  await Deno.remove(path);
  return rows;
}

async function rescueBenchmark(dir: string, size: number, rounds: number): Promise<Row[]> {
  await using fs = await mountFaultFs();
  writeDataFile(fs.backing("disk.img"), size);
  // Sixteen bad ranges of 64 KiB spread over the file, and one of 1 MiB in the middle.
  const step = Math.floor(size / 16 / 4096) * 4096;
  for (let index = 0; index < 16; index++) {
    await fs.fail({
      operations: "read",
      file: "disk.img",
      offset: index * step + 12_288,
      length: 65_536,
    });
  }
  await fs.fail({
    operations: "read",
    file: "disk.img",
    offset: size / 2 + 40_960,
    length: 2 ** 20,
  });
  const source = fs.path("disk.img");
  const fresh = (name: string) => async () => {
    for (const file of [join(dir, `${name}.img`), join(dir, `${name}.map`)]) {
      await Deno.remove(file).catch(() => {});
    }
    await fs.invalidate("disk.img");
  };
  const contenders: Contender[] = [
    {
      name: "ddrescue (rescue)",
      shell: `ddrescue -q -f ${quote(source)} ${quote(join(dir, "dd.img"))} ${
        quote(join(dir, "dd.map"))
      }`,
      before: fresh("dd"),
    },
    {
      name: "guardmap rescue",
      shell: command([
        ...GUARDMAP,
        "rescue",
        source,
        join(dir, "gm.img"),
        "--map",
        join(dir, "gm.map"),
      ]),
      before: fresh("gm"),
    },
  ];
  console.error(`rescue (faultfs, ${size} bytes, 17 bad ranges):`);
  const best = await race(contenders, rounds);
  checkSameRescue(dir);
  return [...best].map(([name, seconds]) => ({ table: "rescue", name, seconds, bytes: size }));
}

/** Both tools must have rescued the same bytes and found the same number of bad bytes. */
function checkSameRescue(dir: string): void {
  const badBytes = (name: string) =>
    parseMapfile(Deno.readTextFileSync(join(dir, `${name}.map`)), name).blocks
      .filter((block) => block.status !== "+").reduce((sum, block) => sum + block.size, 0);
  const [dd, gm] = [badBytes("dd"), badBytes("gm")];
  if (dd !== gm) throw new Error(`ddrescue left ${dd} bytes unrescued, guardmap ${gm}`);
  const same = new Deno.Command("cmp", { args: [join(dir, "dd.img"), join(dir, "gm.img")] })
    .outputSync().success;
  if (!same) throw new Error("ddrescue's and guardmap's rescued images differ");
  console.error(`  both left ${gm} bytes unreadable and wrote identical images`);
}

const PAIRS: Array<[string, string]> = [
  ["guardmap scan", "dd bs=1M"],
  ["guardmap scan", "ddrescue"],
  ["guardmap sum", "cat | sha256sum"],
  ["guardmap sum -a xxh3", "xxhsum -H3"],
  ["guardmap rescue", "ddrescue (rescue)"],
];

/** A table cell: a `|` inside would end the cell. */
const cell = (text: string) => text.replaceAll("|", "\\|");

function report(rows: Row[]): string {
  const lines = [
    "| cache | command | best wall time | throughput |",
    "| --- | --- | ---: | ---: |",
  ];
  for (const row of rows) {
    const rate = row.bytes / row.seconds / 2 ** 20;
    lines.push(
      `| ${row.table} | ${row.name} | ${row.seconds.toFixed(3)} s | ${rate.toFixed(0)} MiB/s |`,
    );
  }
  lines.push("", "| cache | ratio (throughput) | value |", "| --- | --- | ---: |");
  for (const table of new Set(rows.map((row) => row.table))) {
    for (const [ours, theirs] of PAIRS) {
      const a = rows.find((row) => row.table === table && row.name === ours);
      const b = rows.find((row) => row.table === table && row.name === theirs);
      if (a && b) {
        lines.push(
          `| ${table} | ${ours} / ${cell(theirs)} | ${(b.seconds / a.seconds).toFixed(2)}x |`,
        );
      }
    }
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      size: { type: "string", default: "2GiB" },
      "rescue-size": { type: "string", default: "256MiB" },
      rounds: { type: "string", default: "3" },
      only: { type: "string" },
    },
    strict: true,
  });
  const size = parseSize(values.size, "--size");
  const rescueSize = parseSize(values["rescue-size"], "--rescue-size");
  const rounds = Number(values.rounds);
  const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "guardmap-cli-bench-" });
  try {
    const rows = [
      ...(values.only === "rescue" ? [] : await readBenchmarks(dir, size, rounds)),
      ...(values.only === "read" || !onPath("ddrescue")
        ? []
        : await rescueBenchmark(dir, rescueSize, rounds)),
    ];
    console.log(report(rows));
    console.log(JSON.stringify({ name: "cli_compare", size, rescueSize, rounds, rows }));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
