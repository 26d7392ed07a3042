'use client';
import type { Template } from '../../lib/templates';

/** A failure in two parts: what to do, then the code and the API's words on a line of their own. */
export type Failure = { message: string; detail: string | null };

export function ErrorBox({ error }: { error: Failure }) {
  return (
    <div className="error templates-error" role="alert">
      <p>{error.message}</p>
      {error.detail && <p className="mono small">{error.detail}</p>}
    </div>
  );
}

/** A template's state as a badge: building, ready or failed (and "previous build usable" after a failure). */
export function StateBadge({ template, state }: { template: Template; state?: Template['state'] }) {
  const shown = state ?? template.state;
  return (
    <span className={`badge state-${shown}`}>
      {shown}
      {shown !== 'ready' && template.usable ? ' (previous build usable)' : ''}
    </span>
  );
}
