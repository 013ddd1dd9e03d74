// Issue 10, item 1: guarded faults while other signals arrive. Each test runs a short storm script
// from tests/stress/ as its own process (a crash there must not take the test runner down) and
// checks its JSON result: the storm child exited 0, the guard really faulted many times, the other
// signals really arrived, and the child's alternate signal stack never filled up with nested
// handler frames (the cause of the crash; zig/SIGNALS.md).
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  altStackProblem,
  FAULTS_PER_SECOND_MIN,
  STORM_SIGNALS,
  type StormResult,
} from "./stress/signal_storm.ts";

const SECONDS = 3;

async function runStormScript(name: string): Promise<{ code: number; result: StormResult }> {
  const script = fileURLToPath(new URL(`./stress/${name}.ts`, import.meta.url));
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "-A", script, "--seconds", String(SECONDS), "--json"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout).trim();
  const last = stdout.split("\n").at(-1) ?? "";
  assert.ok(
    last.startsWith("{"),
    `${name} printed no JSON result; stderr:\n${new TextDecoder().decode(output.stderr)}`,
  );
  return { code: output.code, result: JSON.parse(last) };
}

function assertSurvived(result: StormResult, code: number): void {
  const { counts } = result;
  assert.equal(counts.exitSignal, null, `the storm child died of a signal: ${result.detail}`);
  assert.equal(counts.exitCode, 0, `the storm child failed: ${result.detail}`);
  // Not vacuous: the reads really faulted, thousands of times, and some completed.
  assert.ok(
    counts.mappedIOErrors >= FAULTS_PER_SECOND_MIN * SECONDS,
    `only ${counts.mappedIOErrors} MappedIOErrors`,
  );
  assert.ok(counts.reads > 0, "no read completed");
  // The deepest the handlers ever went on the alternate stack left room for another fault frame.
  const problem = altStackProblem(counts);
  assert.equal(problem, undefined, problem);
  assert.ok(counts.faultFrameBytes > 0 && counts.faultFrameBytes < counts.altStackBytes);
  assert.equal(result.ok, true, result.detail);
  assert.equal(code, 0, "the storm script exited non-zero");
}

Deno.test("guarded faults under a SIGINT+SIGUSR1+SIGUSR2 storm with listeners: no crash, no nesting", async () => {
  const { code, result } = await runStormScript("signal_storm");
  assertSurvived(result, code);
  assert.ok(result.counts.sent >= 1_000, `only ${result.counts.sent} signals sent`);
  for (const signal of STORM_SIGNALS) {
    assert.ok(result.counts.listenerCalls[signal] > 0, `the ${signal} listener never ran`);
  }
});

Deno.test("guarded faults under V8's sampling profiler (--prof): no crash, no nesting", async () => {
  const { code, result } = await runStormScript("profiler_storm");
  assertSurvived(result, code);
  assert.ok(result.counts.profilerTicks > 0, "the profiler logged no tick");
});
