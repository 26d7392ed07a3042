'use client';
import '@fontsource/jetbrains-mono/400.css';
import '@fontsource/jetbrains-mono/700.css';
import '@xterm/xterm/css/xterm.css';
import { openTerminal, type StudioTerminal } from '@studio/client';
import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import { useEffect, useRef, useState } from 'react';
import { clipboardKeyAction } from '../../lib/terminal-keys';
import {
  TERMINAL_FONT_FACES,
  TERMINAL_FONT_FAMILY,
  TERMINAL_FONT_SIZE,
  TERMINAL_THEME,
} from '../../lib/terminal-theme';
import { errorMessage, useTRPCClient } from '../../lib/trpc';
import { styleCellsThroughCssom } from './terminal-csp';

export type TerminalStatus = 'connecting' | 'ready' | 'closed' | 'refused';

/** What the tab row does to one terminal. */
export interface TerminalControls {
  /** Focuses it (once it is on screen). */
  focus(): void;
  /** Ends its shell: the socket closes normally (1000), which the server takes as "done with it". */
  end(): void;
  /** A fresh screen and socket, reattaching to its shell while the server still keeps it. */
  reconnect(): void;
}

// Close code for a terminal the page lets go of without ending it (unmounted: the IDE left, the session paused):
// anything but 1000 keeps the shell on the server for its reattach window.
const DETACH = 4000;
// xterm.js measures its cells once, when it opens (and on a font change): the bundled font must be there first.
// A font that does not come in time (a very slow network) does not hold the terminal back: it opens with the
// fallback and measures again once the font arrives.
const FONT_WAIT_MS = 3000;

let fontLoad: Promise<boolean> | undefined;
/** Loads the terminal font's faces once per page; true when they are there. */
function terminalFontLoaded(): Promise<boolean> {
  fontLoad ??= Promise.all(TERMINAL_FONT_FACES.map((face) => document.fonts.load(face))).then(
    (faces) => faces.every((f) => f.length > 0),
    () => false,
  );
  return fontLoad;
}

/**
 * One xterm.js terminal over the API's /terminal WebSocket (same origin through the web server). Auth: a
 * 60-second socket token from auth.socketToken (the login cookie is httpOnly) as the first message. Starts by
 * reattaching to `terminalId` when given (a reload: offset 0, so the server replays the output it keeps); a
 * shell that is gone (NOT_FOUND) is replaced by a new one. Reconnects with backoff after a drop, reattaching to
 * the same shell with the output offset the screen already shows; a refusal (1008) is shown and not retried.
 * It stays mounted while hidden (socket and scrollback kept), opens its screen the first time it is shown, and
 * fits its size whenever it is shown.
 */
export function TerminalView({
  sessionId,
  terminalId,
  name,
  shown,
  onStatus,
  onTerminalId,
  onControls,
}: {
  sessionId: string;
  /** The shell to reattach to at mount (read once). */
  terminalId: string | undefined;
  name: string;
  shown: boolean;
  onStatus: (status: TerminalStatus, detail: string) => void;
  /** The shell's id once ready; undefined once it is gone. */
  onTerminalId: (terminalId: string | undefined) => void;
  onControls: (controls: TerminalControls | null) => void;
}) {
  const client = useTRPCClient();
  const host = useRef<HTMLDivElement>(null);
  const [term, setTerm] = useState<{ term: Terminal; fit: FitAddon } | null>(null);
  const [status, setStatus] = useState<TerminalStatus>('connecting');
  const [detail, setDetail] = useState('');
  const [attempt, setAttempt] = useState(0);
  // The shell this tab reattaches to after a remount of its screen (Reconnect); starts as the stored one.
  const shell = useRef(terminalId);
  const ending = useRef(false);
  const wantFocus = useRef(false);
  const isShown = useRef(shown);
  isShown.current = shown;
  const latest = useRef({ onStatus, onTerminalId, onControls });
  latest.current = { onStatus, onTerminalId, onControls };

  useEffect(() => latest.current.onStatus(status, detail), [status, detail]);

  useEffect(() => {
    const controls: TerminalControls = {
      // A hidden terminal cannot take focus: it does once shown (by the effect that shows it).
      focus: () => {
        wantFocus.current = true;
        if (term?.term.element && isShown.current) {
          term.term.focus();
          wantFocus.current = false;
        }
      },
      end: () => {
        ending.current = true;
      },
      reconnect: () => setAttempt((a) => a + 1),
    };
    latest.current.onControls(controls);
    return () => latest.current.onControls(null);
  }, [term]);

  // biome-ignore lint/correctness/useExhaustiveDependencies: `attempt` forces a fresh terminal and socket
  useEffect(() => {
    let disposed = false;
    let stop: (() => void) | undefined;
    const fontInTime = Promise.race([
      terminalFontLoaded(),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), FONT_WAIT_MS)),
    ]);
    void fontInTime.then((inTime) => {
      if (disposed) return;
      stop = start(inTime);
    });

    function start(fontInTime: boolean): () => void {
      const term = new Terminal({
        cursorBlink: true,
        cursorStyle: 'block',
        cursorInactiveStyle: 'outline',
        fontFamily: TERMINAL_FONT_FAMILY,
        fontSize: TERMINAL_FONT_SIZE,
        theme: TERMINAL_THEME,
        scrollback: 5000,
      });
      const fit = new FitAddon();
      term.loadAddon(fit);
      if (!fontInTime) {
        void terminalFontLoaded().then((loaded) => {
          if (disposed || !loaded) return;
          // Measures the cells again: xterm.js does so when the font option changes.
          term.options.fontFamily = 'monospace';
          term.options.fontFamily = TERMINAL_FONT_FAMILY;
          try {
            fit.fit();
          } catch {
            // not on screen
          }
        });
      }
      let current: StudioTerminal | null = null;
      let retry: ReturnType<typeof setTimeout> | undefined;
      let failures = 0;
      // The shell to reattach to and how much of its output the screen already has: at first the stored shell
      // with offset 0 (a fresh screen: the server replays all it keeps), after a drop the live one's offset.
      let previous: { terminalId: string; offset: number } | undefined = shell.current
        ? { terminalId: shell.current, offset: 0 }
        : undefined;
      const gone = () => {
        shell.current = undefined;
        latest.current.onTerminalId(undefined);
      };

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
      // Copy and paste as in desktop terminals (see clipboardKeyAction). The clipboard may be refused (permission,
      // an insecure origin): then nothing happens, and the key does not reach the shell either.
      term.attachCustomKeyEventHandler((event) => {
        const action = clipboardKeyAction(event, term.hasSelection());
        if (action === null) return true;
        if (event.type !== 'keydown') return false;
        // Also stops the browser's own paste for Ctrl+Shift+V, which would paste a second time.
        event.preventDefault();
        try {
          if (action === 'copy') {
            const text = term.getSelection();
            if (!event.shiftKey) term.clearSelection();
            void navigator.clipboard?.writeText(text).catch(() => undefined);
          } else {
            void navigator.clipboard?.readText().then(
              (text) => {
                if (text && !disposed) term.paste(text);
              },
              () => undefined,
            );
          }
        } catch {
          // no clipboard here
        }
        return false;
      });

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
            shell.current = msg.terminalId;
            latest.current.onTerminalId(msg.terminalId);
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
          // Dropped before it was ready: the same shell as this attempt's, if it had one.
          previous =
            code !== 1000 && code !== 1008 && code !== 4001
              ? t.terminalId !== undefined
                ? { terminalId: t.terminalId, offset: t.offset }
                : previous
              : undefined;
          if (disposed) return;
          if (ended !== null) {
            previous = undefined;
            gone();
            setStatus('closed');
            setDetail(ended);
            return;
          }
          if (code === 1008 && reattaching && reason.startsWith('NOT_FOUND')) {
            // Not a failure to back off from: the shell ended (or expired) while the page was away.
            gone();
            term.write('\r\n[the previous shell has ended; opening a new one]\r\n');
            void connect();
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
          if (code === 1000) gone();
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
      setTerm({ term, fit });

      return () => {
        clearTimeout(retry);
        inputSub.dispose();
        resizeSub.dispose();
        // Closed with its tab (×): the shell ends. Otherwise (the IDE left, Reconnect) it is kept to reattach to.
        if (ending.current) current?.close();
        else current?.socket.close(DETACH, 'detached');
        term.dispose();
      };
    }

    return () => {
      disposed = true;
      stop?.();
      setTerm(null);
    };
  }, [client, sessionId, attempt]);

  // The screen opens the first time it is shown (a hidden element has no size to measure cells in) and fits
  // each time it is shown or resized; output that came while hidden is already in its buffer.
  useEffect(() => {
    const el = host.current;
    if (!term || !shown || !el) return;
    const fitNow = () => {
      // A panel collapsed to nothing: the shell keeps its size rather than shrinking to one row and reflowing.
      if (el.clientHeight < 2 * TERMINAL_FONT_SIZE || el.clientWidth < 4 * TERMINAL_FONT_SIZE) return;
      try {
        term.fit.fit();
      } catch {
        // not laid out yet
      }
    };
    if (!term.term.element) term.term.open(el);
    styleCellsThroughCssom(term.term);
    fitNow();
    let frame = requestAnimationFrame(fitNow);
    if (wantFocus.current) {
      wantFocus.current = false;
      term.term.focus();
    }
    const observer = new ResizeObserver(() => {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(fitNow);
    });
    observer.observe(el);
    return () => {
      cancelAnimationFrame(frame);
      observer.disconnect();
    };
  }, [term, shown]);

  // The screen goes in an element of its own, without padding: the fit addon sizes the terminal to its parent's
  // height (the border box) and would count the host's padding as room for rows.
  return (
    <div
      className="terminal-host"
      hidden={!shown}
      role="application"
      aria-label={name}
      data-terminal-status={status}
    >
      <div className="terminal-screen" ref={host} />
    </div>
  );
}
