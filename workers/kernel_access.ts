/**
 * What a MapPool worker may load for `PoolFile.run`, beyond guardmap's own directory and
 * `permissions.read`: the kernel modules (and the files they import) that this process may read
 * itself, and the remote hosts it may import from. Internal.
 *
 * A worker's permissions are fixed when it starts, so a new grant means a new worker process;
 * grants only grow, and only by resources the host holds itself, so the workers stay as narrow
 * as the kernels they were asked to run.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { sep } from "node:path";

/** A resource the worker's Deno refused while loading a kernel. */
export interface Denied {
  /** The permission: `"read"` for a file, `"import"` for a remote host. */
  name: "read" | "import";
  /** The path, or `host:port`. */
  resource: string;
}

/** At most this many grants per `run` call: a kernel's import graph is not unbounded. */
export const GRANTS_PER_RUN_MAX = 32;

/**
 * Reads what Deno's refusal says was refused (`Requires read access to "/a/b.ts", ...`).
 *
 * @example
 * ```ts
 * import { deniedOf } from "./kernel_access.ts";
 * const error = new Error('Requires read access to "/k/helper.ts", run again with the --allow-read flag');
 * console.log(deniedOf(error)); // { name: "read", resource: "/k/helper.ts" }
 * ```
 */
export function deniedOf(error: unknown): Denied | undefined {
  const message = error instanceof Error ? error.message : String(error);
  const found = /Requires (read|import) access to "([^"]+)"/.exec(message);
  if (found === null) return undefined;
  return { name: found[1] as "read" | "import", resource: found[2] };
}

/** The kernel resources granted to a pool's workers so far. */
export class KernelAccess {
  readonly #reads: string[] = [];
  readonly #imports: string[] = [];
  readonly #fixed: string[];
  readonly #ownHosts: string[];

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
      if (state !== "granted") return false;
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
