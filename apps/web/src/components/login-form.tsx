'use client';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useRouter } from 'next/navigation';
import { type FormEvent, useState } from 'react';
import { CHANGE_PASSWORD_PATH, errorMessage, useTRPC } from '../lib/trpc';

/** The sign-in page; tells a new user where the first admin password is. */
export function LoginForm() {
  const router = useRouter();
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [username, setUsername] = useState('admin');
  const [password, setPassword] = useState('');
  const login = useMutation(
    trpc.auth.login.mutationOptions({
      onSuccess: (data) => {
        // Whatever was cached belonged to no one (or someone else): start clean as the new user.
        queryClient.clear();
        // A password someone else chose (the first admin's, an administrator's reset) is changed before anything.
        router.push(data.user.mustChangePassword ? CHANGE_PASSWORD_PATH : '/');
      },
    }),
  );
  // Stays busy after success, until the dashboard replaces this page.
  const busy = login.isPending || login.isSuccess;

  function submit(event: FormEvent) {
    event.preventDefault();
    login.mutate({ username, password });
  }

  return (
    <main className="login">
      <form className="card login-card" onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">Claude Studio</h1>
        <p className="muted">Sign in to your sandboxes.</p>
        <label htmlFor="username">Username</label>
        <input
          id="username"
          name="username"
          autoComplete="username"
          value={username}
          onChange={(e) => setUsername(e.target.value)}
          required
        />
        <label htmlFor="password">Password</label>
        <input
          id="password"
          name="password"
          type="password"
          autoComplete="current-password"
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          required
          // biome-ignore lint/a11y/noAutofocus: the only field a returning user needs
          autoFocus
        />
        {login.error && (
          <p className="error" role="alert">
            {errorMessage(login.error)}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        <details className="hint">
          <summary>First start?</summary>
          <p>
            The first start creates the user <code>admin</code> and prints a one-time password in the terminal
            where you ran <code>npm start</code> (line starting with “First start: created user "admin"”); you
            choose your own right after signing in with it. Set <code>STUDIO_ADMIN_PASSWORD</code> before the
            first start to choose it instead.
          </p>
        </details>
      </form>
    </main>
  );
}
