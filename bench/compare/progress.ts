/**
 * Progress of the comparison harness on stderr, with an estimate of the time left.
 *
 * @module
 */

const encoder = new TextEncoder();

/** Writes one line of progress to stderr. */
export function say(text: string): void {
  Deno.stderr.writeSync(encoder.encode(`[compare] ${text}\n`));
}

/** Seconds as `m:ss`. */
export function clock(seconds: number): string {
  const whole = Math.max(0, Math.round(seconds));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

/** Estimates the time left from nominal workload durations, corrected by what was measured. */
export class Progress {
  #start = performance.now();
  #nominal: Map<string, number>;
  #done = new Map<string, number>();
  #current: { id: string; started: number; rounds: number } | undefined;

  /** `nominal`: the expected seconds of every workload that will run, by id. */
  constructor(nominal: Map<string, number>) {
    this.#nominal = nominal;
  }

  /** A workload starts. */
  begin(id: string, title: string, rounds: number): void {
    this.#current = { id, started: performance.now(), rounds };
    say(`${title}: warm-up, then ${rounds} rounds (${this.#status(0)})`);
  }

  /** A round of the current workload starts. */
  round(title: string, round: number): void {
    say(`${title}: round ${round + 1}/${this.#current?.rounds} (${this.#status(round)})`);
  }

  /** A workload ended. */
  end(id: string): void {
    if (this.#current?.id === id) {
      this.#done.set(id, (performance.now() - this.#current.started) / 1000);
    }
    this.#current = undefined;
  }

  #status(roundsDone: number): string {
    const elapsed = (performance.now() - this.#start) / 1000;
    let nominalDone = 0;
    let actualDone = 0;
    for (const [id, seconds] of this.#done) {
      nominalDone += this.#nominal.get(id) ?? 0;
      actualDone += seconds;
    }
    const scale = nominalDone > 0 ? actualDone / nominalDone : 1;
    let left = 0;
    for (const [id, seconds] of this.#nominal) {
      if (this.#done.has(id) || this.#current?.id === id) continue;
      left += seconds * scale;
    }
    const current = this.#current;
    if (current !== undefined) {
      const spent = (performance.now() - current.started) / 1000;
      const nominal = (this.#nominal.get(current.id) ?? 0) * scale;
      left += roundsDone > 0
        ? (spent / roundsDone) * (current.rounds - roundsDone)
        : Math.max(0, nominal - spent);
    }
    return `elapsed ${clock(elapsed)}, about ${clock(left)} left`;
  }
}
