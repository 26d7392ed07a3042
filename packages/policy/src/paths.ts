import { PolicyError } from './errors.ts';
import { describeChar, findControlChar, hasLoneSurrogate, isIntInRange, utf8ByteLength } from './lib/text.ts';

/** Linux PATH_MAX: the longest workspace-relative path accepted, in UTF-8 bytes. Options may only lower it. */
export const DEFAULT_MAX_PATH_BYTES = 4096;
/** Linux NAME_MAX: the longest single file name accepted, in UTF-8 bytes. Options may only lower it. */
export const DEFAULT_MAX_SEGMENT_BYTES = 255;

/** Options for {@link resolveWorkspacePath}. Limits can be tightened, never loosened past the kernel's. */
export interface ResolveWorkspacePathOptions {
  /** Longest accepted path in UTF-8 bytes, after decoding. 1..4096, default 4096. */
  readonly maxPathLength?: number;
  /** Longest accepted file name (one segment) in UTF-8 bytes. 1..255, default 255. */
  readonly maxSegmentLength?: number;
  /** Accept a path naming the workspace root itself ('.', './') and return ''. Default false. */
  readonly allowRoot?: boolean;
}

interface Limits {
  readonly maxPathLength: number;
  readonly maxSegmentLength: number;
  readonly allowRoot: boolean;
}

const DEFAULTS: Limits = {
  maxPathLength: DEFAULT_MAX_PATH_BYTES,
  maxSegmentLength: DEFAULT_MAX_SEGMENT_BYTES,
  allowRoot: false,
};

// After one decode, a remaining escape means the client encoded twice: a later layer that decodes again would
// see a different path than the one checked here (CWE-174).
const STILL_ENCODED = /%[0-9A-Fa-f]{2}/;
const DRIVE_LETTER = /^[A-Za-z]:/;

function readOptions(options: ResolveWorkspacePathOptions | undefined): Limits {
  const o = options ?? {};
  if (typeof o !== 'object' || o === null) {
    throw new PolicyError('INPUT_INVALID', 'options must be an object');
  }
  const maxPathLength = o.maxPathLength ?? DEFAULT_MAX_PATH_BYTES;
  const maxSegmentLength = o.maxSegmentLength ?? DEFAULT_MAX_SEGMENT_BYTES;
  const allowRoot = o.allowRoot ?? false;
  if (!isIntInRange(maxPathLength, 1, DEFAULT_MAX_PATH_BYTES)) {
    throw new PolicyError(
      'INPUT_INVALID',
      `maxPathLength must be an integer in 1..${DEFAULT_MAX_PATH_BYTES}`,
    );
  }
  if (!isIntInRange(maxSegmentLength, 1, DEFAULT_MAX_SEGMENT_BYTES)) {
    throw new PolicyError(
      'INPUT_INVALID',
      `maxSegmentLength must be an integer in 1..${DEFAULT_MAX_SEGMENT_BYTES}`,
    );
  }
  if (typeof allowRoot !== 'boolean') throw new PolicyError('INPUT_INVALID', 'allowRoot must be a boolean');
  return { maxPathLength, maxSegmentLength, allowRoot };
}

function refuseBadChars(text: string): void {
  const at = findControlChar(text);
  if (at !== -1) {
    throw new PolicyError(
      'PATH_CONTROL_CHAR',
      `path contains the control character ${describeChar(text, at)}; remove NUL, C0/C1 controls and DEL from file names`,
    );
  }
  if (hasLoneSurrogate(text)) {
    throw new PolicyError(
      'PATH_ENCODING',
      'path contains an unpaired UTF-16 surrogate, which has no UTF-8 form; send well-formed Unicode',
    );
  }
}

// The checks shared by resolveWorkspacePath (after its single decode) and joinWorkspacePath (which never decodes).
function normalise(path: string, limits: Limits): string {
  if (path.length === 0)
    throw new PolicyError('PATH_EMPTY', 'path is empty; name a file inside the workspace');
  refuseBadChars(path);
  if (STILL_ENCODED.test(path)) {
    throw new PolicyError(
      'PATH_ENCODING',
      "path is percent-encoded twice (an escape such as '%2e' is left after decoding once); encode each name exactly once",
    );
  }
  if (utf8ByteLength(path) > limits.maxPathLength) {
    throw new PolicyError(
      'PATH_TOO_LONG',
      `path is longer than ${limits.maxPathLength} bytes (UTF-8); use a shorter path`,
    );
  }
  if (path.startsWith('/')) {
    throw new PolicyError(
      'PATH_ABSOLUTE',
      "path must be relative to the workspace root; remove the leading '/'",
    );
  }
  if (path.startsWith('\\')) {
    throw new PolicyError(
      'PATH_ABSOLUTE',
      "path must be a relative POSIX path; Windows drive ('C:') and UNC ('\\\\server') forms are refused",
    );
  }
  if (path.includes('\\')) {
    throw new PolicyError('PATH_BACKSLASH', "path contains '\\'; separate directories with '/'");
  }
  const segments: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      throw new PolicyError(
        'PATH_TRAVERSAL',
        "path contains a '..' segment; name the target directly (even '..' that stays inside the workspace is refused)",
      );
    }
    if (utf8ByteLength(segment) > limits.maxSegmentLength) {
      throw new PolicyError(
        'SEGMENT_TOO_LONG',
        `a file name in the path is longer than ${limits.maxSegmentLength} bytes (UTF-8); shorten it`,
      );
    }
    segments.push(segment);
  }
  // Checked on the first kept segment so './C:' cannot slip a drive-relative form past the check.
  if (DRIVE_LETTER.test(segments[0] ?? '')) {
    throw new PolicyError(
      'PATH_ABSOLUTE',
      "path must be a relative POSIX path; Windows drive ('C:') and UNC ('\\\\server') forms are refused",
    );
  }
  if (segments.length === 0) {
    if (limits.allowRoot) return '';
    throw new PolicyError(
      'PATH_IS_ROOT',
      'path names the workspace root itself; name a file or folder inside it',
    );
  }
  return segments.join('/');
}

/**
 * Turns a client-supplied path into a normalised path RELATIVE to the workspace root, or throws.
 *
 * Security meaning (CWE-22, SECURITY.md §2): the result can be joined to the workspace root without escaping
 * it lexically. It contains no '..', '.' or empty segment, no leading '/', no backslash, no control character,
 * no percent-escape, and fits Linux PATH_MAX/NAME_MAX. This is the lexical wall only: symlinks planted by
 * sandbox code must still be handled where the file is opened (inside the sandbox, or descriptor-relative).
 *
 * Rules, in order:
 * - Percent-decoding happens exactly once. `'%2e%2e/x'` decodes to `'../x'` and is refused as traversal.
 *   A result that still holds an escape (`'%252e'` → `'%2e'`) is refused as double encoding (PATH_ENCODING)
 *   rather than accepted as a literal name, so no later layer that decodes again can see a different path.
 *   Malformed escapes (`'%zz'`, a lone `'%'`, overlong or surrogate UTF-8) are PATH_ENCODING. A literal '%'
 *   in a name must therefore be sent as `'%25'`.
 * - Control characters (C0 incl. NUL, DEL, C1) are refused before and after decoding (PATH_CONTROL_CHAR).
 * - Absolute forms are refused: leading '/', also when produced by decoding `'%2f'`, drive letters `'C:'` and
 *   UNC `'\\\\server'` (PATH_ABSOLUTE); any other backslash is PATH_BACKSLASH.
 * - Every '..' segment is refused (PATH_TRAVERSAL), even `'a/../b'` which would stay inside: lexical
 *   resolution of '..' disagrees with the kernel's when 'a' is a symlink, so allowing it would need the very
 *   filesystem knowledge this pure check does not have. Refusing is both safer and simpler.
 * - The empty string is PATH_EMPTY. A path naming the root (`'.'`, `'./'`) is PATH_IS_ROOT unless
 *   `allowRoot`, in which case the result is `''`.
 *
 * The result is a decoded file-system path, not client input: never feed it back through this function (a
 * name containing '%' would be decoded a second time); use {@link joinWorkspacePath} to make it absolute.
 *
 * @example
 * resolveWorkspacePath('src//./app.ts'); // 'src/app.ts'
 * resolveWorkspacePath('%2e%2e/etc/passwd'); // throws PolicyError PATH_TRAVERSAL
 */
export function resolveWorkspacePath(requested: string, options?: ResolveWorkspacePathOptions): string {
  const limits = readOptions(options);
  if (typeof requested !== 'string') throw new PolicyError('INPUT_INVALID', 'path must be a string');
  if (requested.length === 0) {
    throw new PolicyError('PATH_EMPTY', 'path is empty; name a file inside the workspace');
  }
  // Decoding never shrinks below a third of the input, so this bounds the work before any decoding happens.
  if (requested.length > 3 * limits.maxPathLength) {
    throw new PolicyError(
      'PATH_TOO_LONG',
      `path is longer than ${limits.maxPathLength} bytes (UTF-8); use a shorter path`,
    );
  }
  // Also checked after decoding (in normalise); checking first keeps the code specific when an escape is bad too.
  refuseBadChars(requested);
  let decoded: string;
  try {
    decoded = decodeURIComponent(requested);
  } catch (cause) {
    throw new PolicyError(
      'PATH_ENCODING',
      "path has a malformed percent-escape; encode '%' as '%25' and use '%XX' only for valid UTF-8",
      { cause },
    );
  }
  return normalise(decoded, limits);
}

/**
 * True when `relative` is already in the form {@link resolveWorkspacePath} returns (with `allowRoot`, so `''`
 * names the root). No decoding is applied. Use it to re-check a path that crossed a trust boundary, such as the
 * `projectPath` claim of a token.
 */
export function isCanonicalWorkspacePath(relative: string): boolean {
  if (typeof relative !== 'string') return false;
  if (relative === '') return true;
  try {
    return normalise(relative, { ...DEFAULTS, allowRoot: true }) === relative;
  } catch {
    return false;
  }
}

// An absolute POSIX path with duplicate and trailing slashes folded, or null when it is not one we can reason
// about without the filesystem ('.', '..', NUL, backslash): callers of isWithinRoot then get "no".
function foldAbsolute(path: unknown): string | null {
  if (typeof path !== 'string' || !path.startsWith('/')) return null;
  if (findControlChar(path) !== -1 || path.includes('\\')) return null;
  const segments: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '') continue;
    if (segment === '.' || segment === '..') return null;
    segments.push(segment);
  }
  return `/${segments.join('/')}`;
}

/**
 * Segment-boundary containment for absolute POSIX paths: true when `candidate` is `root` or lies below it.
 *
 * Security meaning: this is the fix for the seed's `candidate.startsWith(root)` bug (SECURITY.md §2), which
 * accepted the sibling `/ws/abc-evil` for root `/ws/abc`. Duplicate and trailing slashes are folded; any
 * input that is not absolute, or holds a '.' or '..' segment, NUL, a control character or a backslash,
 * answers false (fail closed: resolve it first, and remember that this is lexical — symlinks are not seen).
 *
 * @example
 * isWithinRoot('/ws/abc', '/ws/abc/x'); // true
 * isWithinRoot('/ws/abc', '/ws/abc-evil'); // false
 */
export function isWithinRoot(root: string, candidate: string): boolean {
  const r = foldAbsolute(root);
  const c = foldAbsolute(candidate);
  if (r === null || c === null) return false;
  if (r === '/') return true;
  return c === r || c.startsWith(`${r}/`);
}

/**
 * Joins an absolute workspace root and a workspace-relative path (as returned by {@link resolveWorkspacePath})
 * into an absolute path that is guaranteed lexically inside the root.
 *
 * Security meaning: `relative` is NOT decoded again (that would be double decoding); it is re-checked with
 * the same rules, so a caller that skipped resolveWorkspacePath still cannot escape. `''` and `'.'` give the
 * root itself. The root must be absolute, without '.'/'..' segments, and not '/' (INPUT_INVALID). Passing the
 * absolute result to in-sandbox commands also keeps names such as `-rf` from being read as options.
 */
export function joinWorkspacePath(root: string, relative: string): string {
  const r = foldAbsolute(root);
  if (r === null || r === '/') {
    throw new PolicyError(
      'INPUT_INVALID',
      "workspace root must be an absolute path other than '/', without '.' or '..' segments",
    );
  }
  if (typeof relative !== 'string') throw new PolicyError('INPUT_INVALID', 'path must be a string');
  const rel = relative === '' ? '' : normalise(relative, { ...DEFAULTS, allowRoot: true });
  const joined = rel === '' ? r : `${r}/${rel}`;
  if (!isWithinRoot(r, joined)) {
    throw new PolicyError('PATH_TRAVERSAL', 'path escapes the workspace root');
  }
  return joined;
}
