/**
 * A host process that leak_loops.ts kills at the wrong moment: it starts a MapPool on the file
 * given as first argument and says on stdout where it is. Not a script (runners skip `_` files).
 *
 *   deno run -A tests/stress/_leak_host.ts PATH restart|start|exit DELAY_MS
 *
 * - `restart`: opens the file, reads, prints "ready", then reads in a loop (the parent kills a
 *   worker, then this process while the worker restarts);
 * - `start`: prints "starting" and opens the file (the parent kills this process during the start);
 * - `exit`: starts opening the file and calls `Deno.exit(0)` after DELAY_MS.
 *
 * @module
 */
import { MapPool } from "../../mod.ts";

const [path, variant, delay] = Deno.args;
const pool = new MapPool({ workers: 1 });
const encoder = new TextEncoder();
const say = (line: string) => Deno.stdout.writeSync(encoder.encode(`${line}\n`));

if (variant === "exit") {
  setTimeout(() => Deno.exit(0), Number(delay));
  await pool.open(path);
  say("opened");
  await new Promise((resolve) => setTimeout(resolve, 60_000));
} else if (variant === "start") {
  say("starting");
  await pool.open(path);
  say("opened");
  await new Promise((resolve) => setTimeout(resolve, 60_000));
} else {
  const file = await pool.open(path);
  await file.read(new Uint8Array(16), 0);
  say(`ready ${pool.pids.join(" ")}`);
  // Bounded: the parent kills this process; the timeout ends it otherwise.
  const end = Date.now() + 60_000;
  while (Date.now() < end) {
    await file.read(new Uint8Array(16), 0).catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
