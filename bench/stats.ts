/** Summary of a sample in milliseconds (or any unit): median and p95 by nearest rank. */
export interface Summary {
  n: number;
  median: number;
  p95: number;
  min: number;
  max: number;
}

export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) throw new Error('no samples');
  const s = [...samples].sort((a, b) => a - b);
  const rank = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] as number;
  return {
    n: s.length,
    median: rank(0.5),
    p95: rank(0.95),
    min: s[0] as number,
    max: s[s.length - 1] as number,
  };
}

/** Progress on stderr for long runs: every step when n ≤ 20, else every tenth. */
export function progress(label: string, i: number, n: number): void {
  if (n <= 20 || i === n || i % Math.ceil(n / 10) === 0) process.stderr.write(`[bench] ${label} ${i}/${n}\n`);
}

/**
 * Ours and the raw baseline measured side by side: each iteration runs both, alternating which goes first,
 * so drift on a busy machine hits both equally. `measure` returns the elapsed time (or rate) of one run;
 * `warmup` iterations of each are run first and discarded.
 */
export async function interleaved(
  label: string,
  n: number,
  ours: () => Promise<number>,
  raw: () => Promise<number>,
  warmup = 1,
): Promise<{ ours: number[]; raw: number[] }> {
  const out = { ours: [] as number[], raw: [] as number[] };
  for (let i = 0; i < n + warmup; i++) {
    const pair = i % 2 === 0 ? ([ours, raw] as const) : ([raw, ours] as const);
    const a = await pair[0]();
    const b = await pair[1]();
    if (i < warmup) continue;
    const [o, r] = i % 2 === 0 ? [a, b] : [b, a];
    out.ours.push(o);
    out.raw.push(r);
    progress(label, i - warmup + 1, n);
  }
  return out;
}

/** Times `measure` only; `after` (cleanup, e.g. destroy) runs outside the clock. */
export function timed<T>(measure: () => Promise<T>, after: (value: T) => Promise<unknown>) {
  return async (): Promise<number> => {
    const t = performance.now();
    const value = await measure();
    const elapsed = performance.now() - t;
    await after(value);
    return elapsed;
  };
}

export const elapsed = (fn: () => Promise<unknown>) => timed(fn, async () => undefined);

export const geomean = (xs: readonly number[]): number =>
  Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
