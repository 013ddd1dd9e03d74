/**
 * Facts about the machine for the comparison harness: CPU, memory, file system and load for the
 * report, the CPU a process ran on, and the sectors a block device wrote.
 *
 * @module
 */
import { GIB } from "./options.ts";

/** The trimmed standard output of a command, or undefined when it fails or does not exist. */
export async function commandText(command: string, args: string[]): Promise<string | undefined> {
  try {
    const output = await new Deno.Command(command, { args, stdout: "piped", stderr: "null" })
      .output();
    return output.success ? new TextDecoder().decode(output.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

/** What the machine looked like when the run started: load and free memory. */
export interface StartState {
  /** Load averages over 1, 5 and 15 minutes. */
  loadavg: number[];
  /** Memory available, in bytes. */
  availableBytes: number;
}

/** The machine's load and free memory now. */
export function startState(): StartState {
  return { loadavg: Deno.loadavg(), availableBytes: Deno.systemMemoryInfo().available };
}

/** The report's lines about the machine: CPU and memory, kernel and file system, load. */
export async function machineFacts(dir: string, start: StartState): Promise<string[]> {
  const lscpu = (await commandText("lscpu", [])) ?? "";
  const field = (name: string): string | undefined =>
    lscpu.split("\n").find((line) => line.startsWith(`${name}:`))?.split(":").slice(1).join(":")
      .trim();
  const memory = Deno.systemMemoryInfo();
  const fs = (await commandText("findmnt", ["-no", "FSTYPE,SOURCE", "-T", dir]))
    ?.replace(/\s+/g, " ");
  const thp = readText("/sys/kernel/mm/transparent_hugepage/enabled") ??
    (await commandText("cat", ["/sys/kernel/mm/transparent_hugepage/enabled"]));
  const loads = (values: number[]): string => values.map((load) => load.toFixed(2)).join(", ");
  return [
    `Machine: ${field("Model name") ?? "unknown CPU"}` +
    `${field("Hypervisor vendor") ? ` (${field("Hypervisor vendor")} guest)` : ""}, ` +
    `${navigator.hardwareConcurrency} cores, L2 ${field("L2 cache") ?? "?"}, ` +
    `L3 ${field("L3 cache") ?? "?"}, ${(memory.total / GIB).toFixed(0)} GiB RAM ` +
    `(${(start.availableBytes / GIB).toFixed(1)} GiB available at the start)`,
    `Linux ${Deno.osRelease()}; files in ${dir} on ${fs ?? "?"}; transparent huge pages: ${
      thp ?? "?"
    }`,
    `Load average (1, 5, 15 min) at the start: ${loads(start.loadavg)}; at the end: ` +
    `${loads(Deno.loadavg())}. The machine is shared: other sessions' work may have run ` +
    "during the run.",
  ];
}

/** `/sys/class/block/NAME/stat` of the device holding `dir`, when it is a plain block device. */
export async function blockStatPath(dir: string): Promise<string | undefined> {
  const source = (await commandText("findmnt", ["-no", "SOURCE", "-T", dir]))?.trim();
  if (source === undefined || !source.startsWith("/dev/")) return undefined;
  return `/sys/class/block/${source.slice("/dev/".length)}/stat`;
}

/** Sectors (512 B) the device has written since boot, or undefined. */
export async function sectorsWritten(statPath: string | undefined): Promise<number | undefined> {
  if (statPath === undefined) return undefined;
  // Through cat: Deno allows reads under /sys only with --allow-all.
  const fields = (await commandText("cat", [statPath]))?.trim().split(/\s+/);
  const value = Number(fields?.[6]);
  return Number.isFinite(value) ? value : undefined;
}

/** The CPU each process last ran on (`ps -o psr`), or undefined when ps is not available. */
export async function processorsOf(pids: number[]): Promise<number[] | undefined> {
  const text = await commandText("ps", ["-o", "psr=", "-p", pids.join(",")]);
  if (text === undefined) return undefined;
  return text.split("\n").map((line) => Number(line.trim())).filter((n) => Number.isInteger(n));
}
