import type { Sandbox } from '@studio/isolation';
import { AppError } from '../core/errors.ts';

/** The most matches one search returns; past it the answer says `truncated`. */
export const MAX_SEARCH_MATCHES = 500;
/** The most matches kept per file (ripgrep's `--max-count`). */
export const MAX_MATCHES_PER_FILE = 50;
/** The most characters of a matching line returned (a window around the first match past it). */
export const MAX_SEARCH_LINE = 300;
/** How long ripgrep may run. */
export const SEARCH_TIMEOUT_MS = 10_000;
// Searched by its absolute path: the template's working directory (the exec default) may be below it.
const WORKSPACE = '/workspace';
// ripgrep's JSON is about ten times the text it reports: enough for the matches above, bounded all the same.
const MAX_SEARCH_OUTPUT = 4 * 1024 * 1024;

/** One matching line: its number, its text (maybe a window of it) and the matches in it as [start, end) offsets. */
export interface SearchMatch {
  line: number;
  text: string;
  ranges: [number, number][];
}

/** A file's matches, by workspace path (relative to /workspace, as `files.read` takes it). */
export interface SearchFile {
  path: string;
  matches: SearchMatch[];
}

/** What `files.search` answers. */
export interface SearchResult {
  files: SearchFile[];
  /** Matches counted in the answer. */
  matchCount: number;
  /** True when there were more matches than returned (or ripgrep's output or time ran out). */
  truncated: boolean;
}

/** The search options `files.search` passes through. */
export interface SearchOptions {
  query: string;
  caseSensitive: boolean;
  regex: boolean;
}

/**
 * ripgrep's argv for a search of the workspace: JSON output, the query as the one pattern after `-e` (never read
 * as an option, never through a shell), literal unless `regex`, files over 1 MiB and .git skipped, the
 * workspace's .gitignore honoured; no user or project config read.
 */
export function ripgrepArgs(options: SearchOptions): string[] {
  return [
    'rg',
    '--json',
    '--no-config',
    // The workspace's .gitignore counts even where the workspace is not a git repository (node_modules, builds).
    '--no-require-git',
    '--max-count',
    String(MAX_MATCHES_PER_FILE),
    '--max-filesize',
    '1M',
    '--glob',
    '!.git',
    options.caseSensitive ? '--case-sensitive' : '--ignore-case',
    ...(options.regex ? [] : ['--fixed-strings']),
    '-e',
    options.query,
    '--',
    WORKSPACE,
  ];
}

const decoder = new TextDecoder('utf-8');

// ripgrep writes text as { text } when it is UTF-8 and { bytes } (base64) when not.
function textOf(value: unknown): string | null {
  if (typeof value !== 'object' || value === null) return null;
  const v = value as { text?: unknown; bytes?: unknown };
  if (typeof v.text === 'string') return v.text;
  if (typeof v.bytes === 'string') return decoder.decode(Buffer.from(v.bytes, 'base64'));
  return null;
}

// ripgrep's submatch offsets count UTF-8 bytes; the answer counts UTF-16 code units (JavaScript strings).
function charOffset(line: string, byteOffset: number): number {
  return decoder.decode(Buffer.from(line, 'utf8').subarray(0, byteOffset)).length;
}

/** A line cut to {@link MAX_SEARCH_LINE} characters around its first match, ranges moved and clipped to match. */
export function windowLine(
  text: string,
  ranges: [number, number][],
): { text: string; ranges: [number, number][] } {
  if (text.length <= MAX_SEARCH_LINE) return { text, ranges };
  const first = ranges[0]?.[0] ?? 0;
  const start = Math.max(0, Math.min(first - 40, text.length - MAX_SEARCH_LINE));
  const end = start + MAX_SEARCH_LINE;
  const clipped = ranges
    .filter(([s]) => s < end)
    .map(([s, e]): [number, number] => [Math.max(0, s - start), Math.min(e, end) - start]);
  return { text: text.slice(start, end), ranges: clipped };
}

/**
 * ripgrep's `--json` output as files and matches, in its order: at most {@link MAX_SEARCH_MATCHES} matches
 * (then `truncated`), each line without its line break and cut to {@link MAX_SEARCH_LINE} characters. Lines that
 * are not whole JSON (the output cut at its cap) are skipped.
 */
export function parseRipgrepJson(output: string): SearchResult {
  const files: SearchFile[] = [];
  const byPath = new Map<string, SearchFile>();
  let matchCount = 0;
  let truncated = false;
  for (const raw of output.split('\n')) {
    if (raw === '') continue;
    let event: { type?: unknown; data?: Record<string, unknown> };
    try {
      event = JSON.parse(raw) as typeof event;
    } catch {
      truncated = true;
      continue;
    }
    if (event.type !== 'match' || !event.data) continue;
    if (matchCount >= MAX_SEARCH_MATCHES) {
      truncated = true;
      break;
    }
    const rawPath = textOf(event.data.path);
    const rawLine = textOf(event.data.lines);
    const lineNumber = event.data.line_number;
    if (rawPath === null || rawLine === null || typeof lineNumber !== 'number') continue;
    const path = rawPath.startsWith(`${WORKSPACE}/`)
      ? rawPath.slice(WORKSPACE.length + 1)
      : rawPath.replace(/^(?:\.\/)+/, '');
    const line = rawLine.replace(/\r?\n$/, '');
    const submatches = Array.isArray(event.data.submatches) ? event.data.submatches : [];
    const ranges = submatches
      .map((m: unknown): [number, number] | null => {
        const { start, end } = (m ?? {}) as { start?: unknown; end?: unknown };
        if (typeof start !== 'number' || typeof end !== 'number') return null;
        return [charOffset(line, start), charOffset(line, end)];
      })
      .filter((r): r is [number, number] => r !== null);
    let file = byPath.get(path);
    if (!file) {
      file = { path, matches: [] };
      byPath.set(path, file);
      files.push(file);
    }
    file.matches.push({ line: lineNumber, ...windowLine(line, ranges) });
    matchCount++;
  }
  return { files, matchCount, truncated };
}

/**
 * Runs ripgrep in the session's sandbox (as its user, in /workspace, through the same exec path as `exec.run`)
 * and parses its answer. Exit 1 is "no match"; exit 2 with nothing found is a bad pattern (INPUT_INVALID, with
 * ripgrep's words for the fault); a timeout returns what was found so far, marked truncated.
 */
export async function searchWorkspace(sandbox: Sandbox, options: SearchOptions): Promise<SearchResult> {
  const result = await sandbox.exec(ripgrepArgs(options), {
    timeoutMs: SEARCH_TIMEOUT_MS,
    maxOutputBytes: MAX_SEARCH_OUTPUT,
  });
  const parsed = parseRipgrepJson(decoder.decode(result.stdout));
  if (result.exitCode === 127 || (result.exitCode === 126 && parsed.matchCount === 0)) {
    throw new AppError('UNSUPPORTED', "this session's image has no ripgrep (rg): search needs it");
  }
  if (result.exitCode === 2 && parsed.matchCount === 0 && !result.timedOut) {
    const stderr = decoder.decode(result.stderr);
    // rg exits 2 for unreadable files too, alongside its matches; with none, the pattern is the likely cause.
    // Its message: "regex parse error:", the pattern with a caret under the fault, then "error: <what>".
    if (options.regex && /regex parse error|error parsing regex/i.test(stderr)) {
      const what = /^error: (.+)$/m.exec(stderr)?.[1]?.trim() ?? 'ripgrep could not read it';
      throw new AppError(
        'INPUT_INVALID',
        `the search is not a valid regular expression: ${what.slice(0, 300)}`,
      );
    }
  }
  return { ...parsed, truncated: parsed.truncated || result.timedOut || result.truncated };
}

/** The most file paths `files.paths` returns (the command palette's "open a file" list). */
export const MAX_PATHS = 5000;

/** ripgrep's argv listing the workspace's files: the same skips as a search (.git, .gitignore'd), no config. */
export const RIPGREP_FILES_ARGS = [
  'rg',
  '--files',
  '--no-config',
  '--no-require-git',
  '--glob',
  '!.git',
  '--',
  WORKSPACE,
] as const;

/** ripgrep's `--files` output as sorted workspace paths, at most {@link MAX_PATHS} (then `truncated`). */
export function parseRipgrepFiles(output: string, cut: boolean): { paths: string[]; truncated: boolean } {
  const lines = output.split('\n');
  // A cut output ends in a partial name: drop it.
  if (cut) lines.pop();
  const paths = lines
    .filter((l) => l.startsWith(`${WORKSPACE}/`))
    .map((l) => l.slice(WORKSPACE.length + 1))
    .sort();
  return { paths: paths.slice(0, MAX_PATHS), truncated: cut || paths.length > MAX_PATHS };
}

/** The workspace's file paths (ripgrep `--files` in the sandbox, as its user), for finding a file by name. */
export async function listWorkspaceFiles(sandbox: Sandbox): Promise<{ paths: string[]; truncated: boolean }> {
  const result = await sandbox.exec(RIPGREP_FILES_ARGS, {
    timeoutMs: SEARCH_TIMEOUT_MS,
    maxOutputBytes: 1024 * 1024,
  });
  if (result.exitCode === 127) {
    throw new AppError('UNSUPPORTED', "this session's image has no ripgrep (rg): finding files needs it");
  }
  return parseRipgrepFiles(decoder.decode(result.stdout), result.truncated || result.timedOut);
}
