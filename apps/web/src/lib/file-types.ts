/** Languages the editor highlights. */
export type Language =
  | 'javascript'
  | 'typescript'
  | 'jsx'
  | 'tsx'
  | 'python'
  | 'json'
  | 'html'
  | 'css'
  | 'markdown'
  | 'text';

const BY_EXTENSION: Record<string, Language> = {
  js: 'javascript',
  mjs: 'javascript',
  cjs: 'javascript',
  jsx: 'jsx',
  ts: 'typescript',
  mts: 'typescript',
  cts: 'typescript',
  tsx: 'tsx',
  py: 'python',
  json: 'json',
  html: 'html',
  htm: 'html',
  css: 'css',
  md: 'markdown',
  markdown: 'markdown',
};

/** The language of a file by its name's extension (`text` when unknown). */
export function languageOf(path: string): Language {
  const name = path.split('/').pop() ?? path;
  const dot = name.lastIndexOf('.');
  if (dot <= 0) return 'text';
  return BY_EXTENSION[name.slice(dot + 1).toLowerCase()] ?? 'text';
}

/** Files above this size open only after the user confirms (the editor slows down on huge documents). */
export const LARGE_FILE_BYTES = 1024 * 1024;

const BINARY_EXTENSIONS = new Set([
  'png',
  'jpg',
  'jpeg',
  'gif',
  'webp',
  'ico',
  'bmp',
  'pdf',
  'zip',
  'gz',
  'tgz',
  'tar',
  'xz',
  'bz2',
  '7z',
  'wasm',
  'so',
  'o',
  'a',
  'exe',
  'dll',
  'class',
  'jar',
  'pyc',
  'woff',
  'woff2',
  'ttf',
  'otf',
  'mp3',
  'mp4',
  'mov',
  'avi',
  'sqlite',
  'db',
  'bin',
]);

/** True when the name says the file is binary (checked before reading it). */
export function hasBinaryExtension(path: string): boolean {
  const name = path.split('/').pop() ?? path;
  const dot = name.lastIndexOf('.');
  return dot > 0 && BINARY_EXTENSIONS.has(name.slice(dot + 1).toLowerCase());
}

/** True when decoded text looks binary: a NUL, or many replacement/control characters in its first 8 KiB. */
export function looksBinary(text: string): boolean {
  const sample = text.slice(0, 8192);
  if (sample.includes('\u0000')) return true;
  if (sample.length === 0) return false;
  let odd = 0;
  for (const ch of sample) {
    const c = ch.codePointAt(0) ?? 0;
    if (c === 0xfffd || (c < 32 && c !== 9 && c !== 10 && c !== 13 && c !== 12 && c !== 27)) odd++;
  }
  return odd / sample.length > 0.1;
}

/** Human-readable byte size. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}

/** "3 min ago"-style age of an ISO time relative to `now`. */
export function formatAge(iso: string, now: number = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86_400)} d`;
}

/**
 * Where a name typed in the new-file (or new-folder) form goes: a plain name into the selected folder `dir`; a
 * path with a slash is relative to the workspace root (`src/a/b.txt` from anywhere is `src/a/b.txt`), a leading
 * slash or `./` dropped. The API's path policy still checks the result (no `..`, no absolute paths).
 */
export function newEntryPath(dir: string, typed: string): string {
  const name = typed.trim();
  if (!name.includes('/')) return dir === '' ? name : `${dir}/${name}`;
  return name.replace(/^(?:\.?\/)+/, '');
}

/** The picture a tree entry gets: folders open or closed, files by their kind. */
export type IconKind =
  | 'folder'
  | 'folder-open'
  | 'link'
  | 'js'
  | 'ts'
  | 'json'
  | 'markdown'
  | 'html'
  | 'css'
  | 'python'
  | 'image'
  | 'config'
  | 'shell'
  | 'archive'
  | 'lock'
  | 'text';

const ICON_BY_EXTENSION: Record<string, IconKind> = {
  js: 'js',
  mjs: 'js',
  cjs: 'js',
  jsx: 'js',
  ts: 'ts',
  mts: 'ts',
  cts: 'ts',
  tsx: 'ts',
  json: 'json',
  md: 'markdown',
  markdown: 'markdown',
  html: 'html',
  htm: 'html',
  css: 'css',
  scss: 'css',
  py: 'python',
  png: 'image',
  jpg: 'image',
  jpeg: 'image',
  gif: 'image',
  webp: 'image',
  svg: 'image',
  ico: 'image',
  yml: 'config',
  yaml: 'config',
  toml: 'config',
  ini: 'config',
  env: 'config',
  sh: 'shell',
  bash: 'shell',
  zsh: 'shell',
  zip: 'archive',
  gz: 'archive',
  tgz: 'archive',
  tar: 'archive',
  lock: 'lock',
};

const ICON_BY_NAME: Record<string, IconKind> = {
  dockerfile: 'config',
  makefile: 'shell',
  '.gitignore': 'config',
  '.env': 'config',
  'package-lock.json': 'lock',
};

/** The icon of a tree entry from its type (`file`, `directory`, `symlink`), its name and, for folders, whether open. */
export function iconKindOf(name: string, type: string, open = false): IconKind {
  if (type === 'directory') return open ? 'folder-open' : 'folder';
  if (type === 'symlink') return 'link';
  const lower = name.toLowerCase();
  const byName = ICON_BY_NAME[lower];
  if (byName) return byName;
  const dot = lower.lastIndexOf('.');
  if (dot < 0 || dot === lower.length - 1) return 'text';
  return ICON_BY_EXTENSION[lower.slice(dot + 1)] ?? 'text';
}
