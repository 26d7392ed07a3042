'use client';
import { useMutation } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { errorMessage, useTRPC } from '../../lib/trpc';

/** A dev server inside the sandbox, through the API's preview proxy on its own origin. */
export function PreviewPane({ sessionId }: { sessionId: string }) {
  const trpc = useTRPC();
  const [port, setPort] = useState('8000');
  const [url, setUrl] = useState<string | null>(null);
  const [frameKey, setFrameKey] = useState(0);
  // Each press makes a fresh grant link and reloads the frame with it.
  const create = useMutation(
    trpc.previews.create.mutationOptions({
      onSuccess: (result) => {
        setUrl(result.url);
        setFrameKey((k) => k + 1);
      },
    }),
  );
  const busy = create.isPending;

  function open(event?: FormEvent) {
    event?.preventDefault();
    create.mutate({ sessionId, port: Number(port) });
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
        <button type="button" onClick={() => open()} disabled={!url || busy} aria-label="Reload preview">
          Reload
        </button>
        {url ? (
          <a
            className="button"
            href={url}
            target="_blank"
            rel="noopener noreferrer"
            aria-label="Open preview in a new tab"
          >
            New tab ↗
          </a>
        ) : null}
      </form>
      {create.error && (
        <p className="error small" role="alert">
          {errorMessage(create.error)}
        </p>
      )}
      {url ? (
        <iframe
          key={frameKey}
          title={`Preview of port ${port}`}
          src={url}
          className="preview-frame"
          // The preview is a separate origin (STUDIO_PREVIEW_ORIGIN, default 127.0.0.1:4001): its scripts cannot
          // read the IDE's DOM, cookies or call the API with them, even with allow-same-origin. That flag is
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
