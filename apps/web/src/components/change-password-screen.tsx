'use client';
import { useMutation, useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import { useState } from 'react';
import { useTRPC } from '../lib/trpc';
import { ChangePasswordForm } from './password-form';

/**
 * Where a sign-in whose password someone else chose (the first admin's generated one, an administrator's reset)
 * is sent: the API refuses everything else to it (PASSWORD_CHANGE_REQUIRED) until the password is changed. Also
 * reachable by anyone, from the Account page's form.
 */
export function ChangePasswordScreen() {
  const trpc = useTRPC();
  const me = useQuery(trpc.auth.me.queryOptions());
  const [done, setDone] = useState(false);
  const logout = useMutation(
    trpc.auth.logout.mutationOptions({ onSettled: () => window.location.assign('/login') }),
  );
  const required = me.data?.mustChangePassword === true;

  return (
    <main className="login">
      <section className="card login-card" aria-labelledby="change-password-title">
        <h1 id="change-password-title">Choose a new password</h1>
        {required ? (
          <p role="status">
            {me.data?.username ? <strong>{me.data.username}</strong> : 'Your account'} has a password someone
            else set. Choose your own to continue.
          </p>
        ) : (
          <p className="muted">Change the password you sign in with.</p>
        )}
        {done ? (
          <p role="status">Password changed. Opening your sessions…</p>
        ) : (
          <ChangePasswordForm
            onChanged={() => {
              setDone(true);
              // A full load: every cached refusal (and the gate's flag) belonged to the old password.
              window.location.assign('/');
            }}
          />
        )}
        <p className="small">
          {required ? (
            <button type="button" onClick={() => logout.mutate()}>
              Sign out
            </button>
          ) : (
            <Link href="/account">Back to your account</Link>
          )}
        </p>
      </section>
    </main>
  );
}
