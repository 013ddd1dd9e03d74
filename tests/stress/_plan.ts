/**
 * Which stress scripts exist and how long each runs, shared by the table script
 * (tools/stress.ts, long runs) and tests/stress_test.ts (short runs in CI). Not a script
 * (runners skip `_` files).
 *
 * Every `tests/stress/NAME.ts` whose name does not start with `_` is a script and is run with
 * `--seconds N --json`; a script missing from `SECONDS` gets `DEFAULT_SECONDS`.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

/** Run times in seconds: `long` for the README table, `short` for CI. */
export const SECONDS: Record<string, { long: number; short: number }> = {
  webworker_truncation_storm: { long: 20, short: 4 },
  kill_storm: { long: 30, short: 8 },
  // Below 30 s leak_loops runs its short version (10,000 cycles instead of 100,000, ...).
  leak_loops: { long: 60, short: 15 },
  // bad_input runs every row whatever the budget; each row has its own timeout.
  bad_input: { long: 60, short: 60 },
  signal_storm: { long: 20, short: 5 },
  profiler_storm: { long: 20, short: 5 },
};

/** For a script not listed in SECONDS. */
export const DEFAULT_SECONDS: { long: number; short: number } = { long: 20, short: 5 };

/** The folder of the stress scripts. */
export const STRESS_DIR: string = fileURLToPath(new URL(".", import.meta.url));

/** The names of the stress scripts, sorted. */
export function stressScripts(): string[] {
  return [...Deno.readDirSync(STRESS_DIR)]
    .filter((entry) => entry.isFile && entry.name.endsWith(".ts") && !entry.name.startsWith("_"))
    .map((entry) => entry.name.slice(0, -3))
    .sort();
}

/** The outcome of one script run by {@linkcode runScript}. */
export interface ScriptRun {
  /** The script's last stdout line, parsed, or undefined if it printed none. */
  result: Record<string, unknown> | undefined;
  /** Exit code, or undefined when a signal ended it. */
  code: number | undefined;
  /** The signal that ended it, if any. */
  signal: string | null;
  /** Whether it was killed for running past its hard limit. */
  timedOut: boolean;
  /** Wall-clock seconds. */
  seconds: number;
  /** The last lines of its stderr. */
  stderr: string;
}

/**
 * Runs `tests/stress/NAME.ts --seconds N --json` in a process of its own and kills it if it runs
 * past `limitSeconds`. A crash or a hang is reported, never thrown.
 */
export async function runScript(
  name: string,
  seconds: number,
  limitSeconds: number,
): Promise<ScriptRun> {
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${STRESS_DIR}${name}.ts`, "--seconds", `${seconds}`, "--json"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, limitSeconds * 1000);
  const output = await child.output();
  clearTimeout(timer);
  const decoder = new TextDecoder();
  const last = decoder.decode(output.stdout).trim().split("\n").at(-1) ?? "";
  let result: Record<string, unknown> | undefined;
  try {
    const parsed = JSON.parse(last);
    if (typeof parsed === "object" && parsed !== null) result = parsed;
  } catch {
    result = undefined;
  }
  return {
    result,
    code: output.signal === null ? output.code : undefined,
    signal: output.signal,
    timedOut,
    seconds: Math.round((performance.now() - started) / 100) / 10,
    stderr: decoder.decode(output.stderr).trim().split("\n").slice(-5).join("\n"),
  };
}

/** Why a run failed, or undefined when it passed (exit 0 and `"ok": true`). */
export function runFailure(run: ScriptRun): string | undefined {
  if (run.timedOut) return `hung: killed after ${run.seconds} s`;
  if (run.signal !== null) return `crashed: killed by ${run.signal}`;
  if (run.result === undefined) return `crashed: exit code ${run.code}, no result line`;
  if (run.result.ok !== true) return `failed: ${String(run.result.detail ?? "")}`;
  if (run.code !== 0) return `exit code ${run.code} with "ok": true`;
  return undefined;
}
