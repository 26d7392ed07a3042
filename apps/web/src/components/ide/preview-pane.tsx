'use client';
import { useMutation } from '@tanstack/react-query';
import { type FormEvent, useEffect, useRef, useState } from 'react';
import { loadPreviewPlace, previewAddress, previewPath, savePreviewPlace } from '../../lib/preview-path';
import { humanError, useTRPC } from '../../lib/trpc';
import { ErrorNote, pageProblem } from './error-note';

const browserStorage = () => (typeof window === 'undefined' ? undefined : window.localStorage);

/**
 * A dev server inside the sandbox, through the API's preview proxy on its own origin. A path bar loads any path
 * of that origin in the frame; the port and path are kept per session in this browser.
 */
export function PreviewPane({ sessionId }: { sessionId: string }) {
  const trpc = useTRPC();
  const [initial] = useState(() => loadPreviewPlace(sessionId, browserStorage()));
  const [port, setPort] = useState(initial.port);
  const [path, setPath] = useState(initial.path);
  // The preview's origin once a grant link was opened (its cookie is then set in the frame), and what the frame shows.
  const [grant, setGrant] = useState<{ origin: string; port: string } | null>(null);
  const [src, setSrc] = useState<string | null>(null);
  const [frameKey, setFrameKey] = useState(0);
  const [problem, setProblem] = useState<string | null>(null);
  // After the grant link's redirect to '/', the frame goes on to this address (the path asked for).
  const after = useRef<string | null>(null);

  useEffect(() => savePreviewPlace(sessionId, { port, path }, browserStorage()), [sessionId, port, path]);

  // Each press makes a fresh grant link and reloads the frame with it.
  const create = useMutation(
    trpc.previews.create.mutationOptions({
      onSuccess: (result) => {
        const grantOrigin = new URL(result.url).origin;
        setGrant({ origin: grantOrigin, port });
        const target = previewAddress(grantOrigin, path);
        after.current = target !== null && previewPath(path) !== '/' ? target : null;
        setSrc(result.url);
        setFrameKey((k) => k + 1);
      },
    }),
  );
  const busy = create.isPending;

  function open(event?: FormEvent) {
    event?.preventDefault();
    setProblem(null);
    if (previewPath(path) === null) {
      setProblem('That is not a path the preview can load: start it with / and leave out spaces and #.');
      return;
    }
    create.mutate({ sessionId, port: Number(port) });
  }

  function go(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    const normal = previewPath(path);
    if (normal === null) {
      setProblem('That is not a path the preview can load: start it with / and leave out spaces and #.');
      return;
    }
    setPath(normal);
    // No grant for this port yet (or another port typed since): open one, then go to the path.
    if (grant === null || grant.port !== port) {
      create.mutate({ sessionId, port: Number(port) });
      return;
    }
    const target = previewAddress(grant.origin, normal);
    if (target === null) return;
    after.current = null;
    setSrc(target);
    setFrameKey((k) => k + 1);
  }

  return (
    <div className="preview-pane">
      <form className="preview-bar" onSubmit={open}>
        <label htmlFor="preview-port">Port</label>
        <input
          id="preview-port"
          type="number"
          min={3000}
          max={9999}
          value={port}
          onChange={(e) => setPort(e.target.value)}
          className="port-input"
        />
        <button type="submit" disabled={busy}>
          {busy ? 'Opening…' : 'Show preview'}
        </button>
        <button type="button" onClick={() => open()} disabled={!src || busy} aria-label="Reload preview">
          Reload
        </button>
        {src ? (
          <a
            className="button"
            href={src}
            target="_blank"
            rel="noopener noreferrer"
            aria-label="Open preview in a new tab"
          >
            New tab ↗
          </a>
        ) : null}
      </form>
      <form className="preview-bar preview-path-bar" onSubmit={go}>
        <label htmlFor="preview-path" className="sr-only">
          Preview path
        </label>
        <input
          id="preview-path"
          className="mono preview-path-input"
          value={path}
          onChange={(e) => setPath(e.target.value)}
          spellCheck={false}
          autoComplete="off"
          placeholder="/"
          title="A path of the preview (Enter loads it)"
        />
        <button type="submit" disabled={busy} aria-label="Load this path in the preview">
          Go
        </button>
      </form>
      {problem && <ErrorNote error={pageProblem(problem)} />}
      {create.error && <ErrorNote error={humanError(create.error)} />}
      {src ? (
        <iframe
          key={frameKey}
          title={`Preview of port ${port}`}
          src={src}
          className="preview-frame"
          data-path={path}
          onLoad={() => {
            // The grant link answered with its redirect to '/': now the path asked for, on the same origin.
            const next = after.current;
            if (next === null) return;
            after.current = null;
            setSrc(next);
            setFrameKey((k) => k + 1);
          }}
          // The preview is another site (`<port>-<label>.localhost:4001`, or the preview domain behind Traefik): its
          // scripts cannot read the IDE's DOM, nor send or set its cookies, even with allow-same-origin. That flag is
          // needed so the dev server's own page keeps its origin (its grant cookie, fetches, storage, HMR).
          // No allow-top-navigation or allow-popups: a preview cannot navigate or spawn windows from the IDE.
          sandbox="allow-scripts allow-forms allow-same-origin"
          referrerPolicy="no-referrer"
        />
      ) : (
        <p className="empty">
          Start a dev server in the terminal (e.g. python3 -m http.server 8000), pick its port and press “Show
          preview”.
        </p>
      )}
    </div>
  );
}
