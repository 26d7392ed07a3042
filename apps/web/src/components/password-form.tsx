'use client';
import { type FormEvent, useState } from 'react';
import { newPasswordProblem } from '../lib/accounts';
import { errorParts, studioCode, useTRPCClient } from '../lib/trpc';
import { ErrorBox, type Failure } from './templates/template-parts';

/** A refusal of this form: INVALID_CREDENTIALS here means the current password, not a sign-in. */
function failure(error: unknown): Failure {
  const parts = errorParts(error);
  return studioCode(error) === 'INVALID_CREDENTIALS'
    ? { ...parts, message: 'The current password is wrong. Type the one you signed in with.' }
    : parts;
}

/**
 * Change your own password: the current one, the new one twice. The passwords go to the API through the client
 * directly, not a mutation hook, so no query cache keeps them; the fields are cleared once it has answered.
 */
export function ChangePasswordForm({ onChanged }: { onChanged: () => void }) {
  const client = useTRPCClient();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [confirm, setConfirm] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Failure | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const problem = newPasswordProblem(next, confirm);
    if (problem !== null) {
      setError({ message: problem, detail: null });
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await client.auth.changePassword.mutate({ currentPassword: current, newPassword: next });
      setCurrent('');
      setNext('');
      setConfirm('');
      onChanged();
    } catch (e) {
      setError(failure(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="account-form" onSubmit={(e) => void submit(e)} aria-label="Change password">
      <label htmlFor="current-password">Current password</label>
      <input
        id="current-password"
        type="password"
        autoComplete="current-password"
        value={current}
        onChange={(e) => setCurrent(e.target.value)}
        required
      />
      <label htmlFor="new-password">New password</label>
      <input
        id="new-password"
        type="password"
        autoComplete="new-password"
        value={next}
        onChange={(e) => setNext(e.target.value)}
        required
        aria-describedby="new-password-hint"
      />
      <p id="new-password-hint" className="muted small account-hint">
        At least 12 characters; a few words you will remember is a good password. Your other sign-ins are
        signed out; your API tokens keep working.
      </p>
      <label htmlFor="confirm-password">New password, again</label>
      <input
        id="confirm-password"
        type="password"
        autoComplete="new-password"
        value={confirm}
        onChange={(e) => setConfirm(e.target.value)}
        required
      />
      {error && <ErrorBox error={error} />}
      <div className="account-actions">
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Changing…' : 'Change password'}
        </button>
      </div>
    </form>
  );
}
