/**
 * For tests/library_cache_test.ts: renames two library files over TARGET in turn, as fast as it
 * can, until STOP exists or 120 s have passed, then prints how many renames it made.
 *
 *   deno run -A swapper.ts GOOD OTHER TARGET STOP
 *
 * Each rename puts a new hard link of GOOD or OTHER in TARGET's place, so both keep their inodes
 * and a process that opened TARGET has one of the two (or a file a loading process wrote there).
 *
 * @module
 */
const [good, other, target, stop] = Deno.args;
const temporary = `${target}.swap`;
const deadline = Date.now() + 120_000;
let renames = 0;
// Bounded by the deadline.
while (Date.now() < deadline) {
  for (const source of [good, other]) {
    try {
      Deno.removeSync(temporary);
    } catch {
      // Renamed over TARGET last time, as it should be.
    }
    Deno.linkSync(source, temporary);
    Deno.renameSync(temporary, target);
    renames++;
  }
  if (renames % 64 === 0) {
    try {
      Deno.statSync(stop);
      break;
    } catch {
      // Not yet.
    }
  }
}
console.log(renames);
