/**
 * The numpy side of the comparison harness: `bench/numpy_memmap.py` in a Python subprocess,
 * driven one JSON request and answer per line, so that its batches take their turn in the same
 * rounds as the Deno contenders'.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ROOT } from "./options.ts";
import { say } from "./progress.ts";

const NUMPY_SCRIPT = fileURLToPath(new URL("../numpy_memmap.py", import.meta.url));
const encoder = new TextEncoder();

/** What numpy_memmap.py says about itself (`op: "info"`). */
export interface NumpyInfo {
  /** numpy's version. */
  numpy: string;
  /** Python's version. */
  python: string;
  /** The SIMD extensions numpy found on this CPU. */
  simd: string[];
}

/** The Python side (bench/numpy_memmap.py), one JSON request and answer per line. */
export class NumpyPeer {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";

  /** Starts `python` on numpy_memmap.py, with `pythonPath` (where numpy is) first on its path. */
  constructor(python: string, pythonPath: string) {
    // The OpenBLAS variables are set on some machines here for old OpenBLAS builds; they slow a
    // current numpy down, so they are removed for this subprocess only.
    const env = Deno.env.toObject();
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    env.PYTHONPATH = env.PYTHONPATH ? `${pythonPath}:${env.PYTHONPATH}` : pythonPath;
    env.PYTHONUNBUFFERED = "1";
    this.#child = new Deno.Command(python, {
      args: [NUMPY_SCRIPT],
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#reader = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** Sends one request and waits for its answer; throws the error numpy_memmap.py answers. */
  async request<T>(body: Record<string, unknown>): Promise<T> {
    await this.#writer.write(encoder.encode(JSON.stringify(body) + "\n"));
    while (!this.#buffer.includes("\n")) {
      const { value, done } = await this.#reader.read();
      if (done) throw new Error(`numpy_memmap.py exited during ${JSON.stringify(body.op)}`);
      this.#buffer += value;
    }
    const end = this.#buffer.indexOf("\n");
    const line = this.#buffer.slice(0, end);
    this.#buffer = this.#buffer.slice(end + 1);
    const answer = JSON.parse(line);
    if (answer.error !== undefined) {
      throw new Error(`numpy_memmap.py, ${body.op}: ${answer.error}`);
    }
    return answer as T;
  }

  /** Asks the subprocess to exit and waits for it. */
  async close(): Promise<void> {
    try {
      await this.#writer.write(encoder.encode(`{"op":"exit"}\n`));
      await this.#writer.close();
    } catch {
      // Already gone.
    }
    await this.#child.status;
    this.#reader.releaseLock();
  }
}

/**
 * Starts numpy_memmap.py (numpy from `.tools/python`, `PYTHON` or python3), has it map the data
 * file and checks its sum of the file. `cleanups` gets the peer's close first, so that a failed
 * start leaves no process behind.
 */
export async function startNumpy(
  dataPath: string,
  expectedSum: number,
  cleanups: (() => void | Promise<void>)[],
): Promise<{ peer: NumpyPeer; info: NumpyInfo }> {
  say("starting numpy_memmap.py");
  const pythonPath = join(ROOT, ".tools", "python");
  const peer = new NumpyPeer(Deno.env.get("PYTHON") ?? "python3", pythonPath);
  cleanups.push(() => peer.close());
  let info: NumpyInfo;
  try {
    info = await peer.request({ op: "info" });
  } catch (error) {
    throw new Error(
      `numpy could not be loaded (${error instanceof Error ? error.message : error}). ` +
        "Run `tools/dev compare`, which installs the pinned numpy into .tools/python, or " +
        "pass --no-numpy.",
    );
  }
  const opened = await peer.request<{ sum: number }>({ op: "open", path: dataPath });
  if (opened.sum !== expectedSum) {
    throw new Error(`numpy summed ${opened.sum}, the file holds ${expectedSum}`);
  }
  return { peer, info };
}
