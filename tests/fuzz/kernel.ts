/**
 * The kernel and faultfs as the fuzz test's model sees them (see tests/fuzz/model.ts for the
 * files and maps it acts on): which touches fault, what a store changes, and, for FUSE files,
 * write-back, the errseq_t and the AS_ flags, invalidation, eviction and truncation. Each rule
 * names the experiment or kernel path it comes from.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  EIO,
  ENOSPC,
  type FaultRules,
  type FileModel,
  firstDifference,
  type MapModel,
  PAGE,
  type PagePlan,
  readRange,
} from "./model.ts";

/** The kernel and faultfs as the model sees them. */
export class Kernel {
  /** WRITE requests the model's events sent to faultfs (to tell the kernel's own apart). */
  writeRequests = 0;
  readonly rules: FaultRules = {
    outage: false,
    reads: [],
    writes: [],
    writeErrno: EIO,
    fsyncs: [],
  };

  /** Whether reading page `page` from the device fails now. */
  readFails(file: FileModel, page: number): boolean {
    if (!file.fuse) return false;
    if (this.rules.outage) return true;
    // The kernel asks for whole pages (readahead window: one page), also for the last one.
    const start = file.pageStart(page);
    return this.rules.reads.some((rule) =>
      rule.file === file.name && rule.start < start + PAGE && rule.end > start
    );
  }

  /** Whether writing page `page` back fails now. */
  writeFails(file: FileModel, page: number): boolean {
    if (!file.fuse) return false;
    if (this.rules.outage) return true;
    // A WRITE of the last page carries only the bytes before the end of the file.
    const start = file.pageStart(page);
    const end = Math.min(start + PAGE, file.size);
    return this.rules.writes.some((rule) =>
      rule.file === file.name && rule.start < end && rule.end > start
    );
  }

  /** Whether `fileSize()` (statx, a FUSE GETATTR since attr_timeout is 0) works now. */
  sizeKnown(file: FileModel): boolean {
    return !(file.fuse && this.rules.outage);
  }

  /** How each page of `[from, to)` (file offsets, non-empty) reacts to a touch through `map`. */
  plan(map: MapModel, from: number, to: number): PagePlan[] {
    assert.ok(from < to);
    const file = map.file;
    const steps: PagePlan[] = [];
    for (let page = file.pageOf(from); page <= file.pageOf(to - 1); page++) {
      steps.push(this.classify(map, page));
    }
    return steps;
  }

  classify(map: MapModel, page: number): PagePlan {
    const file = map.file;
    // Salvaged and copy-on-write pages are anonymous memory now: nothing can fail there.
    if (map.ownsPage(page)) return { page, touch: "ok", truncated: false };
    if (file.beyondEnd(page)) return { page, touch: "must", truncated: true };
    if (!this.readFails(file, page)) return { page, touch: "ok", truncated: false };
    const cached = file.cached[page];
    const touch = cached === "yes" ? "ok" : cached === "no" ? "must" : "may";
    return { page, touch, truncated: false };
  }

  /**
   * Whether a touch of `page` through `map` is safe without the guard, whatever the page
   * cache holds: the map owns the page, or the page is inside the file and readable.
   */
  healthy(map: MapModel, page: number): boolean {
    if (map.ownsPage(page)) return true;
    return !map.file.beyondEnd(page) && !this.readFails(map.file, page);
  }

  /** A touch of `page` succeeded: the page is cached now (a no-op for owned pages). */
  loaded(map: MapModel, page: number): void {
    if (map.ownsPage(page) || !map.file.fuse) return;
    map.file.cached[page] = "yes";
  }

  /** A touch of `page` faulted: a "maybe" was not cached after all. */
  faulted(map: MapModel, page: number): void {
    if (map.file.fuse && map.file.cached[page] === "maybe") map.file.cached[page] = "no";
  }

  /** Makes `page` private to a mode "c" map (copy-on-write of what the file shows now). */
  copyOnWrite(map: MapModel, page: number): { fuzzy: boolean } {
    assert.equal(map.mode, "c");
    if (map.ownsPage(page)) return { fuzzy: false };
    const file = map.file;
    const start = page * PAGE;
    map.privatePages.set(page, file.data.slice(start, start + PAGE));
    let fuzzy = false;
    for (let i = start; i < start + PAGE; i++) if (file.fuzzy.has(i)) fuzzy = true;
    return { fuzzy };
  }

  /** Stores `bytes` at file offset `at` through `map` (all in one page, already touched). */
  store(map: MapModel, at: number, bytes: Uint8Array): { fuzzyCopy: boolean } {
    const file = map.file;
    const page = file.pageOf(at);
    assert.equal(file.pageOf(at + bytes.length - 1), page);
    const within = at - file.pageStart(page);
    let fuzzyCopy = false;
    if (map.mode === "c" && !map.ownsPage(page)) fuzzyCopy = this.copyOnWrite(map, page).fuzzy;
    const own = map.salvaged.get(page) ?? map.privatePages.get(page);
    if (own !== undefined) {
      own.set(bytes, within);
      return { fuzzyCopy };
    }
    const index = at - file.base;
    file.data.set(bytes, index);
    for (let i = 0; i < bytes.length; i++) {
      // Past the end, in the page that holds it: the kernel may zero it later (see `fuzzy`).
      if (at + i >= file.size) file.fuzzy.add(index + i);
      else file.fuzzy.delete(index + i);
    }
    if (file.fuse) {
      file.cached[page] = "yes";
      file.dirty[page] = true;
    }
    return { fuzzyCopy };
  }

  // --- write-back and the errseq_t of the file (FUSE only) ---------------------------------

  /** mapping_set_error(): records a write-back error in the errseq_t and the AS_ flags. */
  setError(file: FileModel, errno: number): void {
    this.errseqSet(file, errno);
    if (errno === ENOSPC) file.asEnospc = true;
    else file.asEio = true;
  }

  /** filemap_check_errors(): the AS_ flags' errno (EIO wins), and clears them. */
  takeFlags(file: FileModel): number {
    const errno = file.asEio ? EIO : file.asEnospc ? ENOSPC : 0;
    file.asEio = false;
    file.asEnospc = false;
    return errno;
  }

  /** errseq_set(): a write-back of the file failed with `errno`. */
  errseqSet(file: FileModel, errno: number): void {
    const old = file.errseq;
    let next = (old & ~(4095 | SEEN)) | errno;
    if (old & SEEN) next += COUNTER;
    file.errseq = next;
  }

  /** errseq_sample(): what a descriptor opened now starts from. */
  errseqSample(file: FileModel): number {
    return file.errseq & SEEN ? file.errseq : 0;
  }

  /**
   * file_check_and_advance_wb_err(): the errno a flush of `map` reports, or 0. It also clears
   * the AS_ flags.
   */
  errseqCheck(map: MapModel): number {
    map.file.asEio = false;
    map.file.asEnospc = false;
    const old = map.file.errseq;
    if (old === map.since) return 0;
    const next = old | SEEN;
    map.file.errseq = next;
    map.since = next;
    return next & 4095;
  }

  /**
   * Writes the dirty pages among `pages` back, as the kernel does on msync (a range), on
   * close (write_inode_now: every page) and when invalidating (one page at a time).
   *
   * `batched`: the kernel sends a run of adjacent dirty pages as one WRITE, and faultfs fails
   * a WRITE whole when any byte of it is in a failing range; how the kernel cut the run into
   * WRITEs (max_pages) is not known here, so a page of a failing run that is not itself in a
   * failing range may or may not have been written. The model reads such pages from the
   * backing file and accepts the old or the new bytes (asserting it is one of the two).
   *
   * Every page written back is clean afterwards, also when the write failed: the kernel then
   * keeps the new bytes in the page cache and the old ones on disk (tests/fuse/README.md).
   */
  writeBack(file: FileModel, pages: number[], batched: boolean): void {
    if (!file.fuse) return;
    const dirty = pages.filter((page) => file.dirty[page]).sort((a, b) => a - b);
    const runs: number[][] = [];
    for (const page of dirty) {
      const run = runs[runs.length - 1];
      if (batched && run !== undefined && run[run.length - 1] === page - 1) run.push(page);
      else runs.push([page]);
    }
    const errno = this.rules.outage ? EIO : this.rules.writeErrno;
    for (const run of runs) {
      // One WRITE per run: a run is at most 16 pages (64 KiB), within any max_write.
      this.writeRequests++;
      const failing = run.filter((page) => this.writeFails(file, page));
      for (const page of run) {
        file.dirty[page] = false;
        if (failing.length === 0) {
          this.#written(file, page);
        } else if (!failing.includes(page)) {
          this.#resolveWritten(file, page);
        }
      }
      if (failing.length > 0) this.setError(file, errno);
    }
  }

  #written(file: FileModel, page: number): void {
    const start = page * PAGE;
    file.disk.set(file.data.subarray(start, start + PAGE), start);
  }

  /** A page whose WRITE may or may not have failed: the backing file says which. */
  #resolveWritten(file: FileModel, page: number): void {
    const start = file.pageStart(page);
    const end = Math.min(start + PAGE, file.size);
    if (end <= start) return;
    const actual = readRange(file.backing, start, end);
    const index = start - file.base;
    const newer = file.data.subarray(index, index + actual.length);
    const older = file.disk.subarray(index, index + actual.length);
    assert.ok(
      firstDifference(actual, newer) === -1 || firstDifference(actual, older) === -1,
      `write-back of ${file.name} page at ${start} (batched with a failing page): the backing ` +
        `file holds neither the old nor the new bytes (first difference from the new bytes at ` +
        `${start + firstDifference(actual, newer)})`,
    );
    if (firstDifference(actual, newer) === -1) this.#written(file, page);
  }

  /**
   * invalidate_inode_pages2(): faultfs's "invalidate", and every open of a FUSE file (no
   * keep_cache). Dirty pages are written back one by one (observed: a failing page among
   * adjacent dirty ones fails alone), then every page is dropped: the next touch reads the
   * backing file, so a page whose write-back failed shows the old bytes again. Mappings lose
   * their page-table entries, but copy-on-write pages stay (even_cows is false there).
   */
  invalidate(file: FileModel): void {
    if (!file.fuse) return;
    this.writeBack(file, [...file.dirty.keys()], false);
    file.data.set(file.disk);
    file.cached.fill("no");
  }

  /**
   * write_inode_now(inode, 1): every dirty page of the file written back (batched), then
   * filemap_fdatawait() returns (and clears) the AS_ flags' errno, also one left over from an
   * earlier failure.
   */
  writeInodeNow(file: FileModel): number {
    if (!file.fuse) return 0;
    this.writeBack(file, [...file.dirty.keys()], true);
    return this.takeFlags(file);
  }

  /**
   * A mapping of a FUSE file loses a VMA: fuse_vma_close() runs write_inode_now() and records
   * what it returned with mapping_set_error(). That happens when a map is unmapped, and when
   * salvage maps anonymous memory over one page of it (observed: a salvaged touch writes the
   * file's dirty pages back). The AS_ flag it sets again stays until something clears it, and
   * a later write_inode_now() reports it once more.
   */
  closeVma(file: FileModel): void {
    const errno = this.writeInodeNow(file);
    if (errno !== 0) this.setError(file, errno);
  }

  /** close() of a descriptor of a FUSE file: fuse_flush() runs write_inode_now(). */
  closeDescriptor(file: FileModel): void {
    this.writeInodeNow(file);
  }

  /**
   * MappedFile.close(): munmap (each VMA of the map closes; after the first, write_inode_now
   * finds nothing dirty but the AS_ flag the first one set, so the net effect is one
   * closeVma), then close() of the descriptor, which clears the AS_ flags. When it was the
   * last descriptor of an inode whose name lookup failed, the inode is evicted.
   */
  closeMap(file: FileModel, last: boolean): void {
    if (!file.fuse) return;
    this.closeVma(file);
    this.closeDescriptor(file);
    if (last && file.unhashed) this.evict(file);
  }

  /** The lookup of a FUSE file's name failed (EIO in an outage): d_invalidate. */
  lookupFailed(file: FileModel): void {
    if (!file.fuse) return;
    if (file.maps.size === 0) this.evict(file);
    else file.unhashed = true;
  }

  /** The lookup of a FUSE file's name succeeded: a hashed dentry holds the inode again. */
  lookedUp(file: FileModel): void {
    file.unhashed = false;
  }

  /**
   * The inode is gone (no dentry, no descriptor), and with it the page cache and the
   * write-back error nobody saw: the next lookup makes a new inode (observed: a write-back
   * error is then reported to no later map). Nothing is dirty by now: the last close wrote
   * every page back.
   */
  evict(file: FileModel): void {
    file.errseq = 0;
    file.asEio = false;
    file.asEnospc = false;
    file.unhashed = false;
    file.data.set(file.disk);
    file.cached.fill("no");
    file.dirty.fill(false);
  }

  /**
   * The file shrinks or grows to `size` (ftruncate, or O_TRUNC then fallocate for "w+").
   * Shrinking zeroes the rest of the page holding the new end and drops the pages after it,
   * also the copy-on-write pages of private maps (unmap_mapping_range with even_cows), but
   * not the page holding the end (observed). Growing exposes zeros.
   */
  truncate(file: FileModel, size: number): void {
    if (size < file.size) {
      const from = Math.max(0, size - file.base);
      file.data.fill(0, from);
      if (file.fuse) file.disk.fill(0, from);
      for (const index of [...file.fuzzy]) if (index >= from) file.fuzzy.delete(index);
      const firstDropped = Math.ceil(size / PAGE) * PAGE;
      for (const map of file.maps) {
        for (const page of [...map.privatePages.keys()]) {
          if (file.pageStart(page) >= firstDropped) map.privatePages.delete(page);
        }
      }
      if (file.fuse) {
        for (let page = 0; page < file.pages; page++) {
          if (file.pageStart(page) >= firstDropped) {
            file.cached[page] = "no";
            file.dirty[page] = false;
          }
        }
      }
    }
    file.size = size;
  }

  /**
   * Bytes of `[from, to)` that were `fuzzy` and are inside the file now (it grew): the file
   * says what they are (the written byte or zero), and they are plain bytes from now on.
   */
  settleFuzzy(file: FileModel, from: number, to: number): void {
    for (const index of [...file.fuzzy]) {
      const at = file.base + index;
      if (at < from || at >= to || at >= file.size) continue;
      const actual = readRange(file.backing, at, at + 1)[0];
      assert.ok(
        actual === file.data[index] || actual === 0,
        `${file.name} byte ${at}, written through a map past the end and then brought inside ` +
          `the file, is ${actual}: neither the written ${file.data[index]} nor 0`,
      );
      file.data[index] = actual;
      file.fuzzy.delete(index);
    }
  }
}

const SEEN = 1 << 12;
const COUNTER = 1 << 13;
