'use client';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useEffect, useRef, useState } from 'react';
import {
  formatAllowList,
  listBrief,
  NETWORK_MODE_LABELS,
  NETWORK_MODES,
  type NetworkMode,
  type NetworkSettings,
  networkLabel,
  parseAllowList,
} from '../../lib/network';
import { type HumanError, humanError, useTRPC } from '../../lib/trpc';
import { ErrorNote } from './error-note';

/** The session's network mode in the header; pressing it opens the settings (see {@link NetworkPanel}). */
export function NetworkBadge({
  network,
  expanded,
  onToggle,
}: {
  network: NetworkSettings;
  expanded: boolean;
  onToggle: () => void;
}) {
  return (
    <button
      type="button"
      className={`badge network network-${network.mode}`}
      aria-expanded={expanded}
      aria-controls="network-panel"
      title={
        network.mode === 'allowlist'
          ? `Programs may reach: ${listBrief(network.allow, 8)}. Edit the network settings.`
          : 'Edit the network settings'
      }
      onClick={onToggle}
    >
      {networkLabel(network)}
    </button>
  );
}

/**
 * The session's network settings, edited by its owner: a mode and the allowlist, saved with `sessions.setNetwork`
 * (which replaces both, applies at once and is announced to every watcher as `network.changed`). Entries are
 * checked by the API with the policy's rules; a refusal shows its message, then the code and the API's words.
 */
export function NetworkPanel({
  sessionId,
  network,
  onClose,
}: {
  sessionId: string;
  network: NetworkSettings;
  onClose: () => void;
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [mode, setMode] = useState<NetworkMode>(network.mode);
  const [text, setText] = useState(formatAllowList(network.allow));
  const [error, setError] = useState<HumanError | null>(null);
  const first = useRef<HTMLSelectElement>(null);
  useEffect(() => first.current?.focus(), []);
  const save = useMutation(
    trpc.sessions.setNetwork.mutationOptions({
      onSuccess: (session) => {
        // The answer is the session as it is now: the badge changes without a refetch.
        queryClient.setQueryData(trpc.sessions.get.queryKey({ sessionId }), session);
        onClose();
      },
      onError: (e) => setError(humanError(e)),
    }),
  );
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    save.mutate({ sessionId, network: { mode, allow: parseAllowList(text) } });
  };
  return (
    <section id="network-panel" className="network-panel" aria-labelledby="network-title">
      <form className="network-form" onSubmit={submit}>
        <h2 id="network-title" className="panel-title">
          Network
        </h2>
        <p className="muted small network-hint">
          What programs in this session may reach, through Studio&apos;s egress proxy. A change applies at
          once, also to programs already running.
        </p>
        <label htmlFor="network-mode">Mode</label>
        <select
          id="network-mode"
          ref={first}
          value={mode}
          onChange={(e) => setMode(e.target.value as NetworkMode)}
        >
          {NETWORK_MODES.map((m) => (
            <option key={m} value={m}>
              {NETWORK_MODE_LABELS[m]}
            </option>
          ))}
        </select>
        <label htmlFor="network-allow">Allowed hosts</label>
        <textarea
          id="network-allow"
          rows={4}
          value={text}
          onChange={(e) => setText(e.target.value)}
          spellCheck={false}
          placeholder={'registry.npmjs.org\n*.pypi.org\nexample.com:8443'}
          aria-describedby="network-allow-hint"
        />
        <p id="network-allow-hint" className="muted small network-hint">
          One per line: <code>example.com</code>, <code>*.example.com</code> (names below it),{' '}
          <code>host:port</code>, or an IP block such as <code>203.0.113.0/24</code>. Ports 80 and 443 unless
          one is given. Used in allowlist mode.
        </p>
        {error && <ErrorNote error={error} className="network-error" />}
        <div className="network-actions">
          <button type="submit" className="primary" disabled={save.isPending}>
            {save.isPending ? 'Saving…' : 'Save'}
          </button>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
        </div>
      </form>
    </section>
  );
}
