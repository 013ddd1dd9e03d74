/**
 * What a MapPool worker may load for `PoolFile.run`, beyond guardmap's own directory and
 * `permissions.read`: the kernel modules (and the files they import) that this process may read
 * itself, and the remote hosts it may import from. Internal.
 *
 * A worker's permissions are fixed when it starts, so a new grant means a new worker process;
 * grants only grow, and only by the module files and hosts of the kernels' import graphs that
 * the host may use itself, so the workers stay as narrow
 * as the kernels they were asked to run.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { sep } from "node:path";

/** A resource a worker needs to load a kernel. */
export interface Denied {
  /** The permission: `"read"` for a file, `"import"` for a remote host. */
  name: "read" | "import";
  /** The path, or `host:port`. */
  resource: string;
}

/** How long `deno info` may take to list a kernel's module graph (it may fetch remote modules). */
const GRAPH_TIMEOUT_MS = 30_000;

/** The kernel resources granted to a pool's workers so far. */
export class KernelAccess {
  readonly #reads: string[] = [];
  readonly #imports: string[] = [];
  readonly #fixed: string[];
  readonly #ownHosts: string[];
  /**
   * The module graph of each kernel URL, as `deno info` lists it: one listing per URL, shared by
   * concurrent runs; undefined when it could not be listed (kept, so a `deno info` that hangs
   * or fails is not run again, and waited for, on every call).
   */
  readonly #graphs = new Map<string, Promise<Denied[] | undefined>>();

  /**
   * `fixed`: the directories and files every worker may read anyway. `ownHosts`: the hosts the
   * worker's own code comes from when it is remote: a worker started with `--allow-import`
   * loses Deno's default list of hosts, so these must stay on it.
   */
  constructor(fixed: string[], ownHosts: string[]) {
    this.#fixed = fixed;
    this.#ownHosts = ownHosts;
  }

  /** The worker's flags for the grants: `--allow-import` once a remote kernel needs it. */
  importFlags(): string[] {
    if (this.#imports.length === 0) return [];
    return [`--allow-import=${[...new Set([...this.#ownHosts, ...this.#imports])].join(",")}`];
  }

  /** How many grants were made: a worker started with fewer lacks some. */
  get version(): number {
    return this.#reads.length + this.#imports.length;
  }

  /** The files granted for kernels (on top of the fixed ones). */
  get reads(): string[] {
    return [...this.#reads];
  }

  /**
   * Grants what loading kernel `url` and its static imports needs: each local module file and
   * each remote module's host of its graph, as far as this process may use them itself.
   *
   * Why the host lists the graph (`deno info --json`, which resolves and fetches modules but
   * runs none of them) instead of granting what the worker was refused: a refusal while Deno
   * loads the graph and one raised by the kernel's top-level code (`Deno.readDirSync("/")`) or
   * simply thrown (`throw new Error('Requires read access to "/root"')`) reach the worker as
   * the same rejected `import()`, so the worker cannot tell them apart, and granting from its
   * messages let a kernel widen its own permissions. Imports whose specifier is computed at run
   * time are not in the listing: those need `permissions.read`.
   */
  async grantGraph(url: string): Promise<void> {
    for (const needed of (await this.#graphOf(url)) ?? [this.neededFor(url)]) {
      if (needed !== undefined) this.grant(needed);
    }
  }

  #graphOf(url: string): Promise<Denied[] | undefined> {
    let graph = this.#graphs.get(url);
    if (graph === undefined) {
      graph = this.#listGraph(url);
      this.#graphs.set(url, graph);
    }
    return graph;
  }

  async #listGraph(url: string): Promise<Denied[] | undefined> {
    // A remote kernel this process may not import itself gets nothing: no listing either.
    const root = this.neededFor(url);
    if (root?.name === "import") {
      if (Deno.permissions.querySync({ name: "import", host: root.resource }).state !== "granted") {
        return undefined;
      }
    }
    try {
      const output = await new Deno.Command(Deno.execPath(), {
        // --no-lock: listing the graph must not write remote modules into the user's deno.lock.
        args: ["info", "--json", "--no-lock", url],
        env: { NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "null",
        signal: AbortSignal.timeout(GRAPH_TIMEOUT_MS),
      }).output();
      if (!output.success) return undefined;
      return graphResources(JSON.parse(new TextDecoder().decode(output.stdout)));
    } catch {
      // No --allow-run for Deno, too slow, or output not understood: the kernel module alone.
      return undefined;
    }
  }

  /**
   * The resource that loading module `url` needs first, when the workers lack it and this
   * process holds it; undefined when nothing is to be granted.
   */
  neededFor(url: string): Denied | undefined {
    const parsed = new URL(url);
    if (parsed.protocol === "file:") return { name: "read", resource: fileURLToPath(parsed) };
    if (parsed.protocol === "https:" || parsed.protocol === "http:") {
      return { name: "import", resource: hostOf(parsed) };
    }
    return undefined;
  }

  /**
   * Adds `denied` to the grants if the workers do not have it yet and this process may use it
   * itself (`Deno.permissions.querySync`). Returns whether it added anything: false means a new
   * worker would fail the same way.
   */
  grant(denied: Denied): boolean {
    if (denied.name === "read") {
      if (this.#covered(denied.resource) || denied.resource.includes(",")) return false;
      const state = Deno.permissions.querySync({ name: "read", path: denied.resource }).state;
      // A module is a regular file: never a directory, whose grant would cover all below it.
      if (state !== "granted" || !isFile(denied.resource)) return false;
      this.#reads.push(denied.resource);
      return true;
    }
    if (this.#imports.includes(denied.resource) || denied.resource.includes(",")) return false;
    const state = Deno.permissions.querySync({ name: "import", host: denied.resource }).state;
    if (state !== "granted") return false;
    this.#imports.push(denied.resource);
    return true;
  }

  #covered(path: string): boolean {
    return [...this.#fixed, ...this.#reads].some((allowed) =>
      path === allowed || path.startsWith(allowed.endsWith(sep) ? allowed : allowed + sep)
    );
  }
}

/**
 * `host:port` of a URL, as Deno's import permission names it.
 *
 * @example
 * ```ts
 * import { hostOf } from "./kernel_access.ts";
 * console.log(hostOf(new URL("https://jsr.io/@a/b/mod.ts"))); // "jsr.io:443"
 * ```
 */
export function hostOf(url: URL): string {
  return `${url.hostname}:${url.port || (url.protocol === "https:" ? "443" : "80")}`;
}

/** What `deno info --json` output `info` lists: its local module files and remote hosts. */
function graphResources(info: unknown): Denied[] {
  const graph = info as { modules?: { specifier?: unknown; error?: unknown }[] };
  const redirects = (info as { redirects?: Record<string, string> }).redirects ?? {};
  const specifiers = [
    ...(graph.modules ?? []).filter((module) => module.error === undefined)
      .map((module) => module.specifier),
    ...Object.keys(redirects),
  ];
  const found: Denied[] = [];
  for (const specifier of specifiers) {
    if (typeof specifier !== "string") continue;
    const url = new URL(specifier);
    if (url.protocol === "file:") found.push({ name: "read", resource: fileURLToPath(url) });
    if (url.protocol === "https:" || url.protocol === "http:") {
      found.push({ name: "import", resource: hostOf(url) });
    }
  }
  return found;
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
