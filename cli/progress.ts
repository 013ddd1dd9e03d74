/**
 * A one-line progress display on stderr: bytes per second, bytes done, time left, bad ranges.
 * Drawn only when stderr is a terminal, at most five times a second; silent otherwise, so
 * scripts and logs see only the results.
 *
 * Our own forty lines rather than an npm bar: the npm bars write through Node's
 * `process.stderr` and its TTY width detection, which is one more compatibility layer for a
 * single line we redraw with `\r`, and none of them knows about bad ranges.
 *
 * @module
 */
import { formatBytes, formatDuration } from "./units.ts";

const REDRAW_MS = 200;
const encoder = new TextEncoder();

/**
 * Progress of one command over `total` bytes.
 *
 * @example
 * ```ts
 * import { Progress } from "./progress.ts";
 * const progress = new Progress("scan", 1 << 20);
 * progress.update(1 << 19, 0);
 * progress.done();
 * ```
 */
export class Progress {
  readonly #label: string;
  readonly #total: number;
  readonly #started = performance.now();
  readonly #enabled: boolean;
  #drawn = 0;
  #lastWidth = 0;

  /** `enabled` defaults to whether stderr is a terminal. */
  constructor(label: string, total: number, enabled: boolean = Deno.stderr.isTerminal()) {
    this.#label = label;
    this.#total = total;
    this.#enabled = enabled;
  }

  /** Records `done` bytes of the total and `bad` bad ranges so far; redraws when due. */
  update(done: number, bad: number): void {
    if (!this.#enabled) return;
    const now = performance.now();
    if (now - this.#drawn < REDRAW_MS) return;
    this.#drawn = now;
    this.#draw(done, bad, now);
  }

  /** Clears the line (the command prints its own summary after). */
  done(): void {
    if (!this.#enabled || this.#lastWidth === 0) return;
    Deno.stderr.writeSync(encoder.encode(`\r${" ".repeat(this.#lastWidth)}\r`));
    this.#lastWidth = 0;
  }

  #draw(done: number, bad: number, now: number): void {
    const seconds = (now - this.#started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const left = rate > 0 ? (this.#total - done) / rate : Infinity;
    const percent = this.#total > 0 ? (100 * done) / this.#total : 100;
    const line = `${this.#label}: ${percent.toFixed(1)}%  ${formatBytes(done)} of ` +
      `${formatBytes(this.#total)}  ${formatBytes(rate)}/s  ${formatDuration(left)} left  ` +
      `${bad} bad range${bad === 1 ? "" : "s"}`;
    const padded = line.padEnd(this.#lastWidth);
    this.#lastWidth = line.length;
    Deno.stderr.writeSync(encoder.encode(`\r${padded}`));
  }
}
