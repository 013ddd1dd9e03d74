/**
 * How the fuzz test chooses its next step: a weighted table of every operation (different on
 * faultfs, where opens drop the page cache and faults are injected), and the step it runs.
 *
 * @module
 */
import assert from "node:assert/strict";
import { addRule, externalWrite, heal, invalidate, outage, truncate } from "./faults.ts";
import type { Fuzzer } from "./fuzzer.ts";
import type { MapModel } from "./model.ts";
import { read, readArray, readMany, write, writeArray } from "./steps_copy.ts";
import { afterClose, badOpen, close, open } from "./steps_maps.ts";
import { viewAccess } from "./steps_view.ts";
import { advise, check, fileSize, flush, prefault } from "./steps_window.ts";

const MAX_OPEN_MAPS = 8;

/** Steps that act on a file or on faultfs, not on an open map. */
const WITHOUT_MAP = new Set([
  "open",
  "badOpen",
  "afterClose",
  "failRead",
  "failWrite",
  "failFsync",
  "outage",
  "heal",
  "invalidate",
  "truncate",
  "grow",
  "externalWrite",
]);

/** The steps and their weights, in the order the generator draws from. */
function stepTable(fuse: boolean): [string, number][] {
  // On faultfs every open drops the file's page cache (writing dirty pages back first), which
  // resets the very state where write-back errors matter: fewer opens there, more flushes.
  const table: [string, number][] = [
    ["open", fuse ? 5 : 12],
    ["badOpen", fuse ? 1.5 : 3],
    ["read", 14],
    ["write", 10],
    ["readArray", 3],
    ["readMany", 4],
    ["writeArray", 3],
    ["flush", fuse ? 16 : 10],
    ["advise", 4],
    ["prefault", 5],
    ["fileSize", 2],
    ["check", 2],
    ["viewRead", 5],
    ["viewWrite", 5],
    ["close", fuse ? 4 : 6],
    ["afterClose", 3],
  ];
  if (fuse) {
    table.push(
      ["failRead", 3],
      ["failWrite", 3],
      ["failFsync", 1],
      ["outage", 1],
      ["heal", 3],
      ["invalidate", 3],
      ["externalWrite", 1],
    );
  } else {
    table.push(["truncate", 4], ["grow", 3], ["externalWrite", 3]);
  }
  return table;
}

/** Chooses a step, counts it, and runs it. */
export async function randomStep(fuzzer: Fuzzer): Promise<void> {
  let name = fuzzer.rng.weighted(stepTable(fuzzer.fuse));
  if (!WITHOUT_MAP.has(name) && fuzzer.maps.length === 0) name = "open";
  if (name === "open" && fuzzer.maps.length >= MAX_OPEN_MAPS) name = "close";
  if (name === "afterClose" && fuzzer.closedMaps.length === 0) name = "badOpen";
  fuzzer.count(name);
  const map = fuzzer.maps.length > 0 ? fuzzer.rng.pick(fuzzer.maps) : undefined;
  await runStep(fuzzer, name, map);
}

/** Runs step `name`; `map` is a map chosen among the open ones (if any). */
async function runStep(fuzzer: Fuzzer, name: string, map: MapModel | undefined): Promise<void> {
  const onMap = MAP_STEPS[name];
  if (onMap !== undefined) return onMap(fuzzer, map!);
  switch (name) {
    case "open":
      return open(fuzzer);
    case "badOpen":
      return badOpen(fuzzer);
    case "afterClose":
      return afterClose(fuzzer, fuzzer.rng.pick(fuzzer.closedMaps));
    case "truncate":
      return truncate(fuzzer, false);
    case "grow":
      return truncate(fuzzer, true);
    case "externalWrite":
      return await externalWrite(fuzzer);
    case "failRead":
    case "failWrite":
    case "failFsync":
      return await addRule(fuzzer, name);
    case "outage":
      return await outage(fuzzer);
    case "heal":
      return await heal(fuzzer);
    case "invalidate":
      return await invalidate(fuzzer);
  }
  assert.fail(`unknown step ${name}`);
}

/** The steps that act on one open map. */
const MAP_STEPS: Record<string, (fuzzer: Fuzzer, map: MapModel) => void> = {
  read,
  write,
  readArray,
  readMany,
  writeArray,
  flush,
  advise,
  prefault,
  fileSize,
  check,
  viewRead: (fuzzer, map) => viewAccess(fuzzer, map, false),
  viewWrite: (fuzzer, map) => viewAccess(fuzzer, map, map.mode !== "r"),
  close: (fuzzer, map) => close(fuzzer, map, fuzzer.rng.chance(0.3)),
};
