'use client';
import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import { openTerminal, type StudioTerminal } from '@studio/client';
import { useEffect, useRef, useState } from 'react';
import { errorMessage, useTRPCClient } from '../../lib/trpc';

type Status = 'connecting' | 'ready' | 'closed' | 'refused';

/**
 * An xterm.js terminal over the API's /terminal WebSocket (same origin through the web server). Auth: a
 * 60-second socket token from auth.socketToken (the login cookie is httpOnly) as the first message. Reconnects
 * with backoff after a drop, reattaching to the same shell (its terminalId, and the output offset the screen
 * already shows) while the server still keeps it; a refusal (1008) is shown and not retried automatically.
 */
export function TerminalPanel({ sessionId, active }: { sessionId: string; active: boolean }) {
  const client = useTRPCClient();
  const host = useRef<HTMLDivElement>(null);
  const fitRef = useRef<FitAddon | null>(null);
  const [status, setStatus] = useState<Status>('connecting');
  const [detail, setDetail] = useState('');
  const [attempt, setAttempt] = useState(0);

  // biome-ignore lint/correctness/useExhaustiveDependencies: `attempt` forces a fresh terminal and socket
  useEffect(() => {
    if (!host.current) return;
    const term = new Terminal({
      cursorBlink: true,
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace',
      fontSize: 13,
      theme: { background: '#101216', foreground: '#d7dae0' },
      scrollback: 5000,
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(host.current);
    fitRef.current = fit;
    try {
      fit.fit();
    } catch {
      // not laid out yet
    }
    let current: StudioTerminal | null = null;
    let disposed = false;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let failures = 0;
    // The shell to reattach to after a drop, and how much of its output the screen already has.
    let previous: { terminalId: string; offset: number } | undefined;

    // Keystrokes and resizes go to the live socket; while one is opening, @studio/client holds them (bounded)
    // until it has authenticated, and past that bound they are dropped.
    const deliver = (fn: (t: StudioTerminal) => void) => {
      try {
        if (current) fn(current);
      } catch {
        // not open yet and its queue is full
      }
    };
    const inputSub = term.onData((data) => deliver((t) => t.write(data)));
    const resizeSub = term.onResize(({ cols, rows }) => deliver((t) => t.resize(cols, rows)));

    const connect = async () => {
      if (disposed) return;
      setStatus('connecting');
      let token: string;
      try {
        token = (await client.auth.socketToken.mutate()).token;
      } catch (e) {
        setStatus('closed');
        setDetail(errorMessage(e));
        schedule();
        return;
      }
      if (disposed) return;
      // The protocol (auth first, JSON control messages, binary output) is @studio/client's, as for every client.
      const t = openTerminal({
        url: window.location.origin,
        token,
        sessionId,
        cols: term.cols,
        rows: term.rows,
        ...(previous ? { terminalId: previous.terminalId, offset: previous.offset } : {}),
      });
      const reattaching = previous !== undefined;
      // Why the shell ended, when the server said (the session was paused): not reconnected by itself, since
      // opening a terminal resumes the session.
      let ended: string | null = null;
      current = t;
      t.onData((chunk) => term.write(chunk));
      t.onMessage((msg) => {
        if (msg.type === 'ready') {
          failures = 0;
          setStatus('ready');
          setDetail('');
        } else if (msg.type === 'exit') {
          if (msg.reason) {
            ended = msg.reason;
            term.write(`\r\n[${msg.reason}]\r\n`);
          } else term.write(`\r\n[shell exited with ${msg.exitCode ?? 'signal'}]\r\n`);
        } else if (msg.type === 'dropped') {
          term.write(`\r\n[${msg.bytes} bytes of output dropped]\r\n`);
        } else if (msg.type === 'error') {
          setDetail(`${msg.code}: ${msg.message}`);
        }
      });
      void t.closed.then(({ code, reason }) => {
        if (current === t) current = null;
        // Closed normally (1000: the shell exited), refused, or taken over (4001): nothing to reattach to.
        previous =
          t.terminalId !== undefined && code !== 1000 && code !== 1008 && code !== 4001
            ? { terminalId: t.terminalId, offset: t.offset }
            : undefined;
        if (disposed) return;
        if (ended !== null) {
          previous = undefined;
          setStatus('closed');
          setDetail(ended);
          return;
        }
        if (code === 1008 && reattaching && reason.startsWith('NOT_FOUND')) {
          term.write('\r\n[the previous shell has ended; opening a new one]\r\n');
          schedule();
          return;
        }
        if (code === 4001) {
          setStatus('closed');
          setDetail('this terminal was opened elsewhere');
          return;
        }
        if (code === 1008) {
          setStatus('refused');
          setDetail(reason || 'the server refused the terminal');
          return;
        }
        setStatus('closed');
        setDetail(code === 1000 ? 'the shell exited' : `connection lost (${code})`);
        schedule();
      });
    };
    const schedule = () => {
      if (disposed) return;
      failures++;
      const delay = Math.min(10_000, 500 * 2 ** Math.min(failures, 5));
      retry = setTimeout(() => void connect(), delay);
    };
    void connect();

    const observer = new ResizeObserver(() => {
      try {
        fit.fit();
      } catch {
        // hidden
      }
    });
    observer.observe(host.current);
    return () => {
      disposed = true;
      clearTimeout(retry);
      observer.disconnect();
      inputSub.dispose();
      resizeSub.dispose();
      current?.close();
      term.dispose();
    };
  }, [client, sessionId, attempt]);

  useEffect(() => {
    if (active) {
      try {
        fitRef.current?.fit();
      } catch {
        // hidden
      }
    }
  }, [active]);

  return (
    <div className="terminal-panel">
      <div className="panel-status" aria-live="polite">
        <span className={`dot dot-${status}`} aria-hidden="true" />
        Terminal: {status}
        {detail && <span className="muted"> — {detail}</span>}
        {(status === 'refused' || status === 'closed') && (
          <button type="button" onClick={() => setAttempt((a) => a + 1)}>
            Reconnect
          </button>
        )}
      </div>
      <div className="terminal-host" ref={host} role="application" aria-label="Terminal" />
    </div>
  );
}
