/**
 * The fuzz test's fault injection: local files truncated and grown under their maps, another
 * writer, and on faultfs failing reads, writes and fsyncs, outages, healing and invalidation
 * of the page cache. Each step changes the file and tells the model.
 *
 * @module
 */
import { type Fuzzer, writeAll } from "./fuzzer.ts";
import { errnoName, type FileModel, PAGE } from "./model.ts";

/** Whether faultfs injects no fault into `file` now. */
export function healthy(fuzzer: Fuzzer, file: FileModel): boolean {
  const rules = fuzzer.kernel.rules;
  return !rules.outage && !rules.reads.some((rule) => rule.file === file.name) &&
    !rules.writes.some((rule) => rule.file === file.name) &&
    !rules.fsyncs.some((rule) => rule.file === file.name);
}

/** Truncates a local file under its maps, or grows it back (zeros). */
export function truncate(fuzzer: Fuzzer, grow: boolean): void {
  const rng = fuzzer.rng;
  const file = rng.pick(fuzzer.files);
  const top = file.base + file.span;
  let size: number;
  if (grow) {
    if (file.size >= top) return truncate(fuzzer, false);
    size = rng.range(file.size + 1, top);
  } else {
    if (file.size <= file.base) return truncate(fuzzer, true);
    size = file.base + rng.int(file.size - file.base);
    if (rng.chance(0.2)) size -= (size - file.base) % PAGE;
  }
  fuzzer.log(`truncate ${file.name} from ${file.size} to ${size}`);
  Deno.truncateSync(file.path, size);
  const before = file.size;
  fuzzer.kernel.truncate(file, size);
  if (grow) fuzzer.kernel.settleFuzzy(file, before, size);
}

/**
 * Another writer changes the file: a local file through its page cache (coherent with every
 * shared map and every page a private map has not copied); a FUSE file through the mount and
 * only on a healthy device (its open drops the page cache, its WRITE goes to the backing file
 * at once, its close writes back what is dirty).
 */
export async function externalWrite(fuzzer: Fuzzer): Promise<void> {
  const { rng, kernel } = fuzzer;
  const file = rng.pick(fuzzer.files);
  if (file.fuse && !healthy(fuzzer, file)) return await invalidate(fuzzer);
  const at = file.base + rng.int(file.span);
  // Through FUSE, within one page: one WRITE request (a write across pages may be cut in two,
  // and the model counts WRITE requests to tell the kernel's own write-backs apart).
  const room = file.fuse ? file.pageStart(file.pageOf(at)) + PAGE - at : file.base + file.span - at;
  const bytes = rng.bytes(rng.range(1, Math.min(room, 2 * PAGE)));
  fuzzer.log(`external write ${file.name} [${at}, ${at + bytes.length})`);
  if (file.fuse) {
    kernel.lookedUp(file);
    kernel.invalidate(file);
  }
  {
    using handle = Deno.openSync(file.path, { write: true });
    handle.seekSync(at, Deno.SeekMode.Start);
    writeAll(handle, bytes);
  }
  // One WRITE request (written through at once: no writeback cache).
  if (file.fuse) kernel.writeRequests++;
  const index = at - file.base;
  file.data.set(bytes, index);
  if (file.fuse) file.disk.set(bytes, index);
  for (let i = 0; i < bytes.length; i++) file.fuzzy.delete(index + i);
  const before = file.size;
  file.size = Math.max(file.size, at + bytes.length);
  kernel.settleFuzzy(file, before, file.size);
  if (file.fuse) {
    // Pages the WRITE covered whole may be left in the page cache (fuse_perform_write).
    for (let page = file.pageOf(at); page <= file.pageOf(at + bytes.length - 1); page++) {
      const start = file.pageStart(page);
      if (start >= at && start + PAGE <= at + bytes.length) file.cached[page] = "maybe";
    }
    kernel.closeDescriptor(file);
  }
}

export type RuleKind = "failRead" | "failWrite" | "failFsync";

/** faultfs starts failing reads or writes of a range of a file, or its fsyncs. */
export async function addRule(fuzzer: Fuzzer, kind: RuleKind): Promise<void> {
  const fs = fuzzer.fs!;
  const rng = fuzzer.rng;
  const file = rng.pick(fuzzer.files);
  const rules = fuzzer.kernel.rules;
  if (kind === "failFsync") {
    const times = rng.pick([0, 1, 2]);
    fuzzer.log(`fail fsync ${file.name} times ${times}`);
    await fs.fail({
      operations: "fsync",
      file: file.name,
      ...(times === 0 ? {} : { times }),
    });
    rules.fsyncs.push({ file: file.name, times, hits: 0 });
    return;
  }
  const start = file.base + rng.int(file.span);
  const length = rng.chance(0.5) ? rng.range(1, 64) : rng.range(1, 3 * PAGE);
  if (kind === "failRead") {
    fuzzer.log(`fail read ${file.name} [${start}, ${start + length})`);
    await fs.fail({ operations: "read", file: file.name, offset: start, length });
    rules.reads.push({ file: file.name, start, end: start + length });
  } else {
    const errno = errnoName(rules.writeErrno);
    fuzzer.log(`fail write ${file.name} [${start}, ${start + length}) ${errno}`);
    await fs.fail({ operations: "write", file: file.name, offset: start, length, errno });
    rules.writes.push({ file: file.name, start, end: start + length });
  }
}

/** faultfs answers EIO to everything. */
export async function outage(fuzzer: Fuzzer): Promise<void> {
  fuzzer.log("outage");
  await fuzzer.fs!.outage();
  fuzzer.kernel.rules.outage = true;
}

/** faultfs drops every rule and ends an outage. */
export async function heal(fuzzer: Fuzzer): Promise<void> {
  fuzzer.log("heal");
  await fuzzer.fs!.heal();
  const rules = fuzzer.kernel.rules;
  rules.outage = false;
  rules.reads = [];
  rules.writes = [];
  rules.fsyncs = [];
}

/** faultfs has the kernel drop a file's page cache (after writing its dirty pages back). */
export async function invalidate(fuzzer: Fuzzer): Promise<void> {
  const file = fuzzer.rng.pick(fuzzer.files);
  fuzzer.log(`invalidate ${file.name}`);
  await fuzzer.fs!.invalidate(file.name);
  fuzzer.kernel.invalidate(file);
}
