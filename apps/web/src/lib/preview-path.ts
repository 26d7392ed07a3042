/** The path the preview bar starts with. */
export const DEFAULT_PREVIEW_PATH = '/';

// The policy's preview request target (packages/policy previewPathSchema): RFC 3986 path and query characters.
const PREVIEW_PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*$/;

/**
 * A path typed in the preview bar as the policy's request target, or null when the proxy would refuse it: a
 * leading '/' added, at most 2048 characters, no '//' start (another host), no spaces, backslashes or '#'.
 */
export function previewPath(typed: string): string | null {
  const trimmed = typed.trim();
  const path = trimmed === '' ? DEFAULT_PREVIEW_PATH : trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
  if (path.length > 2048 || path.startsWith('//') || !PREVIEW_PATH.test(path)) return null;
  return path;
}

/**
 * The address the preview frame loads for `path` on the preview's own origin, or null when it would leave that
 * origin (the frame only ever shows the session's preview host the grant was made for).
 */
export function previewAddress(origin: string, typed: string): string | null {
  const path = previewPath(typed);
  if (path === null) return null;
  const url = new URL(path, origin);
  return url.origin === origin ? url.href : null;
}

/** What the preview pane keeps per session in this browser: the port and the path last shown. */
export interface PreviewPlace {
  port: string;
  path: string;
}

const placeKey = (sessionId: string) => `studio.ide.${sessionId}.preview`;

/** The session's last preview port and path in this browser (defaults when none or unreadable). */
export function loadPreviewPlace(
  sessionId: string,
  storage: Pick<Storage, 'getItem'> | undefined,
): PreviewPlace {
  const fallback = { port: '8000', path: DEFAULT_PREVIEW_PATH };
  try {
    const raw = storage?.getItem(placeKey(sessionId));
    if (!raw) return fallback;
    const value = JSON.parse(raw) as Partial<PreviewPlace>;
    const port = typeof value.port === 'string' && /^\d{4}$/.test(value.port) ? value.port : fallback.port;
    const path = typeof value.path === 'string' ? (previewPath(value.path) ?? fallback.path) : fallback.path;
    return { port, path };
  } catch {
    return fallback;
  }
}

/** Keeps the session's preview port and path in this browser (nothing when storage is unavailable or full). */
export function savePreviewPlace(
  sessionId: string,
  place: PreviewPlace,
  storage: Pick<Storage, 'setItem'> | undefined,
): void {
  try {
    storage?.setItem(placeKey(sessionId), JSON.stringify(place));
  } catch {
    // Private mode or a full quota: the pane still works, it just starts from defaults next time.
  }
}
