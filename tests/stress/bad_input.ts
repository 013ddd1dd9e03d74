/**
 * Stress: bad input. Runs every row of `_bad_cases.ts` (the inputs of issue 10 items 5, 7, 8 and
 * 9, then wrong values and types for every argument of every public method) in a process of its
 * own with a timeout, so that a hang or a crash is a failed row, not a hung run. A row passes
 * when the call gives a typed error whose message names the argument and what is wrong (or, for
 * rows that allow it, succeeds and really does what it says). Prints the failed rows.
 *
 *   deno run -A tests/stress/bad_input.ts [--seconds N] [--json] [--case ID]
 *
 * `--seconds` is accepted for the runners' sake; every row always runs (each bounded by its own
 * timeout), two at a time. `--case ID [--dir DIR]` runs one row in this process, in scratch
 * directory DIR (else in a new one it leaves behind), and prints its outcome.
 *
 * @module
 */
import { join } from "node:path";
import { GuardmapError } from "../../mod.ts";
import { CASES, NAMED_ROWS } from "./_bad_cases.ts";
import { type BadCase, closePools, FILE_BYTES, fileByte } from "./_bad_rows.ts";
import { finish, log } from "./_common.ts";

/** What a row's process prints as its last line. */
interface Outcome {
  /** Whether the call threw (or rejected). */
  threw: boolean;
  /** The error's name, or the value the call returned. */
  name: string;
  /** The typed classes it belongs to: TypeError, RangeError, Deno.errors.X, GuardmapError. */
  classes: string[];
  /** The GuardmapError's code, if any. */
  code?: string;
  /** The message, with the scratch paths and long test names taken out. */
  message: string;
}

/** A row's verdict. */
interface Verdict {
  row: BadCase;
  ok: boolean;
  why: string;
  milliseconds: number;
}

const caseIndex = Deno.args.indexOf("--case");
if (caseIndex >= 0) {
  const dirIndex = Deno.args.indexOf("--dir");
  const dir = dirIndex >= 0
    ? Deno.args[dirIndex + 1]
    : Deno.makeTempDirSync({ prefix: "guardmap-bad-" });
  console.log(JSON.stringify(await runCase(Deno.args[caseIndex + 1], dir)));
  Deno.exit(0);
}
await main();

async function main(): Promise<never> {
  const json = Deno.args.includes("--json");
  const started = performance.now();
  const verdicts: Verdict[] = [];
  const queue = [...CASES];
  // Two rows at a time (the machine may have two cores); each row is bounded by its timeout.
  await Promise.all([0, 1].map(async () => {
    for (let row = queue.shift(); row !== undefined; row = queue.shift()) {
      const verdict = await judge(row);
      verdicts.push(verdict);
      if (!verdict.ok && !json) log(`FAIL ${row.id}: ${verdict.why}`);
    }
  }));
  const failed = verdicts.filter((verdict) => !verdict.ok);
  const kinds = {
    crashes: failed.filter((v) => v.why.startsWith("crashed")).length,
    hangs: failed.filter((v) => v.why.startsWith("hung")).length,
  };
  if (!json) {
    for (const verdict of verdicts.sort((a, b) => CASES.indexOf(a.row) - CASES.indexOf(b.row))) {
      console.log(`${verdict.ok ? "ok  " : "FAIL"} ${verdict.row.id}: ${verdict.why}`);
    }
  }
  const named = NAMED_ROWS;
  finish({
    name: "bad_input",
    ok: failed.length === 0,
    seconds: Math.round((performance.now() - started) / 100) / 10,
    load: `${CASES.length} rows, each in its own process with a timeout: ${named} named ` +
      `(FIFO r/c/pool, socket, /proc, symlink loop, NUL, 4,096-byte path, 300-byte name, w+ ` +
      `past the largest file, map cap, ArrayBuffer/array/string buffers, mode string, mode ` +
      `null, close after transfer, pool read into a resizable buffer), ` +
      `${CASES.length - named} wrong values/types of method arguments`,
    faults: "bad input only (no injected fault)",
    checked: `${failed.length} rows failed: ${kinds.crashes} crashes, ${kinds.hangs} hangs, ` +
      `${failed.length - kinds.crashes - kinds.hangs} untyped errors, wrong success or messages ` +
      `not naming the argument`,
    detail: failed.length === 0
      ? "every row typed and named"
      : `failed rows: ${failed.map((verdict) => verdict.row.id).join(", ")}`,
  });
}

/** Runs `row` in a process of its own and judges what it printed. */
async function judge(row: BadCase): Promise<Verdict> {
  const started = performance.now();
  const timeoutMs = row.timeoutMs ?? 8000;
  // The scratch directory belongs to this process, so that a row killed for hanging leaves none.
  const dir = Deno.makeTempDirSync({ prefix: "guardmap-bad-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, "--case", row.id, "--dir", dir],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  const output = await child.output();
  clearTimeout(timer);
  Deno.removeSync(dir, { recursive: true });
  const milliseconds = Math.round(performance.now() - started);
  const verdict = (ok: boolean, why: string) => ({ row, ok, why, milliseconds });
  if (timedOut) return verdict(false, `hung: no answer in ${timeoutMs} ms (killed)`);
  if (output.signal !== null) return verdict(false, `crashed: killed by ${output.signal}`);
  const lines = new TextDecoder().decode(output.stdout).trim().split("\n");
  let outcome: Outcome;
  try {
    outcome = JSON.parse(lines.at(-1) ?? "");
  } catch {
    const stderr = new TextDecoder().decode(output.stderr).trim().split("\n").slice(-2).join(" ");
    return verdict(false, `crashed: exit code ${output.code}, no outcome (${stderr})`);
  }
  return verdict(...expectation(row, outcome));
}

/** Whether `outcome` is what `row` expects, and why. */
function expectation(row: BadCase, outcome: Outcome): [boolean, string] {
  const said = `${outcome.name}${outcome.code ? ` ${outcome.code}` : ""}: ${outcome.message}`;
  if (!outcome.threw) {
    const ok = row.expect !== "typed";
    return [ok, ok ? `works: ${outcome.message}` : `no error: returned ${outcome.message}`];
  }
  if (row.expect === "works") return [false, `threw ${said}`];
  if (outcome.classes.length === 0) return [false, `untyped error ${said}`];
  if (outcome.code === "UNEXPECTED" || outcome.code?.startsWith("UNKNOWN_STATUS")) {
    return [false, `no stable code: ${said}`];
  }
  if (outcome.name === "WorkerCrashedError") return [false, `a worker crashed instead: ${said}`];
  const text = outcome.message.toLowerCase();
  const missing = row.mentions.filter((group) =>
    !group.some((word) => text.includes(word.toLowerCase()))
  );
  if (missing.length > 0) {
    return [false, `message does not say ${missing.map((g) => g.join("/")).join(" + ")}: ${said}`];
  }
  return [true, said];
}

/** The row's process: runs the call and describes what happened. */
async function runCase(id: string, dir: string): Promise<Outcome> {
  const row = CASES.find((candidate) => candidate.id === id);
  if (row === undefined) throw new Error(`no row ${id}`);
  const file = join(dir, "data.bin");
  const bytes = new Uint8Array(FILE_BYTES);
  for (let i = 0; i < FILE_BYTES; i++) bytes[i] = fileByte(i);
  Deno.writeFileSync(file, bytes);
  // Scratch paths and the long made-up names would let a message "mention" anything.
  const clean = (text: string) =>
    text.replaceAll(dir, "<dir>").replace(/x{20,}|y{20,}/g, "<name>").replaceAll("\0", "<NUL>");
  try {
    const value = await row.run({ dir, file });
    return { threw: false, name: "returned", classes: [], message: clean(describe(value)) };
  } catch (error) {
    return {
      threw: true,
      name: error instanceof Error ? error.name : typeof error,
      classes: typedClasses(error),
      code: (error as { code?: string })?.code,
      message: clean(error instanceof Error ? error.message : String(error)),
    };
  } finally {
    await closePools();
  }
}

function describe(value: unknown): string {
  if (typeof value === "string") return value;
  if (value === undefined) return "undefined";
  return `${value?.constructor?.name ?? typeof value} ${String(value).slice(0, 80)}`;
}

/** The typed classes `error` belongs to; a GuardmapError counts only with a string code. */
function typedClasses(error: unknown): string[] {
  const classes: string[] = [];
  if (error instanceof TypeError) classes.push("TypeError");
  if (error instanceof RangeError) classes.push("RangeError");
  if (error instanceof GuardmapError && typeof error.code === "string") {
    classes.push("GuardmapError");
  }
  for (const [name, type] of Object.entries(Deno.errors)) {
    if (error instanceof type) classes.push(`Deno.errors.${name}`);
  }
  return classes;
}
