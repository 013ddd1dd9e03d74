/**
 * The comparison harness's session: the data file and every handle on it that the workloads
 * share (a map, a pread descriptor, a `Deno.FsFile`, a MapPool file, numpy's memmap), opened
 * once and prefaulted.
 *
 * @module
 */
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import { MappedFile, MapPool, type PoolFile } from "../../mod.ts";
import { CacheEvictor, warmPageCache, writeDataFile } from "./data.ts";
import { type NumpyInfo, type NumpyPeer, startNumpy } from "./numpy_peer.ts";
import type { Options } from "./options.ts";
import { say } from "./progress.ts";
import { formatBytes } from "./report.ts";

/** What every workload works on. */
export interface Session {
  /** The command line's settings. */
  options: Options;
  /** The run's temporary directory (removed at the end). */
  dir: string;
  /** The data file, `options.fileBytes` long. */
  dataPath: string;
  /** The exact sum of the data file's float64 values. */
  expectedSum: number;
  /** The data file mapped in-process, prefaulted. */
  map: MappedFile;
  /** `map.unsafeView()`. */
  view: Uint8Array;
  /** A node:fs descriptor of the data file. */
  fd: number;
  /** The data file as a `Deno.FsFile`. */
  denoFile: Deno.FsFile;
  /** One worker process. */
  pool: MapPool;
  /** The data file opened in the pool's worker, prefaulted. */
  pooled: PoolFile;
  /** numpy_memmap.py, unless `--no-numpy`. */
  numpy: NumpyPeer | undefined;
  /** Its versions, unless `--no-numpy`. */
  numpyInfo: NumpyInfo | undefined;
  /** Empties the CPU caches before batches of random reads. */
  evictor: CacheEvictor;
  /** A touched buffer of `sequentialBytes`: the target of every large read. */
  big: Uint8Array;
}

/**
 * Writes the data file into `dir` and opens every handle on it; `cleanups` gets each handle's
 * close as soon as it is open.
 */
export async function openSession(
  options: Options,
  dir: string,
  cleanups: (() => void | Promise<void>)[],
): Promise<Session> {
  say(
    `writing the ${formatBytes(options.fileBytes)} data file into ${dir} ` +
      `(${options.quick ? "--quick" : "full run"}; ${options.rounds} rounds)`,
  );
  const dataPath = join(dir, "data.bin");
  const expectedSum = writeDataFile(dataPath, options.fileBytes);
  if (warmPageCache(dataPath) !== options.fileBytes) throw new Error("short data file");
  const map = MappedFile.open(dataPath);
  map.prefault();
  cleanups.push(() => map.close());
  const fd = openSync(dataPath, "r");
  cleanups.push(() => closeSync(fd));
  const denoFile = Deno.openSync(dataPath, { read: true });
  cleanups.push(() => denoFile.close());
  say("starting the MapPool worker");
  const pool = new MapPool({ workers: 1 });
  cleanups.push(() => pool.close());
  const pooled = await pool.open(dataPath);
  await pooled.prefault();
  const numpy = options.numpy ? await startNumpy(dataPath, expectedSum, cleanups) : undefined;
  const session: Session = {
    options,
    dir,
    dataPath,
    expectedSum,
    map,
    view: map.unsafeView(),
    fd,
    denoFile,
    pool,
    pooled,
    numpy: numpy?.peer,
    numpyInfo: numpy?.info,
    evictor: new CacheEvictor(),
    big: new Uint8Array(options.sequentialBytes).fill(1),
  };
  session.evictor.evict();
  return session;
}
