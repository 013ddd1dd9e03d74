/**
 * A registry in JSR's layout on 127.0.0.1, enough for a real `deno publish` and for Deno to
 * resolve `jsr:` specifiers against it (`JSR_URL`). Loopback only; the files live in a directory
 * the caller owns, so that a test can tamper with what the registry serves.
 *
 * What Deno 2.9 asks of it (measured):
 * - `deno publish --token T` GETs `/api/scopes/S/packages/P` and
 *   `/api/scopes/S/packages/P/versions/V` (404: not published yet), then POSTs the gzip tarball to
 *   `/api/scopes/S/packages/P/versions/V?config=/deno.json` and expects `status: "success"`.
 * - A `jsr:` import reads `/@S/P/meta.json` (`{"versions": {...}}`), then `/@S/P/V_meta.json`
 *   (`manifest`: path -> `{size, checksum: "sha256-<hex>"}`, and `exports`), then the files
 *   under `/@S/P/V/`, each checked against the manifest.
 *
 * @example
 * ```ts ignore
 * await using registry = serveRegistry({ dir: await Deno.makeTempDir() });
 * console.log(registry.url); // http://127.0.0.1:<port>/
 * ```
 *
 * @module
 */
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { gunzipSync } from "node:zlib";

/** Options of {@linkcode serveRegistry}. */
export interface RegistryOptions {
  /** Where published packages are stored (and served from). */
  dir: string;
  /** The only token `deno publish --token` may use. */
  token?: string;
}

/** A running loopback registry. */
export interface Registry extends AsyncDisposable {
  /** Its base URL, for `JSR_URL`, ending in a slash. */
  readonly url: string;
  /** Every request so far, as `METHOD /path?query status`. */
  readonly requests: string[];
  /** The file of a published package version, on disk (to tamper with it). */
  filePath(pkg: string, version: string, path: string): string;
  /** Stops serving and waits until the listener is closed. */
  stop(): Promise<void>;
}

/** One file of a tarball. */
interface TarEntry {
  path: string;
  bytes: Uint8Array;
}

const API = /^\/api\/scopes\/([^/]+)\/packages\/([^/]+)(?:\/versions\/([^/]+))?$/;

/** Starts a registry on 127.0.0.1 (a free port). */
export function serveRegistry(options: RegistryOptions): Registry {
  const token = options.token ?? "T";
  const requests: string[] = [];
  const statuses = new Map<string, unknown>();
  const handler = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const response = await route(request, url);
    requests.push(`${request.method} ${url.pathname}${url.search} ${response.status}`);
    return response;
  };
  const route = async (request: Request, url: URL): Promise<Response> => {
    const api = API.exec(url.pathname);
    if (api !== null) {
      const [, scope, name, version] = api;
      if (request.method === "POST" && version !== undefined) {
        if (request.headers.get("authorization") !== `Bearer ${token}`) {
          return json({ code: "unauthorized", message: "bad token" }, 401);
        }
        const tarball = new Uint8Array(await request.arrayBuffer());
        const task = publish(options.dir, scope, name, version, tarball);
        statuses.set(task.id, task);
        return json(task, 200);
      }
      if (version === undefined) return json({ scope, name, description: "", runtimeCompat: {} });
      return exists(join(options.dir, `@${scope}`, name, `${version}_meta.json`))
        ? json({ scope, package: name, version })
        : json({ code: "packageVersionNotFound", message: "not found" }, 404);
    }
    const status = /^\/api\/publish_status\/([^/]+)$/.exec(url.pathname);
    if (status !== null) {
      const task = statuses.get(status[1]);
      return task === undefined ? json({ code: "notFound" }, 404) : json(task);
    }
    if (request.method !== "GET" && request.method !== "HEAD") return json({}, 405);
    return serveFile(options.dir, decodeURIComponent(url.pathname));
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
  const url = `http://127.0.0.1:${server.addr.port}/`;
  let stopped: Promise<void> | undefined;
  const stop = () => stopped ??= server.shutdown();
  return {
    url,
    requests,
    filePath: (pkg, version, path) => join(options.dir, pkg, version, path),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** Stores a version from its tarball and updates the package's meta.json. */
function publish(
  dir: string,
  scope: string,
  name: string,
  version: string,
  tarball: Uint8Array,
): { id: string; status: string } & Record<string, unknown> {
  storeVersion(dir, scope, name, version, untar(gunzipSync(tarball)));
  return {
    id: crypto.randomUUID(),
    status: "success",
    packageScope: scope,
    packageName: name,
    packageVersion: version,
    error: null,
  };
}

/**
 * Stores the files of a directory tree as a published version, as if `deno publish` had sent
 * them (for tests that need a package in the registry but not the publish step itself). The
 * tree must hold a `deno.json` with `exports`.
 */
export function storeDirectory(
  registryDir: string,
  pkg: { scope: string; name: string; version: string },
  treeDir: string,
): void {
  const entries: TarEntry[] = [];
  const walk = (relative: string) => {
    for (const entry of Deno.readDirSync(join(treeDir, relative))) {
      const path = relative === "" ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (entry.isFile) entries.push({ path, bytes: Deno.readFileSync(join(treeDir, path)) });
    }
  };
  walk("");
  storeVersion(registryDir, pkg.scope, pkg.name, pkg.version, entries);
}

function storeVersion(
  dir: string,
  scope: string,
  name: string,
  version: string,
  entries: TarEntry[],
): void {
  const packageDir = join(dir, `@${scope}`, name);
  const manifest: Record<string, { size: number; checksum: string }> = {};
  let config: { exports?: string | Record<string, string> } = {};
  for (const entry of entries) {
    const path = entry.path.startsWith("/") ? entry.path : `/${entry.path}`;
    const target = join(packageDir, version, path);
    Deno.mkdirSync(dirname(target), { recursive: true });
    Deno.writeFileSync(target, entry.bytes);
    manifest[path] = { size: entry.bytes.byteLength, checksum: `sha256-${sha256(entry.bytes)}` };
    if (path === "/deno.json" || path === "/jsr.json") {
      config = JSON.parse(new TextDecoder().decode(entry.bytes));
    }
  }
  const exports = typeof config.exports === "string"
    ? { ".": config.exports }
    : config.exports ?? {};
  writeJson(join(packageDir, `${version}_meta.json`), { manifest, exports });
  const metaPath = join(packageDir, "meta.json");
  const meta = exists(metaPath)
    ? JSON.parse(Deno.readTextFileSync(metaPath))
    : { scope, name, versions: {} };
  meta.versions[version] = {};
  meta.latest = version;
  writeJson(metaPath, meta);
}

/**
 * The regular files of a ustar archive (what `deno publish` uploads), including GNU long names
 * ('L') and pax path records ('x'), which it may use for long paths.
 */
export function untar(archive: Uint8Array): TarEntry[] {
  const entries: TarEntry[] = [];
  const text = (start: number, length: number) =>
    new TextDecoder().decode(archive.subarray(start, start + length)).replace(/\0.*$/s, "");
  let offset = 0;
  let longName: string | undefined;
  // Bounded: every round moves past at least one 512-byte header.
  while (offset + 512 <= archive.byteLength) {
    if (archive.subarray(offset, offset + 512).every((byte) => byte === 0)) break;
    const size = parseInt(text(offset + 124, 12).trim() || "0", 8);
    const type = text(offset + 156, 1) || "0";
    const prefix = text(offset + 345, 155);
    const name = prefix === "" ? text(offset, 100) : `${prefix}/${text(offset, 100)}`;
    const body = archive.subarray(offset + 512, offset + 512 + size);
    if (type === "L") {
      longName = new TextDecoder().decode(body).replace(/\0.*$/s, "");
    } else if (type === "x") {
      longName = /\d+ path=([^\n]*)\n/.exec(new TextDecoder().decode(body))?.[1];
    } else {
      if (type === "0") entries.push({ path: longName ?? name, bytes: body.slice() });
      longName = undefined;
    }
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return entries;
}

function serveFile(dir: string, path: string): Response {
  if (path.split("/").includes("..")) return new Response("bad path", { status: 400 });
  try {
    const bytes = Deno.readFileSync(join(dir, path));
    const type = path.endsWith(".json") ? "application/json" : "application/typescript";
    return new Response(bytes, { headers: { "content-type": type } });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.IsADirectory) {
      return new Response("not found", { status: 404 });
    }
    throw error;
  }
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function writeJson(path: string, value: unknown): void {
  Deno.mkdirSync(dirname(path), { recursive: true });
  Deno.writeTextFileSync(path, JSON.stringify(value, null, 2));
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The lowercase hex SHA-256 of `bytes`. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
