'use client';
import { useMutation } from '@tanstack/react-query';
import { type FormEvent, useEffect, useRef, useState } from 'react';
import { errorMessage, useTRPC } from '../../lib/trpc';
import { AnsiText } from './ansi-text';

export interface ConsoleLine {
  id: string;
  kind: 'stdout' | 'stderr' | 'info';
  text: string;
}

/** Exec output and session events as text (ANSI colours through the escaping renderer), plus a run box. */
export function ConsolePanel({
  sessionId,
  lines,
  onClear,
}: {
  sessionId: string;
  lines: ConsoleLine[];
  onClear: () => void;
}) {
  const trpc = useTRPC();
  // Output arrives through events.subscribe (exec.output), like everyone else's: the answer itself is not shown.
  const exec = useMutation(trpc.exec.run.mutationOptions());
  const [command, setCommand] = useState('');
  const end = useRef<HTMLDivElement>(null);
  // biome-ignore lint/correctness/useExhaustiveDependencies: scroll on every new line
  useEffect(() => {
    end.current?.scrollIntoView({ block: 'end' });
  }, [lines.length]);

  function run(event: FormEvent) {
    event.preventDefault();
    if (!command.trim()) return;
    exec.mutate({ sessionId, command: ['sh', '-c', command] });
  }

  return (
    <div className="console-panel">
      <div className="console-output" role="log" aria-label="Console output" aria-live="off">
        {lines.length === 0 ? (
          <p className="empty">Command output and session events appear here.</p>
        ) : (
          lines.map((l) => (
            <div key={l.id} className={`console-line console-${l.kind}`}>
              <AnsiText text={l.text} />
            </div>
          ))
        )}
        <div ref={end} />
      </div>
      {exec.error && (
        <p className="error small" role="alert">
          {errorMessage(exec.error)}
        </p>
      )}
      <form className="console-run" onSubmit={run}>
        <label htmlFor="console-command" className="sr-only">
          Command to run
        </label>
        <input
          id="console-command"
          placeholder="Run a command (sh -c) — output shows above"
          value={command}
          onChange={(e) => setCommand(e.target.value)}
          spellCheck={false}
        />
        <button type="submit" disabled={exec.isPending}>
          {exec.isPending ? 'Running…' : 'Run'}
        </button>
        <button type="button" onClick={onClear}>
          Clear
        </button>
      </form>
    </div>
  );
}
