'use client';
import '../../styles/replay.css';
import { useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import { useMemo, useState } from 'react';
import { formatBytes } from '../../lib/file-types';
import {
  type Cast,
  downloadName,
  formatClock,
  parseCast,
  parseEventLog,
  type TimelineItem,
  timeline,
} from '../../lib/recording';
import { errorMessage, useTRPC, useTRPCClient } from '../../lib/trpc';
import { TopBar } from '../top-bar';
import { CastPlayer, type SeekRequest } from './cast-player';

const EVENTS_FILE = 'events.jsonl';
const time = (iso: string) => new Date(iso).toLocaleTimeString();

/**
 * A session's recording (docs/recording.md) at /s/<id>/replay: its terminals (who opened each, when, how long,
 * how big), a read-only player for the chosen one, a download of every file, and the timeline of who did what
 * from the event log. Clicking a timeline row that falls within a terminal's life seeks that terminal there.
 */
export function ReplayPage({ sessionId }: { sessionId: string }) {
  const trpc = useTRPC();
  const client = useTRPCClient();
  const listing = useQuery(trpc.recordings.list.queryOptions({ sessionId }));
  const files = listing.data?.files ?? [];
  const terminals = files.filter((f) => f.kind === 'terminal');
  const hasLog = files.some((f) => f.name === EVENTS_FILE);
  const log = useQuery({
    ...trpc.recordings.get.queryOptions({ sessionId, file: EVENTS_FILE }),
    enabled: hasLog,
  });
  // Token names, so a token's actions read as that token (the recording holds only its id).
  const tokens = useQuery({ ...trpc.tokens.list.queryOptions(), retry: false });
  const [chosen, setChosen] = useState<string | null>(null);
  const selected = chosen ?? terminals[0]?.name ?? null;
  const castText = useQuery({
    ...trpc.recordings.get.queryOptions({ sessionId, file: selected ?? 'terminal-1.cast' }),
    enabled: selected !== null,
  });
  const [seek, setSeek] = useState<(SeekRequest & { file: string }) | null>(null);
  const [downloadError, setDownloadError] = useState<string | null>(null);

  const cast = useMemo((): { cast: Cast } | { error: string } | null => {
    if (!castText.data) return null;
    try {
      return { cast: parseCast(castText.data.text) };
    } catch (error) {
      return { error: error instanceof Error ? error.message : 'this recording cannot be played' };
    }
  }, [castText.data]);

  const entries = useMemo(() => parseEventLog(log.data?.text ?? ''), [log.data]);
  const tokenNames = useMemo(
    () => new Map((tokens.data ?? []).map((t) => [t.id, t.name] as const)),
    [tokens.data],
  );
  const items = useMemo(() => timeline(entries, tokenNames), [entries, tokenNames]);
  // Each terminal's life in wall-clock time, from its opened and closed entries.
  const spans = useMemo(() => {
    const out = new Map<string, { from: number; to: number }>();
    for (const e of entries) {
      const file = typeof e.body.file === 'string' ? e.body.file : '';
      if (e.type === 'terminal.opened') out.set(file, { from: e.ms, to: Number.POSITIVE_INFINITY });
      const span = out.get(file);
      if (e.type === 'terminal.closed' && span) span.to = e.ms;
    }
    return out;
  }, [entries]);

  const choose = (file: string) => {
    setChosen(file);
    setSeek(null);
  };

  // The terminal a timeline row belongs to: its own, else the one shown if it was open then, else any open then.
  const terminalOf = (item: TimelineItem): string | undefined => {
    if (item.file && spans.has(item.file)) return item.file;
    const within = (f: string) => {
      const s = spans.get(f);
      return s !== undefined && item.ms >= s.from && item.ms <= s.to;
    };
    if (selected && within(selected)) return selected;
    return terminals.map((t) => t.name).find(within);
  };

  const jump = (item: TimelineItem) => {
    const file = terminalOf(item);
    const span = file ? spans.get(file) : undefined;
    if (!file || !span) return;
    setChosen(file);
    setSeek((previous) => ({ file, t: (item.ms - span.from) / 1000, n: (previous?.n ?? 0) + 1 }));
  };

  const download = async (file: string) => {
    setDownloadError(null);
    try {
      const { text } = await client.recordings.get.query({ sessionId, file });
      const type = file.endsWith('.cast') ? 'application/x-asciicast' : 'application/jsonl';
      const url = URL.createObjectURL(new Blob([text], { type }));
      const a = document.createElement('a');
      a.href = url;
      a.download = downloadName(sessionId, file);
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (error) {
      setDownloadError(`Could not download ${file}: ${errorMessage(error)}`);
    }
  };

  const shownLabel = selected ? `Terminal ${/\d+/.exec(selected)?.[0] ?? ''}` : '';

  return (
    <div className="page">
      <TopBar />
      <main className="replay" aria-labelledby="replay-title">
        <div className="section-head">
          <h1 id="replay-title">Replay</h1>
          <span className="mono small muted">{sessionId}</span>
          <Link href={`/s/${sessionId}`}>Back to the session</Link>
          <button
            type="button"
            className="replay-refresh"
            onClick={() => {
              // A terminal still open goes on growing: its cast and the log are read again too.
              void listing.refetch();
              if (hasLog) void log.refetch();
              if (selected) void castText.refetch();
            }}
          >
            Refresh
          </button>
        </div>
        {listing.error && (
          <div className="error" role="alert">
            <p>{errorMessage(listing.error)}</p>
          </div>
        )}
        {listing.data && (
          <p className="muted small" role="status">
            {listing.data.enabled
              ? `Recording is on: ${formatBytes(listing.data.bytes)} of ${formatBytes(listing.data.maxBytes)} kept for this session.`
              : 'Recording is off on this server (the operator turned it off), so nothing new is recorded.'}
            {listing.data.stopped && ' Recording of this session stopped at its size limit.'}
            {' Terminal input is not recorded, only what the terminal showed.'}
          </p>
        )}
        {downloadError && (
          <div className="error" role="alert">
            <p>{downloadError}</p>
          </div>
        )}
        <div className="replay-grid">
          <section className="replay-files" aria-labelledby="replay-files-title">
            <h2 id="replay-files-title">Recording</h2>
            {listing.isPending && <p className="muted">Loading the recording…</p>}
            {listing.data && files.length === 0 && (
              <p className="muted">Nothing recorded yet. Open a terminal or run a command in the session.</p>
            )}
            <ul className="replay-file-list">
              {terminals.map((f) => (
                <li key={f.name} className={f.name === selected ? 'selected' : undefined}>
                  <button
                    type="button"
                    className="replay-file-choose"
                    aria-pressed={f.name === selected}
                    onClick={() => choose(f.name)}
                  >
                    <strong>Terminal {/\d+/.exec(f.name)?.[0]}</strong>
                    <span className="small muted">
                      {f.openedBy ? `${f.openedBy.name} (${f.openedBy.kind})` : 'unknown'}
                      {f.startedAt ? ` · ${time(f.startedAt)}` : ''}
                      {` · ${formatClock(f.durationSec ?? 0)} · ${formatBytes(f.size)}`}
                    </span>
                  </button>
                  <button
                    type="button"
                    onClick={() => void download(f.name)}
                    aria-label={`Download ${f.name}`}
                    title="Download as an asciicast v2 file (plays with asciinema play)"
                  >
                    Download
                  </button>
                </li>
              ))}
              {hasLog && (
                <li>
                  <span className="replay-file-choose">
                    <strong>Event log</strong>
                    <span className="small muted">
                      JSON lines · {formatBytes(files.find((f) => f.name === EVENTS_FILE)?.size ?? 0)}
                    </span>
                  </span>
                  <button
                    type="button"
                    onClick={() => void download(EVENTS_FILE)}
                    aria-label={`Download ${EVENTS_FILE}`}
                  >
                    Download
                  </button>
                </li>
              )}
            </ul>
          </section>
          <section className="replay-main" aria-label="Player">
            {selected === null && listing.data && <p className="muted">No terminal was recorded.</p>}
            {castText.error && (
              <div className="error" role="alert">
                <p>{errorMessage(castText.error)}</p>
              </div>
            )}
            {cast && 'error' in cast && (
              <div className="error" role="alert">
                <p>{cast.error}</p>
              </div>
            )}
            {cast && 'cast' in cast && selected && (
              <CastPlayer
                cast={cast.cast}
                label={shownLabel}
                seek={seek && seek.file === selected ? seek : null}
              />
            )}
          </section>
          <section className="replay-timeline" aria-labelledby="replay-timeline-title">
            <h2 id="replay-timeline-title">Timeline</h2>
            {log.error && (
              <div className="error" role="alert">
                <p>{errorMessage(log.error)}</p>
              </div>
            )}
            {hasLog && items.length === 0 && !log.isPending && <p className="muted">No actions recorded.</p>}
            <ol className="replay-events">
              {items.map((item) => {
                const file = terminalOf(item);
                return (
                  <li key={item.key} className={item.failed ? 'failed' : undefined}>
                    <button
                      type="button"
                      disabled={!file}
                      onClick={() => jump(item)}
                      title={file ? `Show ${file} at this moment` : 'No terminal was open then'}
                    >
                      <time dateTime={item.at} className="mono small muted">
                        {time(item.at)}
                      </time>
                      <span className="replay-who">
                        {item.who}
                        {item.kind && <span className={`badge actor-${item.kind}`}>{item.kind}</span>}
                      </span>
                      <span className="replay-what">{item.what}</span>
                    </button>
                  </li>
                );
              })}
            </ol>
          </section>
        </div>
      </main>
    </div>
  );
}
