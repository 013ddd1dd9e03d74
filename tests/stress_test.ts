// The short version of every stress script in tests/stress/ (webworker_truncation_storm,
// kill_storm, leak_loops, bad_input, the signal storms, and any script added there later), each
// in a process of its own: the script must exit 0 with "ok": true on its last line. The long
// versions and the README table: `tools/dev stress`.
import assert from "node:assert/strict";
import { DEFAULT_SECONDS, runFailure, runScript, SECONDS, stressScripts } from "./stress/_plan.ts";

const linux = Deno.build.os === "linux";
if (!linux) {
  // The scripts read /proc and use MapPool, which runs on Linux only.
  if (Deno.env.get("CI") === "true") throw new Error("the stress scripts need Linux");
  console.log("SKIPPED: the stress scripts need Linux (/proc, MapPool)");
}

for (const name of stressScripts()) {
  Deno.test({
    name: `stress: ${name} (short)`,
    ignore: !linux,
    // The scripts start processes and Web Workers of their own; nothing of this test's leaks.
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const seconds = (SECONDS[name] ?? DEFAULT_SECONDS).short;
      const run = await runScript(name, seconds, seconds * 4 + 60);
      console.log(
        run.result === undefined ? `${name}: no result line` : JSON.stringify(run.result),
      );
      const failure = runFailure(run);
      assert.equal(failure, undefined, `${name}: ${failure}\n${run.stderr}`);
    },
  });
}
