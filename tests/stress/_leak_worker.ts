/// <reference lib="deno.worker" />
/**
 * A Web Worker of leak_loops.ts: opens `count` maps of `path`, never closes them, says so, and
 * waits to be terminated. Not a script (runners skip `_` files).
 *
 * @module
 */
import { MappedFile } from "../../mod.ts";

const held: MappedFile[] = [];
self.onmessage = (event: MessageEvent<{ path: string; count: number }>) => {
  let failed = 0;
  let firstError = "";
  for (let i = 0; i < event.data.count; i++) {
    try {
      held.push(MappedFile.open(event.data.path));
    } catch (error) {
      failed++;
      firstError ||= String(error);
    }
  }
  self.postMessage({ opened: held.length, failed, firstError });
};
