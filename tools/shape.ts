/**
 * Checks the shape rules of the code base: no library or tool source file over 500 lines, no
 * library function over 70 lines, no import loop among the package's modules.
 *
 *   deno run --allow-read --allow-run tools/shape.ts [--json] [FILE...]
 *
 * Without files it checks every `.ts` and `.zig` file of `mod.ts`, `ffi/`, `workers/`, `cli/`,
 * `zig/src/` and `tools/` (tests and benchmarks may be longer: a test's table of cases is not a
 * function to read at once; their files are held to the line limit only). Function lengths are
 * found from the formatted layout (`deno fmt`, `zig fmt`): a declaration starts a function, the
 * first line at the same indentation that closes the brace ends it. Exits 1 when a rule is broken,
 * naming each file and function.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join, relative } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";

/** Longest source file, in lines. */
const FILE_LINES_MAX = 500;
/** Longest library function, in lines (TigerBeetle's limit). */
const FUNCTION_LINES_MAX = 70;

const root = fromFileUrl(new URL("..", import.meta.url));
const LIBRARY_DIRECTORIES = ["ffi", "workers", "cli", "zig/src", "tools"];
const OTHER_DIRECTORIES = ["tests", "bench"];

/** One broken rule. */
interface Finding {
  file: string;
  rule: "file-lines" | "function-lines" | "import-loop";
  detail: string;
}

const ZIG_FUNCTION = /^(\s*)(pub\s+)?(export\s+)?(inline\s+)?fn\s+(\w+)\s*\(/;
const TS_FUNCTION =
  /^(\s*)(export\s+)?(default\s+)?(async\s+)?function\*?\s+(\w+)|^(\s*)(export\s+)?const\s+(\w+)\s*=\s*(async\s+)?(\([^)]*\)|\w+)\s*(:\s*[^=]+)?=>\s*\{\s*$/;
const TS_METHOD =
  /^(\s+)((?:static|private|public|protected|async|override|get|set)\s+)*(#?\w+)\s*(<.*>)?\(.*$/;
const NOT_METHOD = new Set([
  "if",
  "for",
  "while",
  "switch",
  "catch",
  "return",
  "await",
  "throw",
  "super",
  "new",
  "typeof",
  "function",
]);

/** Functions longer than the limit in one file's text. */
export function longFunctions(
  text: string,
  zig: boolean,
  limit: number = FUNCTION_LINES_MAX,
): { name: string; line: number; lines: number }[] {
  const lines = text.split("\n");
  const found: { name: string; line: number; lines: number }[] = [];
  for (let index = 0; index < lines.length; index++) {
    const start = declaration(lines[index], zig);
    // A one-line body, or a Zig function returning a type (a generic: a namespace, not code).
    if (start === undefined || /\}\s*;?\s*$/.test(lines[index])) continue;
    if (zig && /\)\s*type\s*\{\s*$/.test(lines[index])) continue;
    const end = closingLine(lines, index, start.indent);
    if (end === undefined) continue;
    const length = end - index + 1;
    if (length > limit) {
      found.push({ name: start.name, line: index + 1, lines: length });
    }
  }
  return found;
}

function declaration(line: string, zig: boolean): { name: string; indent: string } | undefined {
  if (zig) {
    const match = ZIG_FUNCTION.exec(line);
    return match ? { name: match[5], indent: match[1] } : undefined;
  }
  const fn = TS_FUNCTION.exec(line);
  if (fn) return { name: fn[5] ?? fn[8], indent: fn[1] ?? fn[6] ?? "" };
  const method = TS_METHOD.exec(line);
  const end = line.trimEnd();
  // A call also looks like this; a declaration's line ends its signature or opens its body.
  if (!method || NOT_METHOD.has(method[3]) || line.includes("=>")) return undefined;
  if (!end.endsWith("{") && !end.endsWith("(")) return undefined;
  return { name: method[3], indent: method[1] };
}

/** The index of the line that closes the body opened at or after `from`, or undefined. */
function closingLine(lines: string[], from: number, indent: string): number | undefined {
  // A signature may wrap: its body then opens on the line that closes the parameter list at the
  // declaration's indentation (the layout the formatters give).
  let open = from;
  if (!lines[from].trimEnd().endsWith("{")) {
    open = from + 1;
    while (open < lines.length && open < from + 40 && !lines[open].startsWith(indent + ")")) open++;
    if (open >= lines.length || !lines[open].trimEnd().endsWith("{")) return undefined;
  }
  for (let index = open + 1; index < lines.length; index++) {
    const line = lines[index];
    if (line.startsWith(indent + "}") && !line.startsWith(indent + " ")) return index;
  }
  return undefined;
}

async function sourceFiles(directories: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const directory of directories) {
    for await (const entry of walk(join(root, directory))) files.push(entry);
  }
  return files.filter((file) => /\.(ts|zig)$/.test(file) && !file.includes("/prebuilt/"));
}

async function* walk(directory: string): AsyncGenerator<string> {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(directory)];
  } catch {
    return;
  }
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(directory, entry.name);
    if (entry.isDirectory && !entry.name.startsWith(".") && entry.name !== "zig-out") {
      yield* walk(path);
    } else if (entry.isFile) yield path;
  }
}

function checkFile(file: string, library: boolean): Finding[] {
  const text = Deno.readTextFileSync(file);
  const name = relative(root, file);
  const findings: Finding[] = [];
  const lineCount = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
  if (lineCount > FILE_LINES_MAX) {
    findings.push({ file: name, rule: "file-lines", detail: `${lineCount} lines` });
  }
  if (!library) return findings;
  for (const fn of longFunctions(text, file.endsWith(".zig"))) {
    findings.push({
      file: name,
      rule: "function-lines",
      detail: `${fn.name} (line ${fn.line}): ${fn.lines} lines`,
    });
  }
  return findings;
}

/** Import loops among the modules reachable from the package's exports (`deno info --json`). */
async function importLoops(): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (const entry of ["mod.ts", "cli/main.ts", "workers/worker.ts"]) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", join(root, entry)],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    if (!output.success) throw new Error(`deno info ${entry} failed`);
    const graph = JSON.parse(new TextDecoder().decode(output.stdout)) as {
      modules: {
        specifier: string;
        dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
      }[];
    };
    const edges = new Map<string, string[]>();
    for (const module of graph.modules) {
      if (!module.specifier.startsWith("file:")) continue;
      // Type-only imports count too: a loop of types is still a loop to read.
      const targets = (module.dependencies ?? []).flatMap((dependency) => [
        dependency.code?.specifier,
        dependency.type?.specifier,
      ]).filter((target): target is string => target?.startsWith("file:") === true);
      edges.set(module.specifier, targets);
    }
    for (const loop of cycles(edges)) {
      const names = loop.map((specifier) => relative(root, fromFileUrl(specifier)));
      findings.push({ file: names[0], rule: "import-loop", detail: names.join(" -> ") });
    }
  }
  const seen = new Set<string>();
  return findings.filter((finding) => !seen.has(finding.detail) && seen.add(finding.detail));
}

/** One loop per strongly connected group of modules (depth-first search, bounded by the graph). */
function cycles(edges: Map<string, string[]>): string[][] {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const loops: string[][] = [];
  const visit = (node: string): void => {
    state.set(node, "open");
    stack.push(node);
    for (const next of edges.get(node) ?? []) {
      if (state.get(next) === "open") {
        loops.push([...stack.slice(stack.indexOf(next)), next]);
      } else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, "done");
  };
  for (const node of [...edges.keys()].sort()) if (!state.has(node)) visit(node);
  return loops;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { json: { type: "boolean", default: false } },
    allowPositionals: true,
  });
  const library = positionals.length > 0
    ? positionals.map((file) => join(Deno.cwd(), file))
    : [join(root, "mod.ts"), ...await sourceFiles(LIBRARY_DIRECTORIES)];
  const others = positionals.length > 0 ? [] : await sourceFiles(OTHER_DIRECTORIES);
  const findings = [
    ...library.flatMap((file) => checkFile(file, true)),
    ...others.flatMap((file) => checkFile(file, false)),
    ...(positionals.length > 0 ? [] : await importLoops()),
  ];
  if (values.json) console.log(JSON.stringify(findings, null, 2));
  else {
    for (const finding of findings) {
      console.log(`${finding.rule}: ${finding.file}: ${finding.detail}`);
    }
    console.log(
      `shape: ${library.length + others.length} files checked, ${findings.length} finding(s)`,
    );
  }
  Deno.exit(findings.length === 0 ? 0 : 1);
}
