'use client';
import { type ConsoleLine, ConsolePanel } from './console-panel';
import { TerminalPanel } from './terminal-panel';

export type BottomTab = 'terminal' | 'console';

/**
 * The terminals and the console under the editor, one shown at a time. Both stay mounted so the terminals keep
 * their sockets and scrollback while the console is shown; they exist only while the session runs.
 */
export function BottomPanel({
  sessionId,
  running,
  paused,
  onResume,
  shown,
  onShow,
  lines,
  onClearLines,
}: {
  sessionId: string;
  running: boolean;
  /** The session is paused: its terminal ended with the pause; opening it again resumes the session. */
  paused: boolean;
  onResume: () => void;
  shown: BottomTab;
  onShow: (tab: BottomTab) => void;
  lines: ConsoleLine[];
  onClearLines: () => void;
}) {
  return (
    <div className="bottom">
      <div className="bottom-tabs" role="tablist" aria-label="Bottom panel">
        <button
          type="button"
          role="tab"
          aria-selected={shown === 'terminal'}
          onClick={() => onShow('terminal')}
        >
          Terminal
        </button>
        <button
          type="button"
          role="tab"
          aria-selected={shown === 'console'}
          onClick={() => onShow('console')}
        >
          Console{lines.length > 0 ? ` (${lines.length})` : ''}
        </button>
      </div>
      <div
        className={shown === 'terminal' ? 'bottom-panel' : 'bottom-panel hidden'}
        role="tabpanel"
        aria-label="Terminal panel"
      >
        {running && <TerminalPanel sessionId={sessionId} active={shown === 'terminal'} />}
        {paused && (
          <p className="empty">
            The terminal ended when the session was paused.{' '}
            <button type="button" onClick={onResume}>
              Resume and open a terminal
            </button>
          </p>
        )}
      </div>
      <div
        className={shown === 'console' ? 'bottom-panel' : 'bottom-panel hidden'}
        role="tabpanel"
        aria-label="Console panel"
      >
        <ConsolePanel sessionId={sessionId} lines={lines} onClear={onClearLines} />
      </div>
    </div>
  );
}
