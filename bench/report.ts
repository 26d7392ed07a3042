import { mkdirSync, writeFileSync } from 'node:fs';
import type { Summary } from './stats.ts';

/**
 * The targets, in one place (bench/README.md explains each). `ratio` targets judge the row's ratio;
 * `absolute` targets judge our median; `added` targets judge our median minus the baseline's (what ours adds on
 * top of the raw path, when a ratio of two small times would say little). `max` means lower is better, `min`
 * higher is better.
 */
export const TARGETS = {
  createDocker: { on: 'ratio', max: 1.0, text: 'ratio ≤ 1.0' },
  createGvisor: { on: 'ratio', max: 1.3, text: 'ratio ≤ 1.3' },
  warmClaim: { on: 'absolute', max: 50, text: 'median ≤ 50 ms' },
  exec: { on: 'absolute', max: 10, text: 'median ≤ 10 ms' },
  execFloor: { on: 'ratio', max: 1.5, text: 'ratio ≤ 1.5' },
  terminal: { on: 'absolute', min: 20, text: 'median ≥ 20 MB/s' },
  apiLatency: { on: 'ratio', max: 1.3, text: 'ratio ≤ 1.3' },
  apiThroughput: { on: 'ratio', min: 0.75, text: 'ratio ≥ 0.75' },
  idleMemory: { on: 'ratio', max: 1.5, text: 'ratio ≤ 1.5' },
  burst: { on: 'ratio', min: 0.8, text: 'ratio ≥ 0.8, 0 failures' },
  geomean: { on: 'ratio', max: 5, text: 'geomean ≤ 5' },
  apiMemory: { on: 'ratio', max: 1.5, text: 'ratio ≤ 1.5' },
  noGrowth: { on: 'ratio', max: 1.1, text: 'growth ≤ 10%' },
  egressThroughput: { on: 'ratio', min: 0.8, text: 'ratio ≥ 0.8' },
  egressLatency: { on: 'added', max: 2, text: 'added ≤ 2 ms' },
  templateRebuild: { on: 'absolute', max: 1000, text: 'median ≤ 1 s' },
  templateCreate: { on: 'ratio', max: 1.1, text: 'ratio ≤ 1.1' },
  pause: { on: 'ratio', max: 1.5, text: 'ratio ≤ 1.5' },
  resume: { on: 'ratio', max: 1.5, text: 'ratio ≤ 1.5' },
  pausedMemory: { on: 'absolute', max: 1, text: '≤ 1 MiB each' },
  e2bCreate: { on: 'ratio', max: 1.2, text: 'ratio ≤ 1.2' },
  clusterExec: { on: 'ratio', max: 1.3, text: 'ratio ≤ 1.3' },
  clusterCreate: { on: 'ratio', max: 1.3, text: 'ratio ≤ 1.3' },
} as const satisfies Record<
  string,
  { on: 'ratio' | 'absolute' | 'added'; max?: number; min?: number; text: string }
>;

export type TargetId = keyof typeof TARGETS;

/** One report row: ours beside the raw baseline measured in the same run, interleaved. */
export interface Row {
  name: string;
  unit: string;
  baselineName: string;
  ours?: Summary;
  baseline?: Summary;
  /** Usually ours.median / baseline.median; `ratioNote` says otherwise. */
  ratio?: number;
  ratioNote?: string;
  target?: TargetId;
  /**
   * Samples of ours that fail the target on their own; any failure misses it. Burst: creates that failed; paused
   * memory: sessions whose reading passed the bound (the target is on each one, not only the median).
   */
  failures?: number;
  /** Set when the row could not be measured. */
  skipped?: string;
  note?: string;
}

export const ratioOf = (ours: Summary, baseline: Summary) => ours.median / baseline.median;

/** What ours adds to the baseline at the median (for `added` targets). */
export const addedOf = (r: Pick<Row, 'ours' | 'baseline'>): number | undefined =>
  r.ours && r.baseline ? r.ours.median - r.baseline.median : undefined;

export function skippedRow(name: string, target: TargetId | undefined, reason: string): Row {
  return { name, unit: '', baselineName: '', ...(target ? { target } : {}), skipped: reason };
}

export type Verdict = 'met' | 'MISSED' | 'skipped' | '—';

export function verdict(r: Row): Verdict {
  if (r.skipped) return 'skipped';
  if (!r.target) return '—';
  const t: { on: string; max?: number; min?: number } = TARGETS[r.target];
  const value = t.on === 'ratio' ? r.ratio : t.on === 'added' ? addedOf(r) : r.ours?.median;
  if (value === undefined || !Number.isFinite(value)) return 'MISSED';
  if (t.max !== undefined && value > t.max) return 'MISSED';
  if (t.min !== undefined && value < t.min) return 'MISSED';
  if (r.failures !== undefined && r.failures > 0) return 'MISSED';
  return 'met';
}

const f = (x: number) =>
  Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2);
const signed = (x: number) => `${x < 0 ? '−' : '+'}${f(Math.abs(x))}`;
const fs = (s: Summary | undefined) =>
  s ? `${f(s.median)} (p95 ${f(s.p95)}, ${f(s.min)}–${f(s.max)}, n=${s.n})` : '—';

export function markdownTable(rows: readonly Row[]): string {
  const lines = [
    '| metric | ours: median (p95, min–max, n) | baseline: median (p95, min–max, n) | ratio | target | verdict |',
    '|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const target = r.target ? TARGETS[r.target].text : '—';
    if (r.skipped) {
      lines.push(`| ${r.name} | skipped: ${r.skipped} | | | ${target} | skipped |`);
      continue;
    }
    const added = addedOf(r);
    const ratio =
      (r.ratio === undefined ? '—' : `${r.ratio.toFixed(2)}×${r.ratioNote ? ` (${r.ratioNote})` : ''}`) +
      (r.target && TARGETS[r.target].on === 'added' && added !== undefined
        ? `; ${signed(added)} ${r.unit} added at the median`
        : '');
    const failures = r.failures === undefined ? '' : `, ${r.failures} failures`;
    lines.push(
      `| ${r.name} (${r.unit}) | ${fs(r.ours)}${failures} | ${r.baselineName}: ${fs(r.baseline)} | ${ratio} | ${target} | ${verdict(r)}${r.note ? ` (${r.note})` : ''} |`,
    );
  }
  return lines.join('\n');
}

/** A compact plain-text table for the terminal. */
export function textTable(rows: readonly Row[]): string {
  const cells = rows.map((r) => [
    r.name,
    r.skipped ? `skipped: ${r.skipped}` : r.ours ? `${f(r.ours.median)} ${r.unit}` : '—',
    r.baseline ? `${f(r.baseline.median)} ${r.unit}` : '',
    (r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}×`) +
      (r.target && TARGETS[r.target].on === 'added' && addedOf(r) !== undefined
        ? ` (${signed(addedOf(r) as number)} ${r.unit})`
        : ''),
    r.target ? TARGETS[r.target].text : '',
    verdict(r) + (r.failures ? ` (${r.failures} failures)` : ''),
  ]);
  const head = ['metric', 'ours median', 'baseline median', 'ratio', 'target', 'verdict'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] as string).length)));
  const line = (c: string[]) => c.map((x, i) => x.padEnd(widths[i] as number)).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * One bar per row judged on a ratio, normalised to its target: 1.0 is the target line, left of it is met.
 * For lower-is-better targets the bar is ratio / target; for higher-is-better, target / ratio.
 */
export function ratioSvg(rows: readonly Row[], title: string): string {
  const bars = rows
    .filter((r) => r.target && TARGETS[r.target].on === 'ratio')
    .map((r) => {
      const t: { max?: number; min?: number; text: string } = TARGETS[r.target as TargetId];
      const bound = (t.max ?? t.min) as number;
      const norm =
        r.ratio === undefined || r.skipped
          ? undefined
          : t.max !== undefined
            ? r.ratio / bound
            : bound / r.ratio;
      return { r, t, norm };
    });
  const rowH = 34;
  const left = 500;
  const width = 1140;
  const plotW = width - left - 250;
  // A log₂ axis from ¼ to at least 8× the target: bars past the right edge are clipped, their labels are not.
  const lo = 0.25;
  const hi = 2 ** Math.max(3, Math.ceil(Math.log2(Math.max(...bars.map((b) => b.norm ?? 1)))));
  const x = (v: number) =>
    left + ((Math.log2(Math.min(Math.max(v, lo), hi)) - Math.log2(lo)) / Math.log2(hi / lo)) * plotW;
  const top = 60;
  const height = top + bars.length * rowH + 56;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">`,
    `<title>${esc(title)}: each ratio against its target</title>`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="16" y="24" font-size="16" font-weight="bold">${esc(title)}</text>`,
    `<text x="16" y="44" fill="#555">Each bar: the ratio ÷ its target (target ÷ ratio for higher-is-better), log scale. Dashed line = target; bars past it MISSED.</text>`,
  ];
  bars.forEach(({ r, t, norm }, i) => {
    const y = top + i * rowH;
    parts.push(
      `<text x="${left - 8}" y="${y + 20}" text-anchor="end">${esc(r.name.length > 72 ? `${r.name.slice(0, 71)}…` : r.name)}</text>`,
    );
    if (norm === undefined) {
      parts.push(
        `<text x="${left + 4}" y="${y + 20}" fill="#888">skipped: ${esc((r.skipped ?? '').slice(0, 60))}</text>`,
      );
      return;
    }
    const met = verdict(r) === 'met';
    parts.push(
      `<rect x="${left}" y="${y + 6}" width="${Math.max(1, x(norm) - left).toFixed(1)}" height="20" fill="${met ? '#2e7d32' : '#c62828'}"/>`,
      `<text x="${(x(norm) + 6).toFixed(1)}" y="${y + 20}">${r.ratio?.toFixed(2)}× (${esc(t.text)}) ${met ? 'met' : 'MISSED'}</text>`,
    );
  });
  const bottom = top + bars.length * rowH;
  for (let v = lo; v <= hi; v *= 2) {
    parts.push(
      `<line x1="${x(v).toFixed(1)}" y1="${bottom}" x2="${x(v).toFixed(1)}" y2="${bottom + 5}" stroke="#999"/>`,
      `<text x="${x(v).toFixed(1)}" y="${bottom + 20}" text-anchor="middle" fill="#555">${v < 1 ? v.toFixed(2) : v}</text>`,
    );
  }
  parts.push(
    `<line x1="${x(1).toFixed(1)}" y1="${top - 4}" x2="${x(1).toFixed(1)}" y2="${bottom + 4}" stroke="#000" stroke-dasharray="5,4"/>`,
    `<text x="${x(1).toFixed(1)}" y="${bottom + 36}" text-anchor="middle">target</text>`,
    `<line x1="${left}" y1="${bottom}" x2="${left + plotW}" y2="${bottom}" stroke="#999"/>`,
    '</svg>',
  );
  return `${parts.join('\n')}\n`;
}

// --- Cleanup: everything a bench starts registers its undo here; it runs on error, at the end and on SIGINT.

const cleanups = new Set<() => Promise<unknown>>();

/** Registers `fn` to run at cleanup; returns a function that runs it now and unregisters it. */
export function onCleanup(fn: () => Promise<unknown>): () => Promise<void> {
  cleanups.add(fn);
  return async () => {
    if (!cleanups.delete(fn)) return;
    await fn().catch(() => undefined);
  };
}

let cleaning: Promise<void> | undefined;

/**
 * Runs every registered cleanup, newest first. A second caller while they run (Ctrl-C during the end of a run, or
 * the run's own `finally` during Ctrl-C's) waits for the same ones to finish instead of finding nothing left to do.
 */
export function runCleanups(): Promise<void> {
  cleaning ??= (async () => {
    const fns = [...cleanups].reverse();
    cleanups.clear();
    for (const fn of fns) await fn().catch(() => undefined);
  })().finally(() => {
    cleaning = undefined;
  });
  return cleaning;
}

export interface Report {
  at: string;
  quick: boolean;
  wallSeconds: number;
  machine?: string;
  rows: Row[];
}

/** Writes latest.json, latest.md and ratios.svg into `dir`. */
export function writeReports(dir: string, report: Report): void {
  const { at, quick, wallSeconds, machine, rows } = report;
  const title = `Claude Studio benchmarks, ${at} (${quick ? 'quick' : 'full'}, ${wallSeconds} s)`;
  const missed = rows.filter((r) => verdict(r) === 'MISSED').map((r) => r.name);
  const skipped = rows.filter((r) => verdict(r) === 'skipped').map((r) => r.name);
  mkdirSync(dir, { recursive: true });
  const json = {
    at,
    quick,
    wallSeconds,
    machine,
    targets: TARGETS,
    rows: rows.map((r) => ({ ...r, verdict: verdict(r) })),
  };
  writeFileSync(`${dir}/latest.json`, `${JSON.stringify(json, null, 2)}\n`);
  const summary = [
    `# ${title}`,
    '',
    'Generated by `npm run bench`; how to read it: [bench/README.md](../README.md). Every pair is measured in the same run, interleaved (ours and the raw baseline alternate per iteration).',
    '',
    ...(machine ? [`Machine: ${machine}.`, ''] : []),
    markdownTable(rows),
    '',
    missed.length
      ? `**Targets MISSED (${missed.length}):** ${missed.join('; ')}.`
      : '**Every measured target met.**',
    ...(skipped.length ? ['', `**Skipped (${skipped.length}):** ${skipped.join('; ')}.`] : []),
    '',
    '![ratios against their targets](ratios.svg)',
    '',
  ].join('\n');
  writeFileSync(`${dir}/latest.md`, summary);
  writeFileSync(`${dir}/ratios.svg`, ratioSvg(rows, title));
}
