'use client';
import { type ReactNode, useState } from 'react';
import { errorParts } from '../lib/trpc';
import { ErrorBox, type Failure } from './templates/template-parts';

/**
 * The parts every list page of the IDE is made of (Secrets, Snapshots, API tokens, Users): a heading with a
 * Refresh button, the list's loading / refused / empty / loaded states, and actions on its rows that are busy one
 * at a time and show their refusal above the list. One place, so the pages say these things the same way.
 */

/** A list section's heading (h1 on a page of its own, h2 inside a card) and its Refresh button. */
export function ListHead({
  id,
  title,
  level = 1,
  onRefresh,
  refreshLabel,
}: {
  id: string;
  title: string;
  level?: 1 | 2;
  onRefresh: () => void;
  /** What Refresh says to a screen reader ("Refresh secrets"). */
  refreshLabel: string;
}) {
  const Heading = level === 1 ? 'h1' : 'h2';
  return (
    <div className="section-head">
      <Heading id={id}>{title}</Heading>
      <button type="button" onClick={onRefresh} aria-label={refreshLabel}>
        Refresh
      </button>
    </div>
  );
}

/** The states of a list query, as tanstack query reports them. */
interface ListQuery<T> {
  isPending: boolean;
  error: unknown;
  data: T | undefined;
}

/**
 * A list's body: "Loading …" while the query is pending, its refusal, `empty` when there is nothing, else
 * `children` with the items. `failure` turns an error into what people read (default: its message, with the code
 * in a detail line).
 */
export function ListBody<T>({
  query,
  items,
  loading,
  empty,
  failure = errorParts,
  children,
}: {
  query: ListQuery<unknown>;
  /** The items shown (from `query.data`); an empty array shows `empty`. */
  items: T[] | undefined;
  loading: string;
  empty: ReactNode;
  failure?: (error: unknown) => Failure;
  children: (items: T[]) => ReactNode;
}) {
  if (query.isPending) {
    return (
      <p className="muted" aria-live="polite">
        {loading}
      </p>
    );
  }
  if (query.error) return <ErrorBox error={failure(query.error)} />;
  if (!items || items.length === 0) return <p className="empty">{empty}</p>;
  return <>{children(items)}</>;
}

/**
 * Actions on a list's rows: one runs at a time (`busy` is its label, so its button can say "Deleting…" and the
 * others wait), a refusal is kept in `error` until the next action. `act` resolves true when the action succeeded.
 */
export function useRowActions(failure: (error: unknown) => Failure = errorParts) {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<Failure | null>(null);
  async function act(label: string, fn: () => Promise<unknown>): Promise<boolean> {
    setBusy(label);
    setError(null);
    try {
      await fn();
      return true;
    } catch (e) {
      setError(failure(e));
      return false;
    } finally {
      setBusy(null);
    }
  }
  return { busy, error, act };
}

/**
 * A destructive row action asked twice: the button, then the question with "Yes, …" and Cancel beside it. While
 * any action of the list runs (`disabled`) it waits; while its own runs (`running`) it says so.
 */
export function ConfirmAction({
  label,
  ariaLabel,
  question,
  confirmLabel,
  runningLabel,
  running,
  disabled,
  onConfirm,
}: {
  label: string;
  ariaLabel: string;
  question: string;
  confirmLabel: string;
  runningLabel: string;
  running: boolean;
  disabled: boolean;
  onConfirm: () => void;
}) {
  const [asking, setAsking] = useState(false);
  if (asking) {
    return (
      <span>
        <span className="small">{question}</span>{' '}
        <button
          type="button"
          className="danger"
          onClick={() => {
            setAsking(false);
            onConfirm();
          }}
          disabled={disabled}
        >
          {confirmLabel}
        </button>{' '}
        <button type="button" onClick={() => setAsking(false)}>
          Cancel
        </button>
      </span>
    );
  }
  return (
    <button
      type="button"
      className="danger"
      onClick={() => setAsking(true)}
      disabled={disabled}
      aria-label={ariaLabel}
    >
      {running ? runningLabel : label}
    </button>
  );
}
