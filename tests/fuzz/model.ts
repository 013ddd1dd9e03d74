/**
 * The model behind tests/fuzz_test.ts: what every file must contain and what every map must
 * read, following the Linux kernel's page-cache semantics as they were observed on this
 * project's machines (each rule names the experiment or kernel path it comes from).
 *
 * One `FileModel` per file: `data` is what a shared map reads (the page cache, or the file when
 * a page is not cached), `disk` is what the backing file holds (the same array for a local
 * file, whose page cache is the file). One `MapModel` per map: its private (copy-on-write)
 * pages and its salvaged pages, which no longer follow the file.
 *
 * FUSE files (faultfs, mounted with a readahead window of one page, no writeback cache,
 * keep_cache off) add per page whether it is cached ("maybe" after an asynchronous readahead)
 * and whether it is dirty, and per file the kernel's write-back error record: the errseq_t,
 * which decides which flush reports a failed write-back (each descriptor once), and the
 * AS_EIO/AS_ENOSPC flags, which fuse_vma_close() turns into a new error. Write-back happens
 * where the program causes it: msync (the range), close and munmap (every dirty page, batched),
 * open and "invalidate" (every dirty page, one by one, then the cache is dropped), salvage
 * (munmap of one page). What the model cannot know it reads back from the backing file and
 * accepts only one of the possible answers.
 *
 * This file holds the files and maps; tests/fuzz/kernel.ts holds the kernel's rules (which
 * touches fault, write-back, the errseq_t, truncation) that act on them.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { MapMode, MappedFile } from "../../mod.ts";
import { pageSize } from "../util.ts";

/** The library's page size: what the kernel maps, zero-fills past an end, and faults in. */
export const PAGE: number = pageSize();
export const EIO = 5;
export const ENOSPC = 28;

/** The name guardmap gives an errno in `MappedIOError.code`. */
export function errnoName(errno: number): string {
  return errno === ENOSPC ? "ENOSPC" : "EIO";
}

/** Whether a FUSE page is in the page cache; "maybe" while an asynchronous readahead is out. */
export type Cached = "yes" | "no" | "maybe";

/** The faults faultfs is injecting now (it has no other state the model needs). */
export interface FaultRules {
  outage: boolean;
  reads: { file: string; start: number; end: number }[];
  writes: { file: string; start: number; end: number }[];
  /** One errno for every write rule of an epoch, so a batched WRITE's error is known. */
  writeErrno: number;
  fsyncs: { file: string; times: number; hits: number }[];
}

/** Reads `[from, to)` of a file; bytes past its end read as zeros. */
export function readRange(path: string, from: number, to: number): Uint8Array {
  const bytes = new Uint8Array(Math.max(0, to - from));
  using file = Deno.openSync(path, { read: true });
  file.seekSync(from, Deno.SeekMode.Start);
  let done = 0;
  // Each read returns at least one byte or null (end of file): bounded by the length.
  while (done < bytes.length) {
    const count = file.readSync(bytes.subarray(done));
    if (count === null || count === 0) break;
    done += count;
  }
  return bytes;
}

/** The index of the first byte where `actual` and `expected` differ, or -1. */
export function firstDifference(actual: Uint8Array, expected: Uint8Array): number {
  if (actual.length !== expected.length) return Math.min(actual.length, expected.length);
  for (let i = 0; i < actual.length; i++) if (actual[i] !== expected[i]) return i;
  return -1;
}

export class FileModel {
  readonly maps = new Set<MapModel>();
  /** Bytes `[base, base + span)` as a shared map reads them. */
  readonly data: Uint8Array;
  /** Bytes `[base, base + span)` of the backing file; `data` itself for a local file. */
  readonly disk: Uint8Array;
  readonly cached: Cached[];
  readonly dirty: boolean[];
  /**
   * Local files: indexes of `data` past the end of the file, in the page that holds the end,
   * written through a shared map. The kernel zeroes them whenever it writes the page back
   * (block_write_full_folio) and when the file grows (observed), so they read as the written
   * byte or as 0, and the model accepts either.
   */
  readonly fuzzy = new Set<number>();
  /** The kernel's errseq_t of the file's address space (mm/errseq.c). */
  errseq = 0;
  /** The address space's AS_EIO and AS_ENOSPC flags (the legacy write-back error record). */
  asEio = false;
  asEnospc = false;
  /**
   * FUSE: a lookup of the name failed (an open during an outage), so the kernel dropped the
   * dentry; the inode lives on only while a descriptor holds it.
   */
  unhashed = false;
  size: number;

  constructor(
    readonly name: string,
    /** The path maps open: the file itself, or its path in the FUSE mount. */
    readonly path: string,
    /** Where the bytes really are: the same path, or the file in faultfs's backing directory. */
    readonly backing: string,
    readonly fuse: boolean,
    /** File offset of the modelled region (a multiple of PAGE); nothing before it is mapped. */
    readonly base: number,
    readonly span: number,
    content: Uint8Array,
    size: number,
  ) {
    assert.equal(base % PAGE, 0);
    assert.equal(span % PAGE, 0);
    assert.equal(content.length, span);
    this.data = content.slice();
    this.disk = fuse ? content.slice() : this.data;
    this.cached = new Array<Cached>(span / PAGE).fill("no");
    this.dirty = new Array<boolean>(span / PAGE).fill(false);
    this.size = size;
  }

  get pages(): number {
    return this.span / PAGE;
  }

  pageStart(page: number): number {
    return this.base + page * PAGE;
  }

  pageOf(fileOffset: number): number {
    return Math.floor((fileOffset - this.base) / PAGE);
  }

  /**
   * Whether a page lies wholly past the end: touching it raises SIGBUS. The page holding the
   * end is still served, zeros after the end (tests/fault_test.ts).
   */
  beyondEnd(page: number): boolean {
    return this.pageStart(page) >= this.size;
  }
}

export class MapModel {
  /** Copy-on-write pages of a mode "c" map: page index to the whole page. */
  readonly privatePages = new Map<number, Uint8Array>();
  /** Pages a salvage map replaced by anonymous memory (zeros, then what was written there). */
  readonly salvaged = new Map<number, Uint8Array>();
  salvageCount = 0;
  salvageReported = 0;
  /** File offset of the lowest address whose fault was salvaged. */
  salvageFirst: number | undefined;
  /** The errseq sample of this map's descriptor (file->f_wb_err). */
  since = 0;
  closed = false;
  view: Uint8Array | undefined;
  /** Opened with `writes: "pwrite"`: `write` goes through the file descriptor. */
  pwrite = false;

  constructor(
    readonly id: number,
    readonly file: FileModel,
    readonly map: MappedFile,
    readonly mode: MapMode,
    readonly offset: number,
    readonly length: number,
    readonly salvage: boolean,
  ) {}

  get end(): number {
    return this.offset + this.length;
  }

  get label(): string {
    return `m${this.id}(${this.file.name} ${this.mode}${this.salvage ? " salvage" : ""}` +
      `${this.pwrite ? " pwrite" : ""} ` +
      `[${this.offset}, ${this.end}))`;
  }

  /** Whether page `page` of the file is served by this map's own memory, not the file. */
  ownsPage(page: number): boolean {
    return this.salvaged.has(page) || this.privatePages.has(page);
  }

  /** The byte this map reads at file offset `at`, and whether it may read 0 instead. */
  byteAt(at: number): { value: number; orZero: boolean } {
    const page = this.file.pageOf(at);
    const within = at - this.file.pageStart(page);
    const own = this.salvaged.get(page) ?? this.privatePages.get(page);
    if (own !== undefined) return { value: own[within], orZero: false };
    const index = at - this.file.base;
    return { value: this.file.data[index], orZero: this.file.fuzzy.has(index) };
  }

  /** The zero-copy view, asked for once (later calls return views of the same memory). */
  getView(): Uint8Array {
    this.view ??= this.map.unsafeView();
    return this.view;
  }
}

/** How a page reacts to a touch through a given map. */
export interface PagePlan {
  page: number;
  /** "ok": served; "must": faults; "may": faults or not (a readahead may have cached it). */
  touch: "ok" | "must" | "may";
  /** A fault there is a truncated file, not a failing device. */
  truncated: boolean;
}
