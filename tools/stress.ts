/**
 * Runs every stress script in tests/stress/ (the long versions, one after the other) and
 * rewrites the table of README.md's "Reliability under load" section, between the markers
 * `<!-- stress-table:begin -->` and `<!-- stress-table:end -->`: one row per script with the
 * load it held, the faults injected, what was checked, the result, the duration, and the date
 * and commit of the run. Rows of scripts not run this time are kept as they were.
 *
 *   tools/dev stress [--short] [--only NAME[,NAME]] [--no-readme]
 *
 * `--short` runs the CI durations; `--no-readme` prints the table without writing README.md.
 * Exits non-zero when a script failed.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import {
  DEFAULT_SECONDS,
  runFailure,
  runScript,
  type ScriptRun,
  SECONDS,
  stressScripts,
} from "../tests/stress/_plan.ts";

const BEGIN = "<!-- stress-table:begin -->";
const END = "<!-- stress-table:end -->";
const HEADER = [
  "| experiment | load held | faults injected | checked | result | duration | run |",
  "| --- | --- | --- | --- | --- | --- | --- |",
];
const root = fileURLToPath(new URL("..", import.meta.url));
const readmePath = `${root}README.md`;

const short = Deno.args.includes("--short");
const writeReadme = !Deno.args.includes("--no-readme");
const onlyIndex = Deno.args.indexOf("--only");
const only = onlyIndex >= 0 ? Deno.args[onlyIndex + 1]?.split(",") : undefined;
const names = stressScripts().filter((name) => only === undefined || only.includes(name));
if (names.length === 0) throw new Error(`no stress script matches ${only?.join(",")}`);

const commit = describeCommit();
const rows = new Map<string, string>();
let failures = 0;
for (const name of names) {
  const seconds = (SECONDS[name] ?? DEFAULT_SECONDS)[short ? "short" : "long"];
  console.error(`[stress] ${name}: up to about ${seconds} s`);
  const run = await runScript(name, seconds, seconds * 4 + 120);
  const failure = runFailure(run);
  if (failure !== undefined) failures++;
  console.error(`[stress] ${name}: ${failure ?? "ok"} (${run.seconds} s)`);
  if (run.result !== undefined) console.log(JSON.stringify(run.result));
  rows.set(name, row(name, run, failure, short));
}

const table = mergeTable(rows);
if (writeReadme) {
  const readme = Deno.readTextFileSync(readmePath);
  const begin = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (begin < 0 || end < begin) throw new Error(`README.md has no ${BEGIN} ... ${END} markers`);
  Deno.writeTextFileSync(
    readmePath,
    `${readme.slice(0, begin + BEGIN.length)}\n\n${table}\n\n${readme.slice(end)}`,
  );
  // The repository's formatter aligns the table; CI checks it (deno fmt --check).
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", readmePath] }).output();
  console.error(`[stress] README.md table rewritten (${rows.size} rows run, commit ${commit})`);
} else {
  console.log(table);
}
Deno.exit(failures === 0 ? 0 : 1);

/** One table row for `name`'s run. */
function row(name: string, run: ScriptRun, failure: string | undefined, isShort: boolean): string {
  const field = (key: string) => String(run.result?.[key] ?? "—");
  const result = failure === undefined ? "pass" : `**FAIL**: ${failure}`;
  const date = new Date().toISOString().slice(0, 16).replace("T", " ");
  const cells = [
    `\`${name}\`${isShort ? " (short)" : ""}`,
    field("load"),
    field("faults"),
    field("checked"),
    result,
    `${run.seconds} s`,
    `${date} UTC, \`${commit}\``,
  ];
  return `| ${cells.map(cell).join(" | ")} |`;
}

/** A table cell: one line, pipes escaped, at most 600 characters. */
function cell(text: string): string {
  const line = text.replace(/\s+/g, " ").replaceAll("|", "\\|");
  return line.length > 600 ? `${line.slice(0, 597)}...` : line;
}

/** The new table: this run's rows, plus the earlier rows of scripts not run this time. */
function mergeTable(fresh: Map<string, string>): string {
  const kept = new Map<string, string>();
  let readme = "";
  try {
    readme = Deno.readTextFileSync(readmePath);
  } catch {
    readme = "";
  }
  const section = readme.slice(readme.indexOf(BEGIN) + BEGIN.length, readme.indexOf(END));
  for (const line of section.split("\n")) {
    const name = line.match(/^\| `([a-z0-9_]+)`/)?.[1];
    if (name !== undefined && stressScripts().includes(name)) kept.set(name, line);
  }
  for (const [name, line] of fresh) kept.set(name, line);
  const ordered = [...kept.keys()].sort().map((name) => kept.get(name)!);
  return [...HEADER, ...ordered].join("\n");
}

/** The short commit hash, with `+changes` when the working tree differs from it. */
function describeCommit(): string {
  const git = (...args: string[]) =>
    new TextDecoder().decode(
      new Deno.Command("git", { args, cwd: root, stderr: "null" }).outputSync().stdout,
    ).trim();
  const hash = git("rev-parse", "--short", "HEAD") || "unknown";
  // README.md is what this script writes: its changes do not make the code differ.
  const changes = git("status", "--porcelain", "--untracked-files=no").split("\n")
    .filter((line) => line.trim() !== "" && !line.endsWith("README.md"));
  return changes.length > 0 ? `${hash}+changes` : hash;
}
