/**
 * Guarded access to the file a command reads, window by window: only a window of at most
 * {@linkcode WINDOW_BYTES} is mapped at a time, so files of any size and offsets past 4 GiB
 * work. In-process through `MappedFile`, or `--isolated` through a `MapPool` worker (a fault
 * the guard cannot catch then kills a worker, never the CLI).
 *
 * Every call throws `MappedIOError` at the first byte it could not transfer, after
 * transferring the bytes before it.
 *
 * @module
 */
import { MappedFile, MapPool, type PoolFile } from "../mod.ts";

/** Bytes mapped at a time. */
export const WINDOW_BYTES: number = 64 * 2 ** 20;
/**
 * The granularity of a fault. The kernel fails whole pages; 4 KiB is the smallest page size
 * Linux uses, so on a machine with larger pages a bad page shows up as several adjacent bad
 * 4 KiB ranges, which merge into the same range.
 */
export const PAGE_BYTES = 4096;

/** A file read through guarded copies. */
export interface Source extends AsyncDisposable {
  /** The path given on the command line. */
  readonly path: string;
  /** The file's size in bytes when it was opened. */
  readonly size: number;
  /** Faults `[offset, offset + length)` in without copying it (`length` <= WINDOW_BYTES). */
  touch(offset: number, length: number): Promise<void>;
  /** Fills `target` from file `offset` (`target.length` <= WINDOW_BYTES). */
  read(target: Uint8Array, offset: number): Promise<void>;
}

/** Options of {@linkcode openSource}. */
export interface SourceOptions {
  /** Read through a MapPool worker process. */
  isolated?: boolean;
}

/**
 * Opens `path` for guarded reading. Throws Deno's errors (`NotFound`, ...) like `Deno.open`.
 *
 * @example
 * ```ts
 * import { openSource } from "./source.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array([1, 2, 3]));
 * await using source = await openSource(path);
 * const bytes = new Uint8Array(2);
 * await source.read(bytes, 1);
 * console.log(bytes); // Uint8Array(2) [ 2, 3 ]
 * ```
 */
export async function openSource(path: string, options: SourceOptions = {}): Promise<Source> {
  const size = fileSize(path);
  if (options.isolated) {
    const pool = new MapPool({ workers: 1 });
    return new PooledSource(path, size, pool);
  }
  return await Promise.resolve(new LocalSource(path, size));
}

/** The size of a regular file, or of a block device (whose `stat` size is 0). */
function fileSize(path: string): number {
  const stat = Deno.statSync(path);
  if (stat.isDirectory) throw new Deno.errors.IsADirectory(`${path} is a directory`);
  if (stat.isFile) return stat.size;
  using file = Deno.openSync(path, { read: true });
  return file.seekSync(0, Deno.SeekMode.End);
}

/** The window to map for a request at `offset`: from `offset`, WINDOW_BYTES or to the end. */
function windowAt(offset: number, size: number): { offset: number; length: number } {
  return { offset, length: Math.min(WINDOW_BYTES, size - offset) };
}

/**
 * Asks the kernel to read the whole window ahead, in the background: on a FUSE or network file
 * system many requests are then in flight at once instead of one readahead window per fault,
 * and a disk sees large sequential reads. A page that fails there is simply not cached; the
 * guarded copy reads it again and reports it.
 */
function prepare(map: MappedFile): void {
  map.advise("sequential");
  map.advise("willneed");
}

class LocalSource implements Source {
  readonly path: string;
  readonly size: number;
  #map: MappedFile | undefined;

  constructor(path: string, size: number) {
    this.path = path;
    this.size = size;
  }

  #mapFor(offset: number, length: number): MappedFile {
    const map = this.#map;
    if (
      map !== undefined && offset >= map.offset && offset + length <= map.offset + map.byteLength
    ) {
      return map;
    }
    map?.close();
    this.#map = undefined;
    const next = MappedFile.open(this.path, windowAt(offset, this.size));
    prepare(next);
    this.#map = next;
    return next;
  }

  touch(offset: number, length: number): Promise<void> {
    const map = this.#mapFor(offset, length);
    map.prefault({ position: offset - map.offset, length });
    return Promise.resolve();
  }

  read(target: Uint8Array, offset: number): Promise<void> {
    const map = this.#mapFor(offset, target.length);
    map.read(target, offset - map.offset);
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#map?.close();
    this.#map = undefined;
    return Promise.resolve();
  }
}

class PooledSource implements Source {
  readonly path: string;
  readonly size: number;
  readonly #pool: MapPool;
  #file: PoolFile | undefined;

  constructor(path: string, size: number, pool: MapPool) {
    this.path = path;
    this.size = size;
    this.#pool = pool;
  }

  async #fileFor(offset: number, length: number): Promise<PoolFile> {
    const file = this.#file;
    if (
      file !== undefined && offset >= file.offset &&
      offset + length <= file.offset + file.byteLength
    ) {
      return file;
    }
    this.#file = undefined;
    await file?.close();
    const next = await this.#pool.open(this.path, windowAt(offset, this.size));
    await next.advise("sequential");
    await next.advise("willneed");
    this.#file = next;
    return next;
  }

  async touch(offset: number, length: number): Promise<void> {
    const file = await this.#fileFor(offset, length);
    await file.prefault({ position: offset - file.offset, length });
  }

  async read(target: Uint8Array, offset: number): Promise<void> {
    const file = await this.#fileFor(offset, target.length);
    await file.read(target, offset - file.offset);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#file?.close();
    this.#file = undefined;
    await this.#pool.close();
  }
}

/** The end of the page holding `offset` (the next multiple of PAGE_BYTES above it). */
export function pageEnd(offset: number): number {
  return (Math.floor(offset / PAGE_BYTES) + 1) * PAGE_BYTES;
}
