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

export async function sample(n: number, fn: () => Promise<unknown>, warmup = 3): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

/** Like {@link sample}, but times only `measure`; `after` (cleanup, e.g. destroy) runs outside the clock. */
export async function sampleWith<T>(
  n: number,
  measure: () => Promise<T>,
  after: (value: T) => Promise<unknown>,
  warmup = 1,
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n + warmup; i++) {
    const t = performance.now();
    const value = await measure();
    const elapsed = performance.now() - t;
    await after(value);
    if (i >= warmup) out.push(elapsed);
  }
  return out;
}

/** One benchmark row: ours beside the raw baseline measured in the same run. */
export interface Row {
  name: string;
  unit: string;
  ours: Summary;
  baseline: Summary;
  baselineName: string;
}

export function formatRows(rows: readonly Row[]): string {
  const f = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(2));
  const lines = [
    '| measure | ours median | ours p95 | baseline | baseline median | baseline p95 | ratio (median) |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.name} (${r.unit}) | ${f(r.ours.median)} | ${f(r.ours.p95)} | ${r.baselineName} | ${f(r.baseline.median)} | ${f(r.baseline.p95)} | ${(r.ours.median / r.baseline.median).toFixed(2)}× |`,
    );
  }
  return lines.join('\n');
}
