'use client';
import '../../styles/ide-edges.css';
import type { HumanError } from '../../lib/trpc';

export type { HumanError } from '../../lib/trpc';

/** A problem the page found itself (a form value out of range): a message for people, no code. */
export function pageProblem(message: string): HumanError {
  return { message, note: null, code: null };
}

/**
 * A failure shown to people: the human message (what happened, what to do), the server's readable words when
 * there are any, and the stable code in a muted "Code: …" line for a support request. Build `error` with
 * `humanError(e)` (lib/trpc) from anything a call threw, or `pageProblem(text)`. Never a stack trace or a
 * procedure name.
 */
export function ErrorNote({ error, className }: { error: HumanError; className?: string }) {
  return (
    <div className={`error-note ${className ?? ''}`} role="alert">
      <p className="error-note-message">{error.message}</p>
      {error.note && <p className="error-note-detail">{error.note}</p>}
      {error.code && <p className="error-note-detail error-note-code">Code: {error.code}</p>}
    </div>
  );
}
